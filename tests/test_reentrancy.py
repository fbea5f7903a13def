"""Re-entrancy through a hooked (ERC777-style) collateral token: every state-changing entry point
refuses to be re-entered mid-transfer, and the health views refuse to answer mid-transaction
(THREATS A01, A02; SPEC I15).

`ReentrantToken` calls `hookTarget` with `hookCalldata` on every transfer and records the outcome
(`lastHookSucceeded`, `lastHookReturn`). Each test arms the hook, runs a deposit or withdrawal of
the token (the outer call), checks the inner call was refused with `ReentrancyGuardReentrantCall`
and that nothing but the outer call's own effect changed; then it fires the same hook outside any
clearinghouse call to show the inner call is valid on its own, so only the guard stopped it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from web3.contract import Contract

from offchain.attest import Batch, Domain, Entry, sign
from offchain.chain import Chain
from offchain.chain.client import MAX_UINT, Client, wad
from offchain.chain.deploy import Roles, dev_engine_keys
from offchain.models import SystemSpec

WAD = 10**18
USDC = 0
ETH_ASSET = 0
MARKET = 0  # ETH-PERP
REENTRANCY_SELECTOR = bytes.fromhex("3ee5aeb5")  # ReentrancyGuardReentrantCall()


# ---------------------------------------------------------------------------- helpers
@dataclass
class Hooked:
    """The hooked token listed as collateral, and who holds it."""

    token: Contract
    asset_id: int
    holder: str  # has 10 deposited and 90 in the wallet


def arm(system: Client, owner: str, token: Contract, target: str, calldata: bytes | str) -> None:
    system.chain.send(token.functions.setHook(target, calldata), owner, "arm hook")


def hook_outcome(token: Contract) -> tuple[bool, bytes]:
    return bool(token.functions.lastHookSucceeded().call()), bytes(
        token.functions.lastHookReturn().call()
    )


def assert_refused_by_guard(chain: Chain, token: Contract) -> None:
    succeeded, returned = hook_outcome(token)
    assert not succeeded, "the re-entrant call went through"
    assert returned[:4] == REENTRANCY_SELECTOR
    assert chain.artifacts.decode_error(returned) == ("ReentrancyGuardReentrantCall", {})


def fire_outside(system: Client, hooked: Hooked) -> None:
    """A plain wallet-to-wallet transfer: the hook runs with no clearinghouse call in progress."""
    system.chain.send(hooked.token.functions.transfer(system.d.owner, 1), hooked.holder, "transfer")


def run_outer(system: Client, hooked: Hooked, outer: str) -> int:
    """Deposits or withdraws 5 of the hooked token; returns the change in the holder's balance."""
    ch = system.ch.functions
    if outer == "deposit":
        system.chain.send(
            ch.deposit(hooked.holder, hooked.asset_id, 5 * WAD), hooked.holder, "outer deposit"
        )
        return 5 * WAD
    system.chain.send(
        ch.withdraw(hooked.asset_id, 5 * WAD, hooked.holder), hooked.holder, "outer withdraw"
    )
    return -5 * WAD


def state(system: Client, accounts: list[str]) -> dict[str, Any]:
    """Everything the clearinghouse books for `accounts`, read in one batched round trip."""
    ch = system.ch.functions
    assets = range(ch.collateralCount().call())
    keys: list[tuple[str, Any]] = [
        *((f"account {a}", ch.account(a)) for a in accounts),
        *((f"position {a}", ch.position(a, MARKET)) for a in accounts),
        *((f"balance {a} {i}", ch.collateralBalance(a, i)) for a in accounts for i in assets),
        *((f"total {i}", ch.collateral(i)) for i in assets),
        ("market", ch.market(MARKET)),
        ("deficit", ch.deficitWad()),
    ]
    with system.chain.w3.batch_requests() as batch:
        for _, fn in keys:
            batch.add(fn)
        values = batch.execute()
    return {name: value for (name, _), value in zip(keys, values, strict=True)}


def signed_batch(system: Client, entries: list[tuple[str, int]]) -> tuple[Any, bytes]:
    """A quorum-signed attestation (sequence 1, no prices) of zero requirements for each
    (account, position nonce): valid to submit, so only the guard can refuse the call."""
    assert system.d.attestation_verifier is not None
    spec = SystemSpec().attestation
    assert spec is not None
    issued_at = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    batch = Batch(1, issued_at, 0, (), tuple(Entry(a, nonce, 0, 0) for a, nonce in entries))
    domain = Domain(system.chain.chain_id, system.d.attestation_verifier)
    return batch.as_tuple(), sign(batch, domain, dev_engine_keys(spec.signers)[: spec.threshold])


@pytest.fixture
def hooked(system: Client, roles: Roles, trader: str) -> Hooked:
    token = system.chain.deploy("ReentrantToken", sender=roles.owner)
    receipt = system.chain.send(
        system.ch.functions.listCollateral(token.address, ETH_ASSET, 8_000, 10**30),
        roles.owner,
        "list",
    )
    [asset_id] = [e.args["assetId"] for e in system.events(receipt) if e.name == "CollateralListed"]
    system.chain.send(token.functions.mint(trader, 100 * WAD), trader, "mint")
    system.chain.send(token.functions.approve(system.ch.address, MAX_UINT), trader, "approve")
    system.chain.send(
        system.ch.functions.deposit(trader, asset_id, 10 * WAD), trader, "first deposit"
    )
    return Hooked(token, int(asset_id), trader)


