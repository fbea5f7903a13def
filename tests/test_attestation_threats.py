"""THREATS section B (signature and attestation attacks) and S8 against the real verifier.

B01 replay, B03 other deployment / chain, B04 malleability, B05 malformed signatures and signer
set, B06/B07 sequence, B08 every signed field, B09 key rotation, B10 partial front-run, B14 batch
size, B15 malformed packed entries; conflicting batches, MM > IM entries, parameter bounds and
access control. (B12, the clamp of a compromised quorum, and the S7 events are in
test_attestation_rules.py.)

Default system: ETH 3000, IM 10 %, MM 6.5 %; verifier 2-of-3, maxAge 300 s, band 100 bps, floor
50 %, cap 500 % of static, max batch 500.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from eth_utils import keccak, to_checksum_address
from helpers import (
    KEYS,
    _applied,
    _attested,
    _batch,
    _domain,
    _entry,
    _events,
    _micro,
    _requirement,
    _revert,
    _sign,
    _submit,
    _submit_reverts,
    _verifier,
)

from offchain.attest import Domain, Entry, address_of, digest, recover_signers, sign
from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles, deploy_system
from offchain.errors import ContractRevert
from offchain.models import SystemSpec

SIGNERS = [address_of(bytes.fromhex(k[2:])) for k in KEYS]
NEW_KEY = "0x" + keccak(text="marginsync rotated engine key").hex()
NEW_SIGNER = address_of(bytes.fromhex(NEW_KEY[2:]))
ZERO = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ECRECOVER = "0x" + "00" * 19 + "01"
DEFAULT_PARAMS = (300, 100, 5_000, 50_000, 500)
STATIC_10_ETH = (wad(3_000), wad(1_950))  # IM, MM of 10 ETH at 3000


# ---------------------------------------------------------------------------- helpers


def _mine(system: Client) -> None:
    system.chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def _admin(system: Client, fn: str, *args, sender: str | None = None):
    return system.chain.send(
        getattr(_verifier(system).functions, fn)(*args), sender or system.d.owner, fn
    )


def _ecrecover(system: Client, message_digest: bytes, v: int, r: bytes, s: bytes) -> str | None:
    """The raw precompile, without OpenZeppelin's checks: None when it recovers nothing."""
    out = system.chain.w3.eth.call(
        {"to": ECRECOVER, "data": message_digest + v.to_bytes(32, "big") + r + s}
    )
    if len(out) < 32 or int.from_bytes(out, "big") == 0:
        return None
    return to_checksum_address(out[-20:])


def _split(sigs: bytes, i: int) -> tuple[bytes, bytes, int]:
    one = sigs[65 * i : 65 * (i + 1)]
    return one[:32], one[32:64], one[64]


def _patched(sigs: bytes, i: int, one: bytes) -> bytes:
    return sigs[: 65 * i] + one + sigs[65 * (i + 1) :]


# ---------------------------------------------------------------------------- B01 replay
@pytest.mark.parametrize("same_submitter", [True, False], ids=["same-submitter", "other-submitter"])
def test_an_exact_replay_in_a_later_block_reverts_nothing_applied_and_state_changes_once(
    system: Client, trader: str, others: list[str], same_submitter: bool
) -> None:
    start = system.chain.w3.eth.block_number
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], sequence=7)
    sigs = _sign(system, batch)
    _submit(system, batch, sigs, sender=others[0])
    applied = _applied(system, trader)
    _mine(system)
    _mine(system)
    replayer = others[0] if same_submitter else others[1]
    err = _revert(system, _verifier(system).functions.submit(batch.as_tuple(), sigs), replayer)
    assert err.name == "NothingApplied"
    assert err.args_by_name == {"sequence": 7}
    assert _applied(system, trader) == applied == (7, 0, _micro(2_000), _micro(1_500))
    logs = system.chain.get_events(
        [system.d.attestation_verifier], start, system.chain.w3.eth.block_number
    )
    assert [e.name for e in logs] == ["BatchApplied"]


