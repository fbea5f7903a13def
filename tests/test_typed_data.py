"""Typed data that real signers accept, and batches that cannot be built wrong (threats B05, B08).

A key need not live in the engine: `JsonRpcSigner` asks a JSON-RPC endpoint that holds it
(`eth_signTypedData_v4`), and what Anvil's own implementation signs is accepted on-chain.
"""

from __future__ import annotations

import json

import pytest
from eth_utils import to_checksum_address
from helpers import _attested

from offchain.attest import (
    Batch,
    Domain,
    Entry,
    InvalidAttestation,
    digest,
    recover_signers,
    typed_data,
    unpack_entries,
)
from offchain.chain.client import Client
from offchain.chain.deploy import dev_engine_keys
from offchain.sync.keys import (
    ENV_SIGNER_ADDRESSES,
    ENV_SIGNER_URL,
    EngineKeyError,
    JsonRpcSigner,
    LocalSigner,
    Quorum,
    SignerUnavailable,
    load_signers,
)

KEYS = [bytes.fromhex(k[2:]) for k in dev_engine_keys(3)]
PRICE = 3_000 * 10**18 + 123_456_789  # far above 2^53: a JSON number would lose it


def _batch(system: Client, account: str, sequence: int = 1) -> Batch:
    now = system.chain.w3.eth.get_block("latest")["timestamp"]
    nonce = system.account(account)["nonce"]
    return Batch(
        sequence=sequence,
        issued_at=now,
        price_asset_mask=0b1,
        prices_e18=(system.price_e18("ETH"),),
        entries=(Entry(account.lower(), nonce, 900 * 10**6, 600 * 10**6),),
    )


def _domain(system: Client) -> Domain:
    return Domain(system.chain.chain_id, system.d.attestation_verifier)


def _unsigned_ints(node: object) -> list[int]:
    if isinstance(node, bool):
        return []
    if isinstance(node, int):
        return [node]
    if isinstance(node, dict):
        return [i for v in node.values() for i in _unsigned_ints(v)]
    if isinstance(node, list):
        return [i for v in node for i in _unsigned_ints(v)]
    return []


def test_typed_data__every_integer_is_a_decimal_string(system: Client, trader: str) -> None:
    batch = Batch(1, 1_700_000_000, 0b1, (PRICE,), (Entry(trader.lower(), 3, 2**63, 1),))
    data = typed_data(batch, _domain(system))
    assert _unsigned_ints(data) == []  # no JSON numbers at all, so none above 2^53
    assert data["message"]["pricesE18"] == [str(PRICE)]
    assert data["domain"]["chainId"] == str(system.chain.chain_id)
    # The entries are one `bytes` value (I36), hex that reads back to the same entries.
    packed = data["message"]["entries"]
    assert packed == "0x" + batch.packed_entries.hex()
    assert unpack_entries(bytes.fromhex(packed[2:])) == (
        Entry(to_checksum_address(trader), 3, 2**63, 1),
    )


def test_anvil_eth_signTypedData_v4__signs_our_digest(system: Client, trader: str) -> None:
    batch = _batch(system, trader)
    signer = system.chain.accounts[10]
    reply = system.chain.w3.provider.make_request(  # type: ignore[arg-type]
        "eth_signTypedData_v4", [signer, json.dumps(typed_data(batch, _domain(system)))]
    )
    assert "error" not in reply, reply
    sig = bytes.fromhex(reply["result"][2:])
    assert recover_signers(batch, _domain(system), sig) == [to_checksum_address(signer)]


def test_quorum_with_a_json_rpc_signer__is_accepted_by_the_verifier(
    system: Client, trader: str, open_position
) -> None:
    open_position(who=trader)
    verifier = system.chain.contract("AttestationVerifier", system.d.attestation_verifier)
    remote = system.chain.accounts[10]  # an unlocked node account: its key stays in the node
    system.chain.send(verifier.functions.addSigner(remote), system.d.owner, "add signer")
    quorum = Quorum(
        [JsonRpcSigner(system.chain.w3.provider.endpoint_uri, remote), LocalSigner(KEYS[0])],
        threshold=2,
    )
    batch, domain = _batch(system, trader), _domain(system)
    signatures = quorum.sign_batch(batch, domain)
    assert sorted(recover_signers(batch, domain, signatures), key=str.lower) == sorted(
        [to_checksum_address(remote), LocalSigner(KEYS[0]).address], key=str.lower
    )
    receipt = system.chain.send(
        verifier.functions.submit(batch.as_tuple(), signatures), trader, "submit"
    )
    (applied,) = _attested(system, receipt)
    assert applied["account"].lower() == trader.lower()


