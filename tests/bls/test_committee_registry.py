"""CommitteeRegistry: k-of-n aggregate certificates (K2, K3), proofs of possession against rogue
keys (K1, THREATS G05), fewer than k signers (G06), key epochs on rotation and removal (K4), the
stored aggregate (K5) and events that rebuild the committee (K7). Invariants: SPEC.md."""

from __future__ import annotations

import random

import pytest
from helpers import assert_revert

from offchain.chain import Chain
from offchain.committee import bls, eip2537
from offchain.committee.backends import CURVE_ORDER, NATIVE
from offchain.committee.bls import SecretKey
from offchain.committee.registry import Certificate, Registry
from offchain.errors import ContractRevert

MESSAGE = b"\x42" * 32
MEMBERS_AND_SPARES = 7  # conftest's committee and spare keys


def _certify(keys: list[SecretKey], signers: list[int], message: bytes = MESSAGE) -> Certificate:
    signature = bls.aggregate_signatures([keys[i].sign(message) for i in signers])
    return Certificate(message, sum(1 << i for i in signers), signature)


def _verify_reverts(registry: Registry, cert: Certificate) -> ContractRevert:
    with pytest.raises(ContractRevert) as e:
        registry.verify(cert)
    return e.value


def _send_reverts(fn: object) -> ContractRevert:
    with pytest.raises(ContractRevert) as e:
        fn()  # type: ignore[operator]
    return e.value


# ---------------------------------------------------------------------------- verify
@pytest.mark.parametrize("signers", [[0, 1, 2], [1, 2, 3], [0, 2, 3], [0, 1, 2, 3]])
def test_verify__k_of_n__returns_the_key_epoch(
    registry: Registry, committee_keys: list[SecretKey], signers: list[int]
) -> None:
    # K2, K3; 3 of 4 sums the signers' keys, 4 of 4 uses the stored aggregate as it is.
    assert registry.verify(_certify(committee_keys, signers)) == registry.key_epoch()


def test_verify__subtract_path_matches_add_path(
    chain: Chain, committee_owner: str, committee_keys: list[SecretKey], spare_keys: list[SecretKey]
) -> None:
    """K5: with 7 members, 5 signers take the 2 non-signers out of the stored aggregate and 2
    signers are summed directly; both must verify, so the aggregate is exact."""
    keys = committee_keys + spare_keys
    big = Registry.deploy(chain, committee_owner, keys, 2)
    assert big.verify(_certify(keys, [0, 2, 3, 5, 6]))
    assert big.verify(_certify(keys, [1, 4]))
    assert big.contract.functions.aggregatePublicKey().call() == bls.aggregate_public_keys(
        [k.public_key() for k in keys]
    )


def test_verify__fewer_than_k_signers__reverts(
    registry: Registry, committee_keys: list[SecretKey]
) -> None:
    """K2, G06: two valid signatures out of a 3-of-4 committee certify nothing."""
    err = _verify_reverts(registry, _certify(committee_keys, [0, 1]))
    assert_revert(err, "TooFewSigners", signers=2, threshold=3)


def test_verify__bitmap_claims_a_signer_who_did_not_sign__reverts(
    registry: Registry, committee_keys: list[SecretKey]
) -> None:
    cert = _certify(committee_keys, [0, 1])
    padded = Certificate(cert.message, cert.signer_bitmap | 0b100, cert.signature)
    assert_revert(_verify_reverts(registry, padded), "InvalidSignature", signerBitmap=0b111)


def test_verify__other_message__reverts(
    registry: Registry, committee_keys: list[SecretKey]
) -> None:
    cert = _certify(committee_keys, [0, 1, 2])
    other = Certificate(b"\x43" * 32, cert.signer_bitmap, cert.signature)
    assert_revert(_verify_reverts(registry, other), "InvalidSignature", message=b"\x43" * 32)


def test_verify__signer_beyond_the_committee__reverts(
    registry: Registry, committee_keys: list[SecretKey]
) -> None:
    cert = _certify(committee_keys, [0, 1, 2])
    beyond = Certificate(cert.message, cert.signer_bitmap | 1 << 4, cert.signature)
    assert_revert(_verify_reverts(registry, beyond), "UnknownSigners", memberCount=4)


def test_verify__malformed_signatures__revert(
    registry: Registry, committee_keys: list[SecretKey]
) -> None:
    cert = _certify(committee_keys, [0, 1, 2])
    short = Certificate(cert.message, cert.signer_bitmap, cert.signature[:-1])
    assert_revert(_verify_reverts(registry, short), "SignatureLengthMismatch", length=127)
    x_plus_p = (int.from_bytes(cert.signature[:64], "big") + eip2537.P).to_bytes(64, "big")
    noncanonical = Certificate(cert.message, cert.signer_bitmap, x_plus_p + cert.signature[64:])
    assert_revert(_verify_reverts(registry, noncanonical), "MalformedSignature")
    infinity = Certificate(cert.message, cert.signer_bitmap, bytes(128))
    assert_revert(_verify_reverts(registry, infinity), "InvalidSignature")


