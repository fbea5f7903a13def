"""The typed data is defined once in Python and equals the contract's; digests and signatures
made in Python verify on-chain; an applied attestation becomes the requirement in force."""

from __future__ import annotations

import time

import pytest
from eth_utils import keccak
from helpers import _attested

from offchain.attest import (
    BATCH_TYPEHASH,
    ENTRY_BYTES,
    Batch,
    Domain,
    Entry,
    digest,
    encode_type,
    recover_signers,
    sign,
)
from offchain.chain.client import Client
from offchain.chain.deploy import dev_engine_keys

KEYS = dev_engine_keys(3)


def _verifier(system: Client):
    return system.chain.contract("AttestationVerifier", system.d.attestation_verifier)


def _domain(system: Client) -> Domain:
    return Domain(system.chain.chain_id, system.d.attestation_verifier)


def _batch(system: Client, account: str, im_usd: int, mm_usd: int, sequence: int = 1) -> Batch:
    nonce = system.account(account)["nonce"]
    eth = system.price_e18("ETH")
    now = system.chain.w3.eth.get_block("latest")["timestamp"]
    return Batch(
        sequence=sequence,
        issued_at=now,
        price_asset_mask=0b1,
        prices_e18=(eth,),
        entries=(Entry(account, nonce, im_usd * 10**6, mm_usd * 10**6),),
    )


def test_typehashes__python_definition__equal_contract_constants(system: Client) -> None:
    v = _verifier(system)
    assert v.functions.MARGIN_BATCH_TYPEHASH().call() == BATCH_TYPEHASH
    assert encode_type("MarginBatch").startswith("MarginBatch(uint64 sequence,")
    assert keccak(text=encode_type("MarginBatch")) == BATCH_TYPEHASH
    assert v.functions.ENTRY_BYTES().call() == ENTRY_BYTES


def test_digest__python__equals_contract_batch_digest(
    system: Client, trader: str, others: list[str]
) -> None:
    batch = Batch(
        sequence=12345678901,
        issued_at=int(time.time()),
        price_asset_mask=0b101,
        prices_e18=(3_000 * 10**18 + 7, 150 * 10**18 + 3),
        entries=(Entry(trader, 3, 123_456_789, 98_765_432), Entry(others[0], 0, 1, 1)),
    )
    assert _verifier(system).functions.batchDigest(batch.as_tuple()).call() == digest(
        batch, _domain(system)
    )


def test_sign__two_of_three_keys__recovers_ascending_registered_signers(
    system: Client, trader: str
) -> None:
    batch = _batch(system, trader, 100, 50)
    sigs = sign(batch, _domain(system), KEYS[:2])
    signers = recover_signers(batch, _domain(system), sigs)
    assert signers == sorted(signers, key=str.lower)
    assert set(signers) <= set(system.d.engine_signers)


def test_submit__valid_quorum__attested_requirement_in_force_until_position_changes(
    system: Client, open_position, trader: str
) -> None:
    opened = open_position(size=10, collateral_usd=5_000)  # static IM 3000, MM 1950
    batch = _batch(system, trader, im_usd=2_000, mm_usd=1_600)
    receipt = system.chain.send(
        _verifier(system).functions.submit(
            batch.as_tuple(), sign(batch, _domain(system), KEYS[:2])
        ),
        system.d.owner,
        "submit attestation",
    )
    assert [e.name for e in system.events(receipt)] == ["BatchApplied"]
    assert _attested(system, receipt) == [
        {
            "account": trader,
            "sequence": 1,
            "positionNonce": batch.entries[0].position_nonce,
            "imMicroUsd": 2_000 * 10**6,
            "mmMicroUsd": 1_600 * 10**6,
        }
    ]
    h = system.health(trader)
    assert (h.initial_margin_wad, h.maintenance_margin_wad) == (2_000 * 10**18, 1_600 * 10**18)
    # S1: any position change voids it; S2: the static requirement applies again.
    system.trade("ETH-PERP", trader, opened.maker, -(10**17), opened.price_e18)
    h = system.health(trader)
    assert h.initial_margin_wad == 2_970 * 10**18


@pytest.mark.parametrize("keys", [KEYS[:1], [KEYS[0], KEYS[0]]])
def test_submit__below_quorum_or_duplicate_key__reverts(
    system: Client, trader: str, keys: list[str]
) -> None:
    from offchain.errors import ContractRevert

    batch = _batch(system, trader, 100, 50)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            _verifier(system).functions.submit(
                batch.as_tuple(), sign(batch, _domain(system), keys)
            ),
            system.d.owner,
            "submit",
        )
    assert e.value.name in {"SignatureCountMismatch", "SignersNotAscending"}
    if len(keys) == 1:
        assert e.value.args_by_name == {"signatureBytes": 65, "threshold": 2}