# ---------------------------------------------------------------------------- A01 scenarios
@dataclass
class Reentry:
    calldata: str
    watched: list[str]  # accounts whose bookkeeping the inner call would change
    check_done: Callable[[], None]  # asserts the inner call's effect once it is allowed


def setup_reentry(
    inner: str,
    system: Client,
    roles: Roles,
    hooked: Hooked,
    open_position: Callable[..., Any],
    others: list[str],
) -> Reentry:
    """Prepares a situation in which `inner`, called by the token contract, would succeed."""
    ch, send, me = system.ch, system.chain.send, hooked.token.address
    if inner == "deposit":
        system.mint(me, "USDC", 100)
        # The token approves the clearinghouse for its USDC through its own hook.
        arm(
            system,
            roles.owner,
            hooked.token,
            system.tokens["USDC"].address,
            system.tokens["USDC"].encode_abi("approve", [ch.address, MAX_UINT]),
        )
        fire_outside(system, hooked)
        assert hook_outcome(hooked.token)[0]
        calldata = ch.encode_abi("deposit", [me, USDC, 100 * 10**6])

        def done() -> None:
            assert system.account(me)["cash_wad"] == 100 * WAD

        return Reentry(calldata, [me], done)
    if inner == "withdraw":
        system.mint(roles.owner, "USDC", 100)
        send(
            system.tokens["USDC"].functions.approve(ch.address, 100 * 10**6), roles.owner, "approve"
        )
        send(ch.functions.deposit(me, USDC, 100 * 10**6), roles.owner, "deposit for the token")
        calldata = ch.encode_abi("withdraw", [USDC, 100 * 10**6, me])

        def done() -> None:
            assert system.account(me)["cash_wad"] == 0
            assert system.tokens["USDC"].functions.balanceOf(me).call() == 100 * 10**6

        return Reentry(calldata, [me], done)
    if inner == "liquidate":
        victim = open_position(size=10, collateral_usd=5_000, who=others[0], counterparty=others[1])
        system.set_price("ETH", 2_650)
        assert system.health(victim.trader).liquidatable
        calldata = ch.encode_abi("liquidate", [victim.trader, MARKET, MAX_UINT])

        def done() -> None:
            assert system.position(victim.trader, MARKET) == wad(5)
            assert system.account(me)["cash_wad"] > 0  # the token, as keeper, was paid

        return Reentry(calldata, [victim.trader, me, roles.insurance_fund], done)
    if inner == "settleTrade":
        send(ch.functions.setMatcher(me, True), roles.owner, "token as matcher")
        taker, maker = others[0], others[1]
        system.deposit(taker, "USDC", 10_000, mint=True)
        system.deposit(maker, "USDC", 10_000, mint=True)
        calldata = ch.encode_abi("settleTrade", [MARKET, taker, maker, wad(1), 3_000 * WAD])

        def done() -> None:
            assert system.position(taker, MARKET) == wad(1)
            assert system.position(maker, MARKET) == -wad(1)

        return Reentry(calldata, [taker, maker], done)
    if inner == "resolveInsolvency":
        borrower = others[0]
        system.deposit(others[1], "USDC", 10_000, mint=True)
        system.deposit(borrower, "WETH", 1, mint=True)
        system.withdraw(borrower, "USDC", 2_400)  # borrows the full haircut value of 1 WETH
        system.set_price("ETH", 2_000)  # equity = 1 × 2000 × 80% − 2400 = −800
        assert system.health(borrower).equity_wad == -800 * WAD
        calldata = ch.encode_abi("resolveInsolvency", [borrower])

        def done() -> None:
            assert system.account(borrower)["cash_wad"] == 0
            assert system.balance(borrower, "WETH") == 0

        return Reentry(calldata, [borrower, roles.insurance_fund], done)
    if inner == "withdrawWithAttestation":
        system.mint(roles.owner, "USDC", 100)
        send(
            system.tokens["USDC"].functions.approve(ch.address, 100 * 10**6), roles.owner, "approve"
        )
        send(ch.functions.deposit(me, USDC, 100 * 10**6), roles.owner, "deposit for the token")
        batch, signatures = signed_batch(system, [(me, 0)])
        calldata = ch.encode_abi(
            "withdrawWithAttestation", [USDC, 100 * 10**6, me, batch, signatures]
        )

        def done() -> None:
            assert system.account(me)["cash_wad"] == 0
            assert system.tokens["USDC"].functions.balanceOf(me).call() == 100 * 10**6

        return Reentry(calldata, [me], done)
    if inner == "settleTradeWithAttestation":
        send(ch.functions.setMatcher(me, True), roles.owner, "token as matcher")
        taker, maker = others[0], others[1]
        system.deposit(taker, "USDC", 10_000, mint=True)
        system.deposit(maker, "USDC", 10_000, mint=True)
        batch, signatures = signed_batch(system, [(taker, 1), (maker, 1)])
        calldata = ch.encode_abi(
            "settleTradeWithAttestation",
            [MARKET, taker, maker, wad(1), 3_000 * WAD, batch, signatures],
        )

        def done() -> None:
            assert system.position(taker, MARKET) == wad(1)
            assert system.position(maker, MARKET) == -wad(1)

        return Reentry(calldata, [taker, maker], done)
    raise AssertionError(inner)