def test_verify__keys_summing_to_infinity__reverts(
    chain: Chain, committee_owner: str, committee_keys: list[SecretKey]
) -> None:
    """K3: sk and −sk both prove possession, and their keys cancel; the empty signature must
    not certify anything for them."""
    sk = committee_keys[0]
    twin = SecretKey(CURVE_ORDER - sk.value)
    cancel = Registry.deploy(chain, committee_owner, [sk, twin], 2)
    cert = Certificate(MESSAGE, 0b11, bytes(128))
    assert_revert(_verify_reverts(cancel, cert), "AggregateKeyIsInfinity", signerBitmap=3)


# ---------------------------------------------------------------------------- registration (K1)
def test_add_member__rogue_key_without_possession__reverts(
    registry: Registry,
    committee_owner: str,
    committee_keys: list[SecretKey],
    spare_keys: list[SecretKey],
) -> None:
    """K1, G05: pk' = a·g2 − Σ pk_i would let the holder of a sign for everyone; it has no proof."""
    attacker = spare_keys[0]
    others = NATIVE.g2_sum([k.public_key() for k in committee_keys])
    rogue = NATIVE.g2_sum([attacker.public_key(), _neg(others)])
    proof = attacker.prove_possession()
    fn = registry.contract.functions.addMembers([rogue], [proof])
    err = _send_reverts(lambda: registry.chain.send(fn, committee_owner, "add rogue"))
    assert_revert(err, "InvalidProofOfPossession")
    # The attack it stops: with the rogue key in, the attacker alone would certify for all five.
    forged = attacker.sign(MESSAGE)
    assert bls.verify_aggregate([*[k.public_key() for k in committee_keys], rogue], MESSAGE, forged)


def _neg(point: bytes) -> bytes:
    (x, (y0, y1)) = eip2537.decode_g2(point)  # type: ignore[misc]
    return eip2537.encode_g2((x, ((eip2537.P - y0) % eip2537.P, (eip2537.P - y1) % eip2537.P)))


def test_add_member__wrong_proofs__revert(
    registry: Registry, committee_owner: str, spare_keys: list[SecretKey]
) -> None:
    sk, other = spare_keys[0], spare_keys[1]
    pk = sk.public_key()
    wrong = {
        "another key's proof": other.prove_possession(),
        "a signature over the key (signature DST)": sk.sign(pk),
        "a malformed proof": bytes(64) + sk.prove_possession()[64:],
        "a short proof": sk.prove_possession()[:100],
    }
    for label, proof in wrong.items():
        fn = registry.contract.functions.addMembers([pk], [proof])
        err = _send_reverts(
            lambda fn=fn, label=label: registry.chain.send(fn, committee_owner, label)
        )
        assert_revert(err, "InvalidProofOfPossession")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pk: bytes(256),
        lambda pk: pk[:-1],
        lambda pk: (int.from_bytes(pk[:64], "big") + eip2537.P).to_bytes(64, "big") + pk[64:],
        lambda pk: pk[64:128] + pk[:64] + pk[192:] + pk[128:192],
    ],
    ids=["infinity", "short", "x >= p", "Fp2 swapped"],
)
def test_add_member__invalid_key__reverts(
    registry: Registry, committee_owner: str, spare_keys: list[SecretKey], mangle: object
) -> None:
    sk = spare_keys[0]
    bad = mangle(sk.public_key())  # type: ignore[operator]
    fn = registry.contract.functions.addMembers([bad], [sk.prove_possession()])
    err = _send_reverts(lambda: registry.chain.send(fn, committee_owner, "add bad key"))
    assert_revert(err, "InvalidPublicKey")


def test_add_member__duplicate_and_mismatched_and_overfull__revert(
    registry: Registry,
    committee_owner: str,
    committee_keys: list[SecretKey],
    spare_keys: list[SecretKey],
) -> None:
    f = registry.contract.functions
    send = registry.chain.send
    dup = committee_keys[1]
    err = _send_reverts(
        lambda: send(
            f.addMembers([dup.public_key()], [dup.prove_possession()]), committee_owner, "dup"
        )
    )
    assert_revert(err, "KeyAlreadyRegistered", index=1)
    sk = spare_keys[0]
    err = _send_reverts(
        lambda: send(f.addMembers([sk.public_key()], []), committee_owner, "mismatch")
    )
    assert_revert(err, "KeysAndProofsMismatch", keys=1, proofs=0)
    many = bls.dev_secret_keys(70)[MEMBERS_AND_SPARES:]
    keys = [k.public_key() for k in many]
    err = _send_reverts(
        lambda: send(
            f.addMembers(keys, [k.prove_possession() for k in many]), committee_owner, "full"
        )
    )
    assert_revert(err, "CommitteeFull", memberCount=4 + len(many), maxMembers=64)


