"""Proof-gated liquidation on a real chain (ARCHITECTURE P2, THREATS H03, SPEC I34–I35).

The trader is long 2 ETH at 3,000 USD with 1,000 USD: statically healthy (MM 6.5 % = 390 USD),
but the published model's MM for that book is 1,260 USD (a 21 % worst loss). A quorum that
attests MM 1,200 USD would make the account liquidatable; with the gate on, that counts only
with a proof for the same position nonce and prices. Every clause is checked three ways: the
clearinghouse's health, the liquidation itself, and the keeper's mirror (to the wei)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import _batch, _entry, _revert, _submit, assert_revert

from offchain.chain import Chain
from offchain.chain.client import Client, wad
from offchain.chain.margin_mirror import MarginMirror
from offchain.errors import ContractRevert
from offchain.keeper import Keeper
from offchain.models import Deployment
from offchain.prove.layout import ACCOUNT
from offchain.prove.model import ProvenModel
from offchain.prove.onchain import prove_accounts, set_proof_gate, submit
from offchain.prove.prover import Prover

ATTESTED_IM_USD, ATTESTED_MM_USD = 1_500, 1_200  # within the verifier's clamp (≤ 5 × static)
E12 = 10**12


@pytest.fixture
def gated(chain: Chain, system: Client, proofs_deployment: Deployment) -> Client:
    """The system with the proof gate on, seen through the deployment that names the registry."""
    set_proof_gate(chain, proofs_deployment, proofs_deployment.owner)
    return Client(chain, proofs_deployment)


@pytest.fixture
def exposed(open_position: Callable[..., Any], trader: str) -> str:
    open_position(size=2, market="ETH-PERP", collateral_usd=1_000)
    return trader


def attest_tight(system: Client, account: str, sequence: int = 1) -> None:
    """What a compromised (or honest) 2-of-3 quorum signs: MM far above the static MM."""
    entry = _entry(system, account, ATTESTED_IM_USD, ATTESTED_MM_USD)
    _submit(system, _batch(system, [entry], sequence))


def prove(chain: Chain, d: Deployment, model: ProvenModel, prover: Prover, account: str) -> int:
    """Proves the account's requirement at the oracle's prices and records it; its MM in wad."""
    assert d.margin_proofs is not None
    submission = prove_accounts(chain, d, model, prover, ACCOUNT, [account])
    submit(chain, d.margin_proofs, submission, chain.accounts[-1])
    return submission.statements[0].mm_micro_usd * E12


def mirror_mm(system: Client, account: str) -> int:
    """The keeper's view of the MM in force (its mirror, from events alone)."""
    mirror = MarginMirror(system.chain, system.d)
    mirror.sync()
    prices = {a.id: system.price_e18(a.symbol) for a in system.d.assets}
    static = mirror.health(account, prices)
    now = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    return mirror.maintenance_in_force(
        account, static.initial_margin_wad, static.maintenance_margin_wad, prices, now
    )


def static_mm(system: Client, account: str) -> int:
    prices = {a.id: system.price_e18(a.symbol) for a in system.d.assets}
    mirror = MarginMirror(system.chain, system.d)
    mirror.sync()
    return mirror.health(account, prices).maintenance_margin_wad


def assert_healthy_by_the_gate(gated: Client, account: str, keeper: str) -> None:
    """The attestation is in force but unproven: MM is the static one, everywhere."""
    h = gated.health(account)
    assert h.maintenance_margin_wad == static_mm(gated, account) < h.equity_wad
    assert h.initial_margin_wad == ATTESTED_IM_USD * 10**18  # IM: the attestation stands
    assert mirror_mm(gated, account) == h.maintenance_margin_wad
    market = gated.d.market("ETH-PERP").id
    exc = _revert(gated, gated.ch.functions.liquidate(account, market, 2**255), keeper)
    assert_revert(
        exc,
        "AccountHealthy",
        account=account,
        equityWad=h.equity_wad,
        maintenanceMarginWad=h.maintenance_margin_wad,
    )


def test_h03__unproven_attested_mm__cannot_liquidate_a_statically_healthy_account(
    gated: Client, exposed: str, keeper: str
) -> None:
    attest_tight(gated, exposed)
    assert_healthy_by_the_gate(gated, exposed, keeper)
    # The keeper's mirror agrees, so it never sends the liquidation that would revert.
    k = Keeper(gated, keeper)
    k.mirror.sync()
    assert exposed not in {a for _, a in k.candidates(k.prices())}


def test_h03__without_the_gate__the_same_attestation_liquidates(
    system: Client, exposed: str, keeper: str
) -> None:
    # The defence above is the gate: the same quorum, no registry set, and the account goes.
    attest_tight(system, exposed)
    h = system.health(exposed)
    assert h.maintenance_margin_wad == ATTESTED_MM_USD * 10**18 > h.equity_wad
    system.liquidate(keeper, exposed, "ETH-PERP")
    assert system.account(exposed)["nonce"] == 2