# ---------------------------------------------------------------------------- B03 domain
def test_a_batch_signed_for_another_deployment_recovers_to_unregistered_signers_and_reverts(
    system: Client, chain, roles: Roles, trader: str
) -> None:
    second = deploy_system(chain, SystemSpec(), roles)
    other = chain.contract("AttestationVerifier", second.attestation_verifier)
    assert other.address != system.d.attestation_verifier
    assert set(second.engine_signers) == set(SIGNERS)  # the very same keys are registered there

    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = _sign(system, batch)  # for the first verifier's domain
    there = recover_signers(batch, Domain(chain.chain_id, other.address), sigs)
    assert not set(there) & set(SIGNERS)
    err = _submit_reverts(system, batch, sigs, verifier=other)
    assert err.name == "UnknownSigner"
    assert err.args_by_name == {"signer": there[0]}
    # the same keys signing for that domain are accepted there: the domain alone made the difference
    own = sign(batch, Domain(chain.chain_id, other.address), KEYS[:2])
    system.chain.send(other.functions.submit(batch.as_tuple(), own), roles.owner, "submit there")
    assert other.functions.appliedEntry(trader).call()[0] == 1
    assert _applied(system, trader) == (0, 0, 0, 0)


def test_a_batch_signed_for_another_chain_id_reverts_unknown_signer(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    foreign = Domain(1, system.d.attestation_verifier)
    assert system.chain.chain_id != 1
    sigs = sign(batch, foreign, KEYS[:2])
    here = recover_signers(batch, _domain(system), sigs)
    assert not set(here) & set(SIGNERS)
    err = _submit_reverts(system, batch, sigs)
    assert err.name == "UnknownSigner"
    assert err.args_by_name == {"signer": here[0]}


# ---------------------------------------------------------------------------- B04 malleability
@pytest.mark.parametrize("index", [0, 1])
def test_the_high_s_twin_of_a_valid_signature_reverts_invalid_signature(
    system: Client, trader: str, index: int
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = _sign(system, batch)
    r, s, v = _split(sigs, index)
    twin_s = (SECP256K1_N - int.from_bytes(s, "big")).to_bytes(32, "big")
    twin_v = 55 - v  # 27 <-> 28: the other recovery id
    message = digest(batch, _domain(system))
    # the bare precompile accepts the twin and recovers the same registered signer ...
    signer = _ecrecover(system, message, v, r, s)
    assert signer in SIGNERS
    assert _ecrecover(system, message, twin_v, r, twin_s) == signer
    # ... so only the low-s rule stops it
    err = _submit_reverts(system, batch, _patched(sigs, index, r + twin_s + bytes([twin_v])))
    assert err.name == "InvalidSignature"
    assert err.args_by_name == {"index": index}
    with pytest.raises(ValueError, match="high s"):
        recover_signers(batch, _domain(system), _patched(sigs, index, r + twin_s + bytes([twin_v])))
    assert _applied(system, trader) == (0, 0, 0, 0)


def test_two_compact_64_byte_signatures_revert_signature_count_mismatch(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = _sign(system, batch)
    compact = b""
    for i in range(2):  # EIP-2098: r || (yParity << 255 | s)
        r, s, v = _split(sigs, i)
        compact += r + (int.from_bytes(s, "big") | ((v - 27) << 255)).to_bytes(32, "big")
    err = _submit_reverts(system, batch, compact)
    assert err.name == "SignatureCountMismatch"
    assert err.args_by_name == {"signatureBytes": 128, "threshold": 2}


# ---------------------------------------------------------------------------- B05 malformed
def test_all_zero_signatures_revert_invalid_signature_rather_than_recovering_address_zero(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    zero = bytes(130)
    assert _ecrecover(system, digest(batch, _domain(system)), 0, bytes(32), bytes(32)) is None
    err = _submit_reverts(system, batch, zero)
    assert err.name == "InvalidSignature"
    assert err.args_by_name == {"index": 0}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_garbage_signatures_are_rejected_with_the_error_their_first_signature_earns(
    system: Client, trader: str, seed: int
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    rng = random.Random(seed)
    r = rng.randbytes(32)
    s = (rng.randrange(1, SECP256K1_N // 2)).to_bytes(32, "big")
    v = 27 + seed % 2
    garbage = r + s + bytes([v]) + rng.randbytes(65)
    recovered = _ecrecover(system, digest(batch, _domain(system)), v, r, s)
    err = _submit_reverts(system, batch, garbage)
    if recovered is None:
        assert (err.name, err.args_by_name) == ("InvalidSignature", {"index": 0})
    else:
        assert recovered not in SIGNERS
        assert (err.name, err.args_by_name) == ("UnknownSigner", {"signer": recovered})


@pytest.mark.parametrize("length", [0, 64, 65, 129, 131, 260])
def test_signatures_of_the_wrong_total_length_revert_signature_count_mismatch(
    system: Client, trader: str, length: int
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = (_sign(system, batch) * 2)[:length]
    err = _submit_reverts(system, batch, sigs)
    assert err.name == "SignatureCountMismatch"
    assert err.args_by_name == {"signatureBytes": length, "threshold": 2}


@pytest.mark.parametrize("v", [0, 1, 26, 29, 255])
@pytest.mark.parametrize("index", [0, 1])
def test_a_recovery_byte_outside_27_and_28_reverts_invalid_signature(
    system: Client, trader: str, v: int, index: int
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    sigs = _sign(system, batch)
    r, s, _ = _split(sigs, index)
    err = _submit_reverts(system, batch, _patched(sigs, index, r + s + bytes([v])))
    assert err.name == "InvalidSignature"
    assert err.args_by_name == {"index": index}


@pytest.mark.parametrize("how", ["addSigner", "rotateSigner"])
def test_address_zero_can_never_become_a_signer(system: Client, how: str) -> None:
    args = (ZERO,) if how == "addSigner" else (SIGNERS[0], ZERO)
    err = _revert(system, getattr(_verifier(system).functions, how)(*args), system.d.owner)
    assert err.name == "InvalidSigner"
    assert err.args_by_name == {"signer": ZERO}
    assert _verifier(system).functions.isSigner(ZERO).call() is False
    assert _verifier(system).functions.isSigner(SIGNERS[0]).call() is True


def test_a_verifier_with_an_empty_signer_set_cannot_be_deployed(system: Client) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.deploy(
            "AttestationVerifier", system.d.owner, [], 1, DEFAULT_PARAMS, sender=system.d.owner
        )
    assert e.value.name == "InvalidThreshold"
    assert e.value.args_by_name == {"threshold": 1, "signerCount": 0}


# ---------------------------------------------------------------------------- B06 / B07 sequence
def test_an_older_batch_after_a_newer_one_reverts_nothing_applied_and_the_newer_stays(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500)], sequence=10))
    for older in (9, 10):
        batch = _batch(system, [_entry(system, trader, 100, 50)], sequence=older)
        err = _submit_reverts(system, batch, _sign(system, batch))
        assert err.name == "NothingApplied"
        assert err.args_by_name == {"sequence": older}
    assert _applied(system, trader) == (10, 1, _micro(2_000), _micro(1_500))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))


# ---------------------------------------------------------------------------- B08 every field
def _mutations(other: str) -> dict:
    return {
        "account": lambda b: replace(b, entries=(replace(b.entries[0], account=other),)),
        "nonce": lambda b: replace(
            b, entries=(replace(b.entries[0], position_nonce=b.entries[0].position_nonce + 1),)
        ),
        "im": lambda b: replace(
            b, entries=(replace(b.entries[0], im_micro_usd=b.entries[0].im_micro_usd + 1),)
        ),
        "mm": lambda b: replace(
            b, entries=(replace(b.entries[0], mm_micro_usd=b.entries[0].mm_micro_usd - 1),)
        ),
        "sequence": lambda b: replace(b, sequence=b.sequence + 1),
        "issuedAt": lambda b: replace(b, issued_at=b.issued_at - 1),
        "prices": lambda b: replace(b, prices_e18=(b.prices_e18[0] + 1,)),
        "mask": lambda b: replace(b, price_asset_mask=0b010),
    }


@pytest.mark.parametrize(
    "field", ["account", "nonce", "im", "mm", "sequence", "issuedAt", "prices", "mask"]
)
def test_changing_any_signed_field_changes_the_digest_and_the_recovered_signers_are_unknown(
    system: Client, trader: str, others: list[str], field: str
) -> None:
    signed = _batch(system, [_entry(system, trader, 2_000, 1_500)], sequence=3)
    sigs = _sign(system, signed)
    tampered = _mutations(others[0])[field](signed)
    assert digest(tampered, _domain(system)) != digest(signed, _domain(system))
    recovered = recover_signers(tampered, _domain(system), sigs)
    assert not set(recovered) & set(SIGNERS)
    err = _submit_reverts(system, tampered, sigs)
    assert err.name == "UnknownSigner"
    assert err.args_by_name == {"signer": recovered[0]}
    assert _applied(system, trader) == _applied(system, others[0]) == (0, 0, 0, 0)
    _submit(system, signed, sigs)  # the untouched batch is valid
    assert _applied(system, trader) == (3, 0, _micro(2_000), _micro(1_500))


# ---------------------------------------------------------------------------- B09 keys
def test_rotating_a_key_voids_applied_attestations_rejects_the_old_key_and_accepts_the_new(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    v = _verifier(system)
    # signed by the two keys that stay registered: only the key epoch can void it
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], 2)
    _submit(system, batch, _sign(system, batch, KEYS[1:]))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    epoch = v.functions.keyEpoch().call()

    receipt = _admin(system, "rotateSigner", SIGNERS[0], NEW_SIGNER)
    assert _events(system, receipt, "SignerRemoved") == [
        {"signer": SIGNERS[0], "keyEpoch": epoch + 1}
    ]
    assert _events(system, receipt, "SignerAdded") == [
        {"signer": NEW_SIGNER, "keyEpoch": epoch + 2}
    ]
    assert (v.functions.isSigner(SIGNERS[0]).call(), v.functions.isSigner(NEW_SIGNER).call()) == (
        False,
        True,
    )
    assert v.functions.signerCount().call() == 3
    assert _requirement(system, trader) == STATIC_10_ETH  # immediately, same block as rotation

    old = _batch(system, [_entry(system, trader, 2_100, 1_600)], 3)
    err = _submit_reverts(system, old, _sign(system, old, [KEYS[0], KEYS[1]]))
    assert err.name == "UnknownSigner"
    assert err.args_by_name == {"signer": SIGNERS[0]}

    _submit(system, old, _sign(system, old, [NEW_KEY, KEYS[1]]))
    assert _requirement(system, trader) == (wad(2_100), wad(1_600))


def test_removing_a_signer_voids_applied_attestations_and_below_the_threshold_reverts(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    v = _verifier(system)
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    _submit(system, batch, _sign(system, batch, KEYS[1:]))  # not signed by the removed key
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    _admin(system, "removeSigner", SIGNERS[0])
    assert v.functions.signerCount().call() == 2
    assert _requirement(system, trader) == STATIC_10_ETH
    err = _revert(system, v.functions.removeSigner(SIGNERS[1]), system.d.owner)
    assert err.name == "InvalidThreshold"
    assert err.args_by_name == {"threshold": 2, "signerCount": 1}
    assert v.functions.isSigner(SIGNERS[1]).call() is True


@pytest.mark.parametrize(
    ("fn", "args", "error", "values"),
    [
        ("removeSigner", (NEW_SIGNER,), "SignerNotRegistered", {"signer": NEW_SIGNER}),
        ("rotateSigner", (NEW_SIGNER, NEW_SIGNER), "SignerNotRegistered", {"signer": NEW_SIGNER}),
        (
            "rotateSigner",
            (SIGNERS[0], SIGNERS[1]),
            "SignerAlreadyRegistered",
            {"signer": SIGNERS[1]},
        ),
        ("addSigner", (SIGNERS[2],), "SignerAlreadyRegistered", {"signer": SIGNERS[2]}),
        ("setThreshold", (0,), "InvalidThreshold", {"threshold": 0, "signerCount": 3}),
        ("setThreshold", (4,), "InvalidThreshold", {"threshold": 4, "signerCount": 3}),
    ],
)
def test_key_management_with_an_inconsistent_argument_reverts(
    system: Client, fn: str, args: tuple, error: str, values: dict
) -> None:
    epoch = _verifier(system).functions.keyEpoch().call()
    err = _revert(system, getattr(_verifier(system).functions, fn)(*args), system.d.owner)
    assert (err.name, err.args_by_name) == (error, values)
    assert _verifier(system).functions.keyEpoch().call() == epoch


def test_raising_the_threshold_voids_applied_attestations_and_then_needs_three_signatures(
    system: Client, open_position, trader: str
) -> None:
    open_position(size=10)
    _submit(system, _batch(system, [_entry(system, trader, 2_000, 1_500)], 1))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))
    receipt = _admin(system, "setThreshold", 3)
    assert _events(system, receipt, "ThresholdSet")[0]["threshold"] == 3
    assert _requirement(system, trader) == STATIC_10_ETH
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], 2)
    err = _submit_reverts(system, batch, _sign(system, batch))
    assert (err.name, err.args_by_name) == (
        "SignatureCountMismatch",
        {"signatureBytes": 130, "threshold": 3},
    )
    _submit(system, batch, _sign(system, batch, KEYS))
    assert _requirement(system, trader) == (wad(2_000), wad(1_500))