def test_admin__only_the_owner(
    registry: Registry, spare_keys: list[SecretKey], others: list[str]
) -> None:
    outsider = others[0]
    err = _send_reverts(lambda: registry.set_threshold(2, outsider))
    assert_revert(err, "OwnableUnauthorizedAccount", account=outsider)
    err = _send_reverts(lambda: registry.add_members(spare_keys[:1], outsider))
    assert_revert(err, "OwnableUnauthorizedAccount", account=outsider)
    err = _send_reverts(lambda: registry.remove_member(0, outsider))
    assert_revert(err, "OwnableUnauthorizedAccount", account=outsider)
    err = _send_reverts(lambda: registry.rotate_member(0, spare_keys[0], outsider))
    assert_revert(err, "OwnableUnauthorizedAccount", account=outsider)


# ---------------------------------------------------------------------------- epochs (K4, K6)
def test_rotate_member__old_key_stops_counting_at_once(
    registry: Registry,
    committee_owner: str,
    committee_keys: list[SecretKey],
    spare_keys: list[SecretKey],
) -> None:
    before = _certify(committee_keys, [0, 1, 2])
    epoch = registry.key_epoch()
    receipt = registry.rotate_member(1, spare_keys[0], committee_owner)
    assert registry.key_epoch() == epoch + 1
    assert_revert(_verify_reverts(registry, before), "InvalidSignature")
    rotated = [committee_keys[0], spare_keys[0], *committee_keys[2:]]
    assert registry.verify(_certify(rotated, [0, 1, 2])) == epoch + 1
    (event,) = [e for e in registry.chain.events(receipt) if e.name == "MemberRotated"]
    assert event.args["publicKey"] == spare_keys[0].public_key()
    assert event.args["keyEpoch"] == epoch + 1


def test_remove_member__last_member_moves_in_and_old_certificates_fail(
    registry: Registry, committee_owner: str, committee_keys: list[SecretKey]
) -> None:
    registry.set_threshold(2, committee_owner)
    before = _certify(committee_keys, [0, 1])  # signed while member 1 was in
    receipt = registry.remove_member(1, committee_owner)
    (event,) = [e for e in registry.chain.events(receipt) if e.name == "MemberRemoved"]
    assert (event.args["index"], event.args["movedFrom"]) == (1, 3)
    remaining = [committee_keys[0], committee_keys[3], committee_keys[2]]
    assert registry.public_keys() == [k.public_key() for k in remaining]
    assert_revert(_verify_reverts(registry, before), "InvalidSignature")
    assert registry.verify(_certify(remaining, [0, 1])) == registry.key_epoch()
    assert registry.contract.functions.aggregatePublicKey().call() == bls.aggregate_public_keys(
        [k.public_key() for k in remaining]
    )


def test_remove_member__below_threshold_or_out_of_range__reverts(
    registry: Registry, committee_owner: str
) -> None:
    registry.set_threshold(4, committee_owner)
    # K6: a removal may not leave fewer members than the threshold.
    err = _send_reverts(lambda: registry.remove_member(0, committee_owner))
    assert_revert(err, "ThresholdOutOfRange", threshold=4, memberCount=3)
    err = _send_reverts(lambda: registry.remove_member(4, committee_owner))
    assert_revert(err, "MemberIndexOutOfRange", index=4, memberCount=4)
    err = _send_reverts(
        lambda: registry.rotate_member(9, bls.dev_secret_keys(1)[0], committee_owner)
    )
    assert_revert(err, "MemberIndexOutOfRange", index=9)


@pytest.mark.parametrize("threshold", [0, 5])
def test_set_threshold__out_of_range__reverts(
    registry: Registry, committee_owner: str, threshold: int
) -> None:
    # K6
    err = _send_reverts(lambda: registry.set_threshold(threshold, committee_owner))
    assert_revert(err, "ThresholdOutOfRange", threshold=threshold, memberCount=4)