def test_p2__with_a_proof_for_the_same_nonce_and_prices__the_keeper_liquidates(
    chain: Chain,
    gated: Client,
    exposed: str,
    keeper: str,
    proven_model: ProvenModel,
    prover: Prover,
) -> None:
    proven_mm = prove(chain, gated.d, proven_model, prover, exposed)
    attest_tight(gated, exposed)
    h = gated.health(exposed)
    # min(attested, max(static, proven)): the attested MM, which the proof covers.
    assert proven_mm > ATTESTED_MM_USD * 10**18 == h.maintenance_margin_wad > h.equity_wad
    assert mirror_mm(gated, exposed) == h.maintenance_margin_wad
    k = Keeper(gated, keeper)
    done = k.step()
    assert [d.account.lower() for d in done] == [exposed.lower()]
    assert gated.account(exposed)["nonce"] == 2


def test_p2__a_proof_caps_an_attested_mm_above_it(
    chain: Chain,
    gated: Client,
    exposed: str,
    proven_model: ProvenModel,
    prover: Prover,
) -> None:
    proven_mm = prove(chain, gated.d, proven_model, prover, exposed)
    entry = _entry(gated, exposed, 2_900, 1_900)  # above the proven 1,260 USD
    _submit(gated, _batch(gated, [entry], 1))
    assert gated.health(exposed).maintenance_margin_wad == proven_mm
    assert mirror_mm(gated, exposed) == proven_mm


def test_i34__a_proof_for_another_position_nonce__does_not_count(
    chain: Chain,
    gated: Client,
    exposed: str,
    keeper: str,
    maker: str,
    proven_model: ProvenModel,
    prover: Prover,
) -> None:
    prove(chain, gated.d, proven_model, prover, exposed)
    gated.trade("ETH-PERP", exposed, maker, wad("0.01"), gated.price_e18("ETH"))
    attest_tight(gated, exposed)  # for the new nonce
    assert_healthy_by_the_gate(gated, exposed, keeper)


def test_i34__a_proof_at_prices_outside_the_band__does_not_count(
    chain: Chain,
    gated: Client,
    exposed: str,
    keeper: str,
    proven_model: ProvenModel,
    prover: Prover,
) -> None:
    prove(chain, gated.d, proven_model, prover, exposed)
    gated.set_price("ETH", 3_000 * 0.985)  # 1.5 % away: beyond the registry's 1 % band
    attest_tight(gated, exposed)  # at the new prices
    assert_healthy_by_the_gate(gated, exposed, keeper)


def test_i34__an_attested_mm_below_the_static_one__stands_without_a_proof(
    gated: Client, exposed: str
) -> None:
    # The gate only stops tightening: a quorum may still credit a book within its clamp.
    entry = _entry(gated, exposed, 400, 300)
    _submit(gated, _batch(gated, [entry], 1))
    assert gated.health(exposed).maintenance_margin_wad == 300 * 10**18
    assert mirror_mm(gated, exposed) == 300 * 10**18


def test_set_margin_proofs__not_owner__reverts(
    gated: Client, proofs_deployment: Deployment, others: list[str]
) -> None:
    fn = gated.ch.functions.setMarginProofs(proofs_deployment.margin_proofs)
    assert_revert(_revert(gated, fn, others[0]), "OwnableUnauthorizedAccount", account=others[0])


def test_set_margin_proofs__owner__emits_and_reads_back(
    chain: Chain, system: Client, proofs_deployment: Deployment
) -> None:
    set_proof_gate(chain, proofs_deployment, proofs_deployment.owner)
    assert system.ch.functions.marginProofs().call() == proofs_deployment.margin_proofs
    set_proof_gate(chain, proofs_deployment, proofs_deployment.owner, on=False)
    assert int(system.ch.functions.marginProofs().call(), 16) == 0


def test_proven_requirement__price_count_not_the_masks__reverts(
    chain: Chain, proofs_deployment: Deployment, exposed: str
) -> None:
    # One price per set bit of the mask, as the clearinghouse passes them to both sources.
    registry = chain.contract("MarginProofs", str(proofs_deployment.margin_proofs))
    fn = registry.functions.provenRequirement(exposed, 1, 0b011, [3_000 * 10**18], 0, 0)
    with pytest.raises(ContractRevert) as info:
        chain.call(fn, "proven requirement")
    assert_revert(info.value, "PriceCountMismatch", given=1, expected=2)


@pytest.mark.parametrize("proven", [False, True], ids=["no proof", "proof"])
def test_i34__mirror_equals_the_clearinghouse_to_the_wei__across_attested_values(
    chain: Chain,
    gated: Client,
    exposed: str,
    proven_model: ProvenModel,
    prover: Prover,
    proven: bool,
) -> None:
    # Attested MM below static, just above it, between static and proven, odd wei just below
    # and above the proven MM, at the verifier's cap; prices moved within the band in between.
    if proven:
        prove(chain, gated.d, proven_model, prover, exposed)
    proven_usd = 1_260
    attested = ["250", "390.000001", "800.5", f"{proven_usd - 0.000001}", f"{proven_usd}.000001"]
    attested.append("1950")
    for sequence, mm_usd in enumerate(attested, start=1):
        gated.set_price("ETH", 3_000 * (1 + (-1) ** sequence * 0.004))
        _submit(gated, _batch(gated, [_entry(gated, exposed, 2_900, mm_usd)], sequence))
        on_chain = gated.health(exposed).maintenance_margin_wad
        assert mirror_mm(gated, exposed) == on_chain, f"attested {mm_usd}"
    assert on_chain == (proven_usd * 10**18 if proven else static_mm(gated, exposed))