# ---------------------------------------------------------------------------- B10 front-run
def test_a_batch_partly_front_run_still_applies_its_other_entries_and_skips_the_front_run_one(
    system: Client, trader: str, maker: str, others: list[str]
) -> None:
    accounts = [trader, maker, others[0], others[1]]
    big = _batch(
        system, [_entry(system, a, 1_000 + i, 500 + i) for i, a in enumerate(accounts)], 20
    )
    big_sigs = _sign(system, big)
    single = _batch(system, [_entry(system, maker, 7_000, 6_000)], 21)
    _submit(system, single, sender=others[2])  # lands first

    receipt = _submit(system, big, big_sigs, sender=others[3])
    assert _events(system, receipt, "AttestationSkipped") == [
        {"account": maker, "sequence": 20, "appliedSequence": 21}
    ]
    assert [e["account"] for e in _attested(system, receipt)] == [trader, others[0], others[1]]
    [applied] = _events(system, receipt, "BatchApplied")
    assert (applied["sequence"], applied["applied"], applied["skipped"]) == (20, 3, 1)
    assert applied["appliedBits"] == [0b1101]
    assert _applied(system, maker) == (21, 0, _micro(7_000), _micro(6_000))
    assert _applied(system, others[1]) == (20, 0, _micro(1_003), _micro(503))