def test_every_change__starts_a_new_epoch_and_events_rebuild_the_committee(
    registry: Registry,
    committee_owner: str,
    committee_keys: list[SecretKey],
    spare_keys: list[SecretKey],
) -> None:
    """K4 and K7: replaying MemberAdded/Removed/Rotated gives the registry's key list."""
    chain = registry.chain
    start = chain.w3.eth.block_number
    epochs = [registry.key_epoch()]
    registry.add_members(spare_keys[:2], committee_owner)
    epochs.append(registry.key_epoch())
    registry.remove_member(0, committee_owner)
    epochs.append(registry.key_epoch())
    registry.rotate_member(2, spare_keys[2], committee_owner)
    epochs.append(registry.key_epoch())
    registry.set_threshold(2, committee_owner)
    epochs.append(registry.key_epoch())
    assert epochs == list(range(epochs[0], epochs[0] + 5))

    members = [k.public_key() for k in committee_keys]  # as deployed
    for e in chain.get_events([registry.address], start + 1, chain.w3.eth.block_number):
        if e.name == "MemberAdded":
            assert e.args["index"] == len(members)
            members.append(e.args["publicKey"])
        elif e.name == "MemberRemoved":
            members[e.args["index"]] = members[e.args["movedFrom"]]
            members.pop()
        elif e.name == "MemberRotated":
            members[e.args["index"]] = e.args["publicKey"]
    assert members == registry.public_keys()


# ---------------------------------------------------------------------------- cached signer sets
def test_cache_signer_set__verifies_the_same_and_is_idempotent(
    registry: Registry, committee_keys: list[SecretKey], others: list[str]
) -> None:
    cert = _certify(committee_keys, [0, 2, 3])
    receipt = registry.cache_signer_set(cert.signer_bitmap, others[0])  # anyone may
    (event,) = [e for e in registry.chain.events(receipt) if e.name == "SignerSetCached"]
    assert (event.args["signerBitmap"], event.args["keyEpoch"]) == (0b1101, registry.key_epoch())
    stored = registry.contract.functions.cachedSignerSet(0b1101).call()
    assert registry.chain.w3.eth.get_code(stored)[1:] == bls.aggregate_public_keys(
        [committee_keys[i].public_key() for i in (0, 2, 3)]
    )
    assert registry.verify(cert) == registry.key_epoch()
    wrong = Certificate(b"\x01" * 32, cert.signer_bitmap, cert.signature)
    assert_revert(_verify_reverts(registry, wrong), "InvalidSignature")
    again = registry.cache_signer_set(cert.signer_bitmap, others[0])
    assert not [e for e in registry.chain.events(again) if e.name == "SignerSetCached"]
    assert registry.cached_signer_sets() == [0b1101]


def test_cache_signer_set__checks_like_verify(
    registry: Registry, chain: Chain, committee_owner: str, committee_keys: list[SecretKey]
) -> None:
    err = _send_reverts(lambda: registry.cache_signer_set(0b11, committee_owner))
    assert_revert(err, "TooFewSigners", signers=2, threshold=3)
    err = _send_reverts(lambda: registry.cache_signer_set(0b10111, committee_owner))
    assert_revert(err, "UnknownSigners", signerBitmap=0b10111)
    sk = committee_keys[0]
    cancel = Registry.deploy(chain, committee_owner, [sk, SecretKey(CURVE_ORDER - sk.value)], 2)
    err = _send_reverts(lambda: cancel.cache_signer_set(0b11, committee_owner))
    assert_revert(err, "AggregateKeyIsInfinity", signerBitmap=3)


def test_cache_signer_set__a_new_epoch_stops_using_it(
    registry: Registry,
    committee_owner: str,
    committee_keys: list[SecretKey],
    spare_keys: list[SecretKey],
) -> None:
    """K4: a set cached before a rotation cannot keep the rotated-out key counting."""
    before = _certify(committee_keys, [0, 1, 2])
    registry.cache_signer_set(before.signer_bitmap, committee_owner)
    registry.rotate_member(1, spare_keys[0], committee_owner)
    assert registry.contract.functions.cachedSignerSet(0b111).call() == ZERO_ADDRESS
    assert registry.cached_signer_sets() == []
    assert_revert(_verify_reverts(registry, before), "InvalidSignature")


ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def test_verify__random_signer_sets_on_both_paths(
    chain: Chain,
    committee_owner: str,
    committee_keys: list[SecretKey],
    spare_keys: list[SecretKey],
) -> None:
    """K3, K5: seeded random bitmaps of a 7-member, 2-of-7 committee, summing or subtracting
    keys alike: each certificate verifies for its own signer set and for no other."""
    keys = committee_keys + spare_keys
    committee = Registry.deploy(chain, committee_owner, keys, 2)
    rng = random.Random(5)
    for _ in range(12):
        signers = sorted(rng.sample(range(len(keys)), rng.randint(2, len(keys))))
        cert = _certify(keys, signers)
        assert committee.verify(cert) == committee.key_epoch()
        flipped = cert.signer_bitmap ^ (1 << rng.randrange(len(keys)))
        if flipped.bit_count() >= 2:
            wrong = Certificate(cert.message, flipped, cert.signature)
            assert_revert(_verify_reverts(committee, wrong), "InvalidSignature")