def test_json_rpc_signer__a_key_the_endpoint_lacks__is_a_signer_failure(
    system: Client, trader: str
) -> None:
    stranger = LocalSigner(b"\x07" * 32).address  # not an account the node holds
    signer = JsonRpcSigner(system.chain.w3.provider.endpoint_uri, stranger)
    batch = _batch(system, trader)
    with pytest.raises(SignerUnavailable, match=stranger):
        signer.sign_batch(batch, _domain(system), digest(batch, _domain(system)))


def test_json_rpc_signer__a_signature_for_another_batch__is_refused(
    system: Client, trader: str
) -> None:
    """The answer must recover to the signer's address for the digest this process computed."""
    remote = system.chain.accounts[10]
    signer = JsonRpcSigner(system.chain.w3.provider.endpoint_uri, remote)
    batch, other = _batch(system, trader, 1), _batch(system, trader, 2)
    with pytest.raises(SignerUnavailable, match="does not recover"):
        signer.sign_batch(batch, _domain(system), digest(other, _domain(system)))


def test_load_signers__remote_signer_from_the_environment() -> None:
    env = {ENV_SIGNER_URL: "http://127.0.0.1:9", ENV_SIGNER_ADDRESSES: "0x" + "ab" * 20}
    (signer,) = load_signers(chain_id=11155111, dev_keys=False, env=env)
    assert isinstance(signer, JsonRpcSigner)
    assert signer.address == to_checksum_address("0x" + "ab" * 20)
    with pytest.raises(EngineKeyError, match=ENV_SIGNER_ADDRESSES):
        load_signers(
            chain_id=1,
            dev_keys=False,
            env={ENV_SIGNER_URL: "http://x", ENV_SIGNER_ADDRESSES: "nope"},
        )


ACCOUNT = "0x" + "ab" * 20


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Entry("ab" * 20, 0, 0, 0), "Entry.account"),  # no 0x: a different digest
        (lambda: Entry("0x" + "ab" * 19, 0, 0, 0), "Entry.account"),
        (lambda: Entry("0xAbAbababababababababababababababababABab", 0, 0, 0), "EIP-55"),
        (lambda: Entry(ACCOUNT, 2**64, 0, 0), "Entry.position_nonce"),
        (lambda: Entry(ACCOUNT, 0, -1, 0), "Entry.im_micro_usd"),
        (lambda: Batch(0, 0, 0, (), ()), "Batch.sequence"),
        (lambda: Batch(1, 2**64, 0, (), ()), "Batch.issued_at"),
        (lambda: Batch(1, 0, 2**32, (), ()), "Batch.price_asset_mask"),
        (lambda: Batch(1, 0, 0b1, (2**128,), ()), "Batch.prices_e18"),
        (lambda: Batch(1, 0, 0b1, (0,), ()), "Batch.prices_e18"),
        (lambda: Batch(1, 0, 0b11, (1,), ()), "one price per bit"),
        (lambda: Domain(0, ACCOUNT), "Domain.chain_id"),
        (lambda: Domain(1, "ab" * 20), "Domain.verifying_contract"),
    ],
)
def test_batch_and_entry__out_of_range_fields__are_refused_when_built(build, field: str) -> None:
    with pytest.raises(InvalidAttestation, match=field):
        build()


def test_entry__lower_upper_and_checksummed_addresses__pack_alike() -> None:
    checksummed = to_checksum_address(ACCOUNT)
    packed = {
        Entry(a, 1, 2, 3).packed()
        for a in (ACCOUNT, ACCOUNT.upper().replace("0X", "0x"), checksummed)
    }
    assert len(packed) == 1


def test_unpack_entries__a_partial_entry__is_refused() -> None:
    """Entries are whole 44-byte records, as the verifier's `EntriesNotWhole` demands (I36)."""
    whole = Entry(ACCOUNT, 1, 2, 3).packed()
    assert len(whole) == 44
    with pytest.raises(InvalidAttestation, match="not whole 44-byte"):
        unpack_entries(whole + whole[:43])