# ---------------------------------------------------------------------------- B14 batch size
def test_a_batch_of_501_entries_reverts_batch_size_out_of_range(system: Client) -> None:
    entries = [
        Entry(to_checksum_address(keccak(i.to_bytes(32, "big"))[-20:]), 0, 2, 1) for i in range(501)
    ]
    batch = _batch(system, entries)
    err = _submit_reverts(system, batch, _sign(system, batch))
    assert err.name == "BatchSizeOutOfRange"
    assert err.args_by_name == {"size": 501, "maxBatchSize": 500}


def test_a_batch_of_exactly_max_batch_size_entries_applies(system: Client) -> None:
    _admin(system, "setParams", (300, 100, 5_000, 50_000, 40))
    entries = [
        Entry(to_checksum_address(keccak(i.to_bytes(32, "big"))[-20:]), 0, 2, 1) for i in range(41)
    ]
    over = _batch(system, entries)
    err = _submit_reverts(system, over, _sign(system, over))
    assert (err.name, err.args_by_name) == ("BatchSizeOutOfRange", {"size": 41, "maxBatchSize": 40})
    receipt = _submit(system, _batch(system, entries[:40]))
    [applied] = _events(system, receipt, "BatchApplied")
    assert (applied["applied"], applied["skipped"]) == (40, 0)