@pytest.mark.parametrize("outer", ["deposit", "withdraw"])
@pytest.mark.parametrize(
    "inner",
    [
        "deposit",
        "withdraw",
        "withdrawWithAttestation",
        "liquidate",
        "settleTrade",
        "settleTradeWithAttestation",
        "resolveInsolvency",
    ],
)
def test_hooked_token__reenters_entry_point_mid_transfer__inner_call_reverts_state_unchanged(
    system: Client,
    roles: Roles,
    hooked: Hooked,
    open_position: Callable[..., Any],
    others: list[str],
    outer: str,
    inner: str,
) -> None:
    """# I15 / A01 (SWC-107): the token re-enters `inner` from inside the clearinghouse's own
    `outer` transfer; the inner call reverts with ReentrancyGuardReentrantCall, the outer one
    completes, and only the outer call's effect is booked."""
    reentry = setup_reentry(inner, system, roles, hooked, open_position, others)
    arm(system, roles.owner, hooked.token, system.ch.address, reentry.calldata)
    watched = [hooked.holder, hooked.token.address, *reentry.watched]
    before = state(system, watched)

    delta = run_outer(system, hooked, outer)

    assert_refused_by_guard(system.chain, hooked.token)
    after = state(system, watched)
    balance_key, total_key = (
        f"balance {hooked.holder} {hooked.asset_id}",
        f"total {hooked.asset_id}",
    )
    assert after[balance_key] == before[balance_key] + delta
    assert after[total_key][6] == before[total_key][6] + delta  # totalDeposited
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {balance_key, total_key}, {k: (before[k], after[k]) for k in changed}

    fire_outside(system, hooked)  # the same call with no clearinghouse frame below it
    assert hook_outcome(hooked.token)[0], system.chain.artifacts.decode_error(
        hook_outcome(hooked.token)[1]
    )
    reentry.check_done()


# ---------------------------------------------------------------------------- A02 read-only
@pytest.mark.parametrize("outer", ["deposit", "withdraw"])
@pytest.mark.parametrize("view", ["accountHealth", "isLiquidatable", "previewLiquidation"])
def test_hooked_collateral__health_view_read_mid_transfer__reverts_reentrancy_guard(
    system: Client,
    roles: Roles,
    hooked: Hooked,
    open_position: Callable[..., Any],
    outer: str,
    view: str,
) -> None:
    """# I15 / A02: mid-deposit the tokens have arrived but are not yet credited; a protocol reading
    the holder's health there would see a half-updated state. The views refuse instead."""
    open_position(size=10, collateral_usd=5_000)  # the holder (trader) has a position to price
    args = [hooked.holder, MARKET] if view == "previewLiquidation" else [hooked.holder]
    calldata = system.ch.encode_abi(view, args)
    arm(system, roles.owner, hooked.token, system.ch.address, calldata)

    run_outer(system, hooked, outer)
    assert_refused_by_guard(system.chain, hooked.token)

    fire_outside(system, hooked)
    succeeded, returned = hook_outcome(hooked.token)
    assert succeeded
    direct = system.chain.w3.eth.call({"to": system.ch.address, "data": calldata})  # type: ignore[typeddict-item]
    assert returned == bytes(direct)


@pytest.mark.parametrize("outer", ["deposit", "withdraw"])
def test_hooked_collateral__totals_read_mid_transfer__are_consistent(
    system: Client, roles: Roles, hooked: Hooked, outer: str
) -> None:
    """# I3 / A02: the unguarded bookkeeping views are consistent mid-call: during a deposit the
    total still excludes the amount (credited only after the balance delta is measured), during a
    withdrawal it already excludes it (effects before the transfer); never a double count."""
    calldata = system.ch.encode_abi("collateral", [hooked.asset_id])
    arm(system, roles.owner, hooked.token, system.ch.address, calldata)
    total_before = system.ch.functions.collateral(hooked.asset_id).call()[6]

    delta = run_outer(system, hooked, outer)

    succeeded, returned = hook_outcome(hooked.token)
    assert succeeded
    (config,) = system.chain.w3.codec.decode(
        ["(address,uint8,uint16,uint8,bool,uint128,uint128)"], returned
    )
    total_mid = config[6]
    assert total_mid == (total_before if outer == "deposit" else total_before + delta)
    held = hooked.token.functions.balanceOf(system.ch.address).call()
    assert total_mid <= held  # I3 holds even mid-call
    assert system.ch.functions.collateral(hooked.asset_id).call()[6] == total_before + delta