def test_a_batch_over_256_entries__applied_bits_span_words_and_rebuild_every_entry(
    system: Client, others: list[str]
) -> None:
    """I36: entry i's bit is bit i % 256 of word i // 256; one skipped entry past the first word
    is the only zero bit, and the event alone rebuilds what the chain stored."""
    entries = [
        Entry(to_checksum_address(keccak(i.to_bytes(32, "big"))[-20:]), i, 2 + i, 1)
        for i in range(300)
    ]
    entries[260] = _entry(system, others[0], 20, 10, nonce=0)
    _submit(system, _batch(system, [entries[260]], sequence=9))
    receipt = _submit(system, _batch(system, entries, sequence=8))
    [applied] = _events(system, receipt, "BatchApplied")
    assert applied["appliedBits"] == [2**256 - 1, (2**44 - 1) & ~(1 << 4)]
    assert (applied["applied"], applied["skipped"]) == (299, 1)
    rebuilt = _attested(system, receipt)
    assert [a["account"] for a in rebuilt] == [e.account for i, e in enumerate(entries) if i != 260]
    for a in (rebuilt[0], rebuilt[259], rebuilt[-1]):
        stored = _applied(system, a["account"])
        assert stored == (8, a["positionNonce"], a["imMicroUsd"], a["mmMicroUsd"])


@pytest.mark.parametrize("extra", [1, 43])
def test_entries_that_are_not_whole_44_byte_records_revert_entries_not_whole(
    system: Client, trader: str, extra: int
) -> None:
    """B15, I36: trailing bytes are never read as part of an entry nor silently dropped."""
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)])
    raw = list(batch.as_tuple())
    raw[4] = batch.packed_entries + b"\x01" * extra
    err = _submit_reverts(system, tuple(raw), _sign(system, batch))
    assert err.name == "EntriesNotWhole"
    assert err.args_by_name == {"entriesBytes": 44 + extra, "entryBytes": 44}
    assert _applied(system, trader) == (0, 0, 0, 0)


def test_an_empty_batch_reverts_batch_size_out_of_range(system: Client) -> None:
    batch = _batch(system, [])
    err = _submit_reverts(system, batch, _sign(system, batch))
    assert err.name == "BatchSizeOutOfRange"
    assert err.args_by_name == {"size": 0, "maxBatchSize": 500}


def test_a_price_list_that_does_not_match_the_mask_reverts_price_count_mismatch(
    system: Client, trader: str
) -> None:
    batch = _batch(system, [_entry(system, trader, 2_000, 1_500)], assets=("ETH", "BTC"))
    raw = list(batch.as_tuple())
    raw[3] = raw[3][:1]  # two assets in the mask, one price
    err = _submit_reverts(system, tuple(raw), _sign(system, batch))
    assert err.name == "PriceCountMismatch"
    assert err.args_by_name == {"pricesGiven": 1, "assetsInMask": 2}


# ------------------------------------------------------------------------- conflicting / rejected
def test_a_different_batch_reusing_a_recorded_sequence_reverts_conflicting_batch(
    system: Client, trader: str, others: list[str]
) -> None:
    first = _batch(system, [_entry(system, trader, 2_000, 1_500)], sequence=5)
    _submit(system, first)
    # a fresh account, so that something would apply and the record is what stops it
    second = _batch(
        system, [_entry(system, trader, 9_000, 8_000), _entry(system, others[0], 10, 5)], 5
    )
    err = _submit_reverts(system, second, _sign(system, second))
    assert err.name == "ConflictingBatch"
    assert err.args_by_name == {
        "sequence": 5,
        "recordedDigest": digest(first, _domain(system)),
        "digest": digest(second, _domain(system)),
    }
    assert _applied(system, others[0]) == (0, 0, 0, 0)


def test_an_entry_claiming_mm_above_im_is_rejected_with_an_event_and_not_applied(
    system: Client, trader: str, maker: str
) -> None:
    bad = _entry(system, trader, 1_000, 1_001)
    receipt = _submit(system, _batch(system, [bad, _entry(system, maker, 1_000, 900)], 4))
    assert _events(system, receipt, "AttestationRejected") == [
        {"account": trader, "sequence": 4, "imMicroUsd": _micro(1_000), "mmMicroUsd": _micro(1_001)}
    ]
    [applied] = _events(system, receipt, "BatchApplied")
    assert (applied["applied"], applied["skipped"]) == (1, 1)
    assert _applied(system, trader) == (0, 0, 0, 0)
    alone = _batch(system, [bad], 6)
    err = _submit_reverts(system, alone, _sign(system, alone))
    assert (err.name, err.args_by_name) == ("NothingApplied", {"sequence": 6})


# ---------------------------------------------------------------------------- admin
@pytest.mark.parametrize(
    "params",
    [
        (0, 100, 5_000, 50_000, 500),
        (86_401, 100, 5_000, 50_000, 500),
        (300, 0, 5_000, 50_000, 500),
        (300, 2_001, 5_000, 50_000, 500),
        (300, 100, 4_999, 50_000, 500),
        (300, 100, 10_001, 50_000, 500),
        (300, 100, 5_000, 9_999, 500),
        (300, 100, 5_000, 100_001, 500),
        (300, 100, 5_000, 50_000, 0),
        (300, 100, 5_000, 50_000, 1_001),
    ],
    ids=[
        "age0",
        "age>1d",
        "band0",
        "band>2000",
        "floor<50%",
        "floor>100%",
        "cap<100%",
        "cap>10x",
        "batch0",
        "batch>1000",
    ],
)
def test_set_params_out_of_bounds_reverts_invalid_params(system: Client, params: tuple) -> None:
    err = _revert(system, _verifier(system).functions.setParams(params), system.d.owner)
    assert err.name == "InvalidParams"
    assert err.args_by_name == dict(
        zip(
            ["maxAgeSeconds", "priceBandBps", "floorBps", "capBps", "maxBatchSize"],
            params,
            strict=True,
        )
    )
    assert tuple(_verifier(system).functions.params().call()) == DEFAULT_PARAMS


@pytest.mark.parametrize(
    "params", [(86_400, 2_000, 10_000, 100_000, 1_000), (1, 1, 5_000, 10_000, 1)]
)
def test_set_params_at_the_bounds_is_accepted_and_emitted(system: Client, params: tuple) -> None:
    receipt = _admin(system, "setParams", params)
    assert _events(system, receipt, "ParamsSet") == [
        dict(
            zip(
                ["maxAgeSeconds", "priceBandBps", "floorBps", "capBps", "maxBatchSize"],
                params,
                strict=True,
            )
        )
    ]
    assert tuple(_verifier(system).functions.params().call()) == params


@pytest.mark.parametrize(
    ("fn", "args"),
    [
        ("addSigner", (NEW_SIGNER,)),
        ("removeSigner", (SIGNERS[0],)),
        ("rotateSigner", (SIGNERS[0], NEW_SIGNER)),
        ("setThreshold", (1,)),
        ("setParams", ((600, 100, 5_000, 50_000, 500),)),
        ("transferOwnership", (NEW_SIGNER,)),
    ],
)
def test_verifier_admin_from_a_non_owner_reverts_ownable_unauthorized_account(
    system: Client, others: list[str], fn: str, args: tuple
) -> None:
    err = _revert(system, getattr(_verifier(system).functions, fn)(*args), others[0])
    assert err.name == "OwnableUnauthorizedAccount"
    assert err.args_by_name == {"account": others[0]}
