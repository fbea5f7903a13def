"""Liquidation, bad debt and the margin state machine.

SPEC I1-I5, I7-I11; ARCHITECTURE S5, S6; THREATS A07, A10, A11, A12, D10, D16. Expected numbers
come from the accounting model worked out by hand in each test (or from the exact integer mirror
`offchain.risk.health`), never from the contract under test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from helpers import (
    View,
    fund,
    make_stale,
    read_many,
    rollback,
    send_fast,
    try_send,
    usdc,
    view,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from offchain.chain.client import MAX_UINT, Client, Health, wad
from offchain.errors import ContractRevert
from offchain.risk.health import (
    AccountState,
    CollateralParams,
    MarketParams,
    ceil_div,
    health,
    trade_cash_change_wad,
)

E18 = 10**18
BPS = 10_000
ETH, BTC, SOL = 0, 1, 2
USDC, WETH, WBTC = 0, 1, 2
IM_BPS, MM_BPS, PENALTY_BPS, BAND_BPS = 1_000, 650, 300, 200
CLOSE_FACTOR_BPS, FULL_HEALTH_BPS, KEEPER_SHARE_BPS = 5_000, 5_000, 3_000
DUST_WAD, REWARD_CAP_WAD = 50 * E18, 1_000 * E18
FUND_SEED_WAD = 100_000 * E18
SYMBOL = {ETH: "ETH", BTC: "BTC", SOL: "SOL"}
MARKET = {ETH: "ETH-PERP", BTC: "BTC-PERP", SOL: "SOL-PERP"}


# Every example runs transactions on Anvil: shrinking a failure would take minutes, so a failing
# example is reported as generated (still reproducible: derandomized).
CHAIN_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


# ---------------------------------------------------------------------------- helpers


def open_at_oracle(system: Client, market_id: int, taker: str, maker: str, delta: int) -> None:
    price = system.price_e18(SYMBOL[market_id])
    send_fast(
        system.chain,
        system.fn("settleTrade", market_id, taker, maker, delta, price),
        system.d.matcher,
    )


def set_price(system: Client, asset: int, answer: int) -> None:
    """Publishes a raw 8-decimal answer on an asset's feed."""
    send_fast(system.chain, system.feeds[SYMBOL[asset]].functions.setAnswer(answer), system.d.owner)


def usd(price: float | str) -> int:
    """A USD price as an 8-decimal feed answer, exactly."""
    whole, _, frac = str(price).partition(".")
    return int(whole) * 10**8 + int((frac + "00000000")[:8])


def event(system: Client, receipt: Any, name: str) -> dict[str, Any]:
    found = [e.args for e in system.events(receipt) if e.name == name]
    assert len(found) == 1, f"expected one {name}, got {len(found)}"
    return found[0]


def shortfall(h: Health) -> int:
    """MM − equity: what I8 says a liquidation never grows."""
    return h.maintenance_margin_wad - h.equity_wad


def penalty_of(closed: int, price: int) -> int:
    return ceil_div(closed * price * PENALTY_BPS, E18 * BPS)


def reward_of(penalty: int) -> int:
    return min(penalty * KEEPER_SHARE_BPS // BPS, REWARD_CAP_WAD)


def deficit(system: Client) -> int:
    return int(system.ch.functions.deficitWad().call())


@pytest.fixture
def underwater(system: Client, trader: str, maker: str) -> Client:
    """`trader` long 10 ETH from 3000 with 5000 USDC, ETH now 2660: equity 1600 < MM 1729,
    above half of MM, so a partial liquidation applies."""
    fund(system, trader, "USDC", usdc(5_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    open_at_oracle(system, ETH, trader, maker, wad(10))
    set_price(system, ETH, usd(2_660))
    return system


# ---------------------------------------------------------------------------- happy path (S5)
def test_liquidate__after_a_price_drop__closes_half_to_the_insurance_fund_at_the_oracle_price(
    underwater: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    system, fund_account = underwater, roles.insurance_fund
    price = 2_660 * E18
    h = system.health(trader)
    assert (h.equity_wad, h.maintenance_margin_wad) == (1_600 * E18, 1_729 * E18)
    closed, penalty, reward = 5 * E18, 399 * E18, 119_700 * 10**15  # 3% of 13300; 30% of that
    assert (penalty, reward) == (penalty_of(closed, price), reward_of(penalty))
    returned = system.fn("liquidate", trader, ETH, MAX_UINT).call({"from": keeper})
    assert tuple(returned) == (closed, reward)
    fund_before = system.account(fund_account)

    receipt = system.liquidate(keeper, trader, "ETH-PERP")

    ev = event(system, receipt, "Liquidate")
    assert ev == {
        "account": trader,
        "marketId": ETH,
        "keeper": keeper,
        "sizeDelta": -closed,
        "priceE18": price,
        "penaltyWad": penalty,
        "keeperRewardWad": reward,
        "sizeAfter": 10 * E18 - closed,
        "accountNonce": 2,
        "backstopNonce": fund_before["nonce"] + 1,
    }
    # The account sold 5 ETH at the oracle price and paid the penalty.
    assert system.account(trader)["cash_wad"] == (5_000 - 30_000 + 13_300 - 399) * E18
    # The fund bought them at the oracle price and kept the penalty less the keeper's share.
    assert system.position(fund_account, ETH) == closed
    assert (
        system.account(fund_account)["cash_wad"] - fund_before["cash_wad"]
        == -13_300 * E18 + penalty - reward
    )
    assert system.account(fund_account)["market_mask"] == 1 << ETH
    assert system.account(keeper)["cash_wad"] == reward
    after = system.health(trader)
    assert shortfall(after) < shortfall(h)  # I8
    # I1 and I2: the exposure moved, it did not vanish.
    sizes = [system.position(a, ETH) for a in (trader, maker, fund_account)]
    assert sum(sizes) == 0
    assert system.ch.functions.market(ETH).call()[8] == sum(max(s, 0) for s in sizes)


def test_liquidate__keeper_with_no_capital__is_paid_in_cash_and_withdraws_the_reward(
    underwater: Client, trader: str, keeper: str
) -> None:
    system = underwater
    usdc_token = system.tokens["USDC"]
    assert system.account(keeper) == {
        "cash_wad": 0,
        "nonce": 0,
        "market_mask": 0,
        "collateral_mask": 0,
    }
    assert usdc_token.functions.balanceOf(keeper).call() == 0

    system.liquidate(keeper, trader, "ETH-PERP")

    assert system.account(keeper)["cash_wad"] == 119_700 * 10**15
    assert system.balance(keeper, "USDC") == usdc(119.7)
    system.withdraw(keeper, "USDC", "119.7")
    assert usdc_token.functions.balanceOf(keeper).call() == usdc(119.7)
    assert system.account(keeper)["cash_wad"] == 0


def test_liquidate__short_after_a_price_rise__buys_back_to_the_fund(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    fund(system, trader, "USDC", usdc(5_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    open_at_oracle(system, ETH, trader, maker, -wad(10))
    set_price(system, ETH, usd(3_330))  # equity 1700 < MM 2164.5, above half of it
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    ev = event(system, receipt, "Liquidate")
    assert (ev["sizeDelta"], ev["sizeAfter"]) == (5 * E18, -5 * E18)
    assert ev["penaltyWad"] == 499_500 * 10**15  # 3% of 16650
    assert system.position(roles.insurance_fund, ETH) == -5 * E18
    assert system.account(trader)["cash_wad"] == (5_000 + 30_000 - 16_650) * E18 - ev["penaltyWad"]


# ---------------------------------------------------------------------------- reverts
def test_liquidate__own_account__reverts_self_liquidation(underwater: Client, trader: str) -> None:
    with pytest.raises(ContractRevert) as e:
        underwater.liquidate(trader, trader, "ETH-PERP")
    assert e.value.name == "SelfLiquidation"
    assert e.value.args_by_name["account"].lower() == trader.lower()


def test_liquidate__the_insurance_fund__reverts_backstop_not_liquidatable(
    underwater: Client, trader: str, keeper: str, roles
) -> None:
    underwater.liquidate(keeper, trader, "ETH-PERP")  # the fund now holds a position
    with pytest.raises(ContractRevert) as e:
        underwater.liquidate(keeper, roles.insurance_fund, "ETH-PERP")
    assert e.value.name == "BackstopNotLiquidatable"
    assert e.value.args_by_name["account"].lower() == roles.insurance_fund.lower()


def test_liquidate__max_close_size_zero__reverts_zero_amount(
    underwater: Client, trader: str, keeper: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        underwater.liquidate(keeper, trader, "ETH-PERP", 0)
    assert e.value.name == "ZeroAmount"


@pytest.mark.parametrize("market_id", [3, 2**256 - 1])
def test_liquidate__unlisted_market__reverts_unknown_market(
    underwater: Client, trader: str, keeper: str, market_id: int
) -> None:
    with pytest.raises(ContractRevert) as e:
        underwater.chain.send(
            underwater.fn("liquidate", trader, market_id, MAX_UINT), keeper, "liquidate"
        )
    assert e.value.name == "UnknownMarket"
    assert e.value.args_by_name["marketId"] == market_id


def test_liquidate__market_without_a_position__reverts_no_position(
    underwater: Client, trader: str, keeper: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        underwater.liquidate(keeper, trader, "SOL-PERP")
    assert e.value.name == "NoPosition"
    assert e.value.args_by_name["account"].lower() == trader.lower()
    assert e.value.args_by_name["marketId"] == SOL


def test_liquidate__healthy_account__reverts_account_healthy(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    fund(system, trader, "USDC", usdc(5_000))
    fund(system, maker, "USDC", usdc(1_000_000))
    open_at_oracle(system, ETH, trader, maker, wad(10))
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, trader, "ETH-PERP")
    assert e.value.name == "AccountHealthy"
    assert e.value.args_by_name["equityWad"] == 5_000 * E18
    assert e.value.args_by_name["maintenanceMarginWad"] == 1_950 * E18


def test_liquidate__equity_exactly_at_maintenance_margin__is_healthy_and_one_tick_lower_is_not(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    # I7: liquidatable only when equity < MM. 3820 − 30000 + 10·2800 = 1820 = 6.5% of 28000.
    fund(system, trader, "USDC", usdc(3_820))
    fund(system, maker, "USDC", usdc(1_000_000))
    open_at_oracle(system, ETH, trader, maker, wad(10))
    set_price(system, ETH, usd(2_800))
    h = system.health(trader)
    assert h.equity_wad == h.maintenance_margin_wad == 1_820 * E18
    assert not system.ch.functions.isLiquidatable(trader).call()
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, trader, "ETH-PERP")
    assert e.value.name == "AccountHealthy"
    assert (
        e.value.args_by_name["equityWad"]
        == e.value.args_by_name["maintenanceMarginWad"]
        == 1_820 * E18
    )

    set_price(system, ETH, usd(2_800) - 1)  # one feed unit (1e-8 USD) lower
    h = system.health(trader)
    assert h.equity_wad < h.maintenance_margin_wad
    assert system.ch.functions.isLiquidatable(trader).call()
    system.liquidate(keeper, trader, "ETH-PERP")
    assert system.position(trader, ETH) == 5 * E18


# ----------------------------------------------------------------- close factor and dust (I10, A10)
@dataclass(frozen=True)
class CloseCase:
    size: int
    collateral_usdc: int
    price: str
    close: int
    full: bool


CLOSE_CASES = {
    # ⌈|size|·50%⌉ with an odd wei: the close rounds up.
    "half_rounded_up": CloseCase(10 * E18 + 1, usdc(5_000), "2660", 5 * E18 + 1, False),
    # $42 position at or below the $50 dust threshold closes in full.
    "dust_position": CloseCase(15 * 10**15, usdc(4.5), "2800", 15 * 10**15, True),
    # $85.50 position: half would leave $42.75 of dust, so all of it closes.
    "dust_remainder": CloseCase(30 * 10**15, usdc(9), "2850", 30 * 10**15, True),
    # $100 position: the remainder is exactly $50, not below the threshold, so half closes.
    "remainder_at_threshold": CloseCase(40 * 10**15, usdc(25), "2500", 20 * 10**15, False),
    # Equity 800 < half of MM 1677: deeply under water, all of it closes.
    "deep_under_water": CloseCase(10 * E18, usdc(5_000), "2580", 10 * E18, True),
}


@pytest.mark.parametrize("case", CLOSE_CASES.values(), ids=CLOSE_CASES.keys())
def test_liquidate__close_size__is_half_rounded_up_unless_dust_or_deeply_under_water(
    system: Client, trader: str, maker: str, keeper: str, case: CloseCase
) -> None:
    fund(system, trader, "USDC", case.collateral_usdc)
    fund(system, maker, "USDC", usdc(1_000_000))
    open_at_oracle(system, ETH, trader, maker, case.size)
    set_price(system, ETH, usd(case.price))
    preview = system.preview(trader, "ETH-PERP")
    assert preview.status_name == "LIQUIDATABLE"
    assert (preview.close_size, preview.full) == (case.close, case.full)

    ev = event(system, system.liquidate(keeper, trader, "ETH-PERP"), "Liquidate")

    assert -ev["sizeDelta"] == case.close
    remainder = ev["sizeAfter"]
    assert remainder == case.size - case.close
    # I10: never a remainder below the dust threshold.
    assert remainder == 0 or remainder * ev["priceE18"] // E18 >= DUST_WAD
    if not case.full:
        assert case.close == ceil_div(case.size * CLOSE_FACTOR_BPS, BPS)


def test_liquidate__max_close_size_below_the_allowed_close__closes_exactly_that_much(
    underwater: Client, trader: str, keeper: str
) -> None:
    system = underwater
    assert system.preview(trader, "ETH-PERP").close_size == 5 * E18
    allowance = E18 + 3
    returned = system.fn("liquidate", trader, ETH, allowance).call({"from": keeper})
    assert tuple(returned) == (allowance, reward_of(penalty_of(allowance, 2_660 * E18)))
    ev = event(system, system.liquidate(keeper, trader, "ETH-PERP", allowance), "Liquidate")
    assert (ev["sizeDelta"], ev["sizeAfter"]) == (-allowance, 9 * E18 - 3)
    assert ev["penaltyWad"] == penalty_of(allowance, 2_660 * E18)
    # Still under water: the next call's allowance is computed afresh from what is left.
    assert system.preview(trader, "ETH-PERP").close_size == ceil_div(9 * E18 - 3, 2)


def test_liquidate__max_close_size_leaving_dust__never_strands_a_dust_remainder(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    # I10 / A10: "it never leaves a remainder below the dust threshold". The $85.50 position
    # must close in full (see dust_remainder above); a keeper passing a maxCloseSize just short
    # of it must not be able to strand a $2.85 remainder that no keeper will ever pay gas for.
    fund(system, trader, "USDC", usdc(9))
    fund(system, maker, "USDC", usdc(1_000_000))
    open_at_oracle(system, ETH, trader, maker, 30 * 10**15)
    set_price(system, ETH, usd(2_850))
    assert system.preview(trader, "ETH-PERP").full
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, trader, "ETH-PERP", 29 * 10**15)
    assert e.value.name == "LiquidationLeavesDust"
    assert e.value.args_by_name == {
        "remainingNotionalWad": 10**15 * 2_850,
        "minPositionNotionalWad": DUST_WAD,
    }
    assert system.position(trader, ETH) == 30 * 10**15


def test_liquidate__many_positions_just_above_dust__each_closes_in_full_and_pays_the_keeper(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    # D10: eight $60 positions; after a 5% drop each is worth $57, half of it would be dust, so
    # every liquidation closes one position in full and pays 30% of its 3% penalty.
    markets = [ETH]
    for _ in range(7):
        send_fast(
            system.chain,
            system.fn("listMarket", ETH, 1_000, 650, 300, 200, 10_000 * E18, 10**6 * E18),
            system.d.owner,
        )
    markets += list(range(3, 10))
    fund(system, trader, "USDC", usdc(48))
    fund(system, maker, "USDC", usdc(1_000_000))
    size = 20 * 10**15
    for market_id in markets:
        send_fast(
            system.chain,
            system.fn("settleTrade", market_id, trader, maker, size, 3_000 * E18),
            system.d.matcher,
        )
    set_price(system, ETH, usd(2_850))
    price = 2_850 * E18
    liquidations = 0
    for market_id in markets:
        if not system.health(trader).liquidatable:
            break
        before = system.health(trader)
        receipt = system.chain.send(
            system.fn("liquidate", trader, market_id, MAX_UINT), keeper, "liquidate"
        )
        ev = event(system, receipt, "Liquidate")
        assert (ev["sizeDelta"], ev["sizeAfter"]) == (-size, 0)
        assert ev["penaltyWad"] == penalty_of(size, price) == 1_710 * 10**15
        assert ev["keeperRewardWad"] == 513 * 10**15 > 0
        assert shortfall(system.health(trader)) <= shortfall(before)  # I8
        liquidations += 1
    assert liquidations >= 2
    assert not system.health(trader).liquidatable
    for market_id in markets[liquidations:]:
        # What is left is whole positions, none of them dust.
        assert system.ch.functions.position(trader, market_id).call() * price // E18 >= DUST_WAD
    assert system.account(keeper)["cash_wad"] == liquidations * 513 * 10**15


# ---------------------------------------------------------------------------- rewards (I9, A11)
def test_liquidate__large_close__caps_the_keeper_reward_and_the_fund_keeps_the_rest(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    fund(system, trader, "USDC", usdc(50_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    open_at_oracle(system, ETH, trader, maker, wad(100))
    set_price(system, ETH, usd(2_650))  # equity 15000 < MM 17225; close 50 ETH
    fund_cash = system.account(roles.insurance_fund)["cash_wad"]
    ev = event(system, system.liquidate(keeper, trader, "ETH-PERP"), "Liquidate")
    assert ev["penaltyWad"] == 3_975 * E18  # 3% of 132500; 30% would be 1192.50
    assert ev["keeperRewardWad"] == REWARD_CAP_WAD
    assert system.account(keeper)["cash_wad"] == REWARD_CAP_WAD
    assert (
        system.account(roles.insurance_fund)["cash_wad"] - fund_cash == -132_500 * E18 + 2_975 * E18
    )


@pytest.fixture
def parties(system: Client, trader: str, maker: str) -> Client:
    """A deep-pocketed maker, and a trader whose wallet holds USDC already approved, so each
    hypothesis example costs one deposit."""
    fund(system, maker, "USDC", usdc(10_000_000))
    send_fast(
        system.chain,
        system.tokens["USDC"].functions.mint(trader, usdc(100_000_000)),
        system.d.owner,
    )
    send_fast(
        system.chain, system.tokens["USDC"].functions.approve(system.ch.address, MAX_UINT), trader
    )
    return system


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=CHAIN_PHASES,
)
@given(
    market_id=st.sampled_from([ETH, BTC, SOL]),
    long=st.booleans(),
    notional_usd=st.integers(min_value=1_000, max_value=1_000_000),
    size_noise=st.integers(min_value=0, max_value=10**15),
    collateral_bps=st.integers(min_value=1_000, max_value=1_200),
    adverse_bps=st.integers(min_value=600, max_value=2_500),
    close_bps=st.one_of(st.none(), st.integers(min_value=1, max_value=BPS)),
)
def test_liquidate__any_price_size_and_close__is_never_less_healthy_and_bounds_reward(
    parties: Client,
    trader: str,
    maker: str,
    keeper: str,
    roles,
    market_id: int,
    long: bool,
    notional_usd: int,
    size_noise: int,
    collateral_bps: int,
    adverse_bps: int,
    close_bps: int | None,
) -> None:
    # I8 (MM − equity never grows), I9 (reward = min(30% of penalty, cap), penalty rounded up
    # and capped by equity, I24),
    # I10 (at most half unless full), and the preview agrees with what liquidate then does.
    system, fund_account = parties, roles.insurance_fund
    with rollback(system.chain):
        asset = market_id  # markets 0..2 are priced by assets 0..2
        entry = system.price_e18(SYMBOL[asset])
        size = (notional_usd * E18 * E18) // entry + size_noise
        collateral_wad = ceil_div(size * entry * collateral_bps, E18 * BPS)  # at least IM
        send_fast(
            system.chain,
            system.fn("deposit", trader, USDC, ceil_div(collateral_wad, 10**12)),
            trader,
        )
        open_at_oracle(system, market_id, trader, maker, size if long else -size)
        answer = entry // 10**10
        set_price(
            system,
            asset,
            answer * (BPS - adverse_bps) // BPS if long else answer * (BPS + adverse_bps) // BPS,
        )
        preview = system.preview(trader, MARKET[market_id])
        assert preview.status_name == "LIQUIDATABLE"
        max_close = MAX_UINT if close_bps is None else max(1, size * close_bps // BPS)
        views = [
            view(system.ch, "accountHealth", trader),
            view(system.ch, "account", keeper),
            view(system.ch, "account", fund_account),
        ]
        before, keeper_before, fund_before = read_many(system.chain, views)

        remaining_wad = (size - min(max_close, preview.close_size)) * preview.price_e18 // E18
        if max_close < preview.close_size and remaining_wad < DUST_WAD:
            # I10: a keeper's cap that would strand dust is refused, and nothing changes.
            with pytest.raises(ContractRevert) as e:
                system.liquidate(keeper, trader, MARKET[market_id], max_close)
            assert e.value.name == "LiquidationLeavesDust"
            assert e.value.args_by_name["remainingNotionalWad"] == remaining_wad
            assert read_many(system.chain, views)[0] == before
            return
        try:
            receipt = system.liquidate(keeper, trader, MARKET[market_id], max_close)
        except ContractRevert as exc:
            # I8 kept exactly: only a close of a few wei, which frees less than rounding costs.
            assert exc.name == "LiquidationTooSmall"  # noqa: PT017 - either outcome may be right
            assert max_close * preview.price_e18 < 10 * E18 * E18 // 10**16
            return

        ev = event(system, receipt, "Liquidate")
        closed = abs(ev["sizeDelta"])
        price = ev["priceE18"]
        assert closed == min(preview.close_size, max_close)
        assert price == preview.price_e18
        if not preview.full:
            assert preview.close_size == ceil_div(size * CLOSE_FACTOR_BPS, BPS)
        else:
            assert preview.close_size == size
        # I9: the penalty is the rate's, trimmed only by the wei the closure frees (I8), and
        # never more than the equity the account has (I24): nothing once it is under water.
        due = min(penalty_of(closed, price), max(Health(*before).equity_wad, 0))
        assert ev["penaltyWad"] <= due
        assert due - ev["penaltyWad"] <= 2
        assert ev["keeperRewardWad"] == reward_of(ev["penaltyWad"]) <= REWARD_CAP_WAD
        if max_close >= preview.close_size:
            assert (ev["penaltyWad"], ev["keeperRewardWad"]) == (
                preview.penalty_wad,
                preview.keeper_reward_wad,
            )
        after, keeper_after, fund_after = read_many(system.chain, views)
        assert shortfall(Health(*after)) <= shortfall(Health(*before))
        assert keeper_after[0] - keeper_before[0] == ev["keeperRewardWad"]
        sizes = read_many(
            system.chain,
            [view(system.ch, "position", a, market_id) for a in (trader, maker, fund_account)],
        )
        assert sum(sizes) == 0  # I1
        assert fund_after[1] == fund_before[1] + 1  # I12 for the backstop


# ---------------------------------------------------------------------------- wei-level I8
def test_liquidate__one_wei_close_at_a_sub_dollar_price__never_leaves_the_account_less_healthy(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    # I8 is stated without tolerance. At 0.45 USD one wei of size is worth 0.45 wei: closing it
    # releases no MM after rounding, while the penalty rounds up to a whole wei.
    set_price(system, SOL, usd("0.5"))
    fund(system, trader, "USDC", usdc(100))
    fund(system, maker, "USDC", usdc(100_000))
    open_at_oracle(system, SOL, trader, maker, wad(2_000))
    set_price(system, SOL, usd("0.45"))
    before = system.health(trader)
    assert before.liquidatable
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, trader, "SOL-PERP", 1)
    assert e.value.name == "LiquidationTooSmall"
    assert e.value.args_by_name == {"closeSize": 1}
    assert shortfall(system.health(trader)) == shortfall(before)


def test_liquidate__close_freeing_less_than_the_rounded_penalty__penalty_capped_at_what_it_frees(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    # I8's cap (`penaltyWad > freed → freed`): at 0.45 USD, closing 20 wei of a 2,000 SOL long
    # frees exactly 0 wei of MM − equity, while 3% of its notional rounds up to 1 wei. Without
    # the cap the penalty would be 1 and MM − equity would grow by that wei.
    set_price(system, SOL, usd("0.5"))
    fund(system, trader, "USDC", usdc(100))
    fund(system, maker, "USDC", usdc(100_000))
    open_at_oracle(system, SOL, trader, maker, wad(2_000))
    set_price(system, SOL, usd("0.45"))
    price = 45 * 10**16
    assert penalty_of(20, price) == 1
    before = system.health(trader)
    ev = event(system, system.liquidate(keeper, trader, "SOL-PERP", 20), "Liquidate")
    assert (ev["sizeDelta"], ev["penaltyWad"], ev["keeperRewardWad"]) == (-20, 0, 0)
    assert shortfall(system.health(trader)) == shortfall(before)


@pytest.mark.parametrize(
    "cap_offset", [-1, 0, 1], ids=["cap-one-wei-below", "cap-exact", "cap-one-wei-above"]
)
def test_liquidate__reward_at_the_keeper_cap_and_one_wei_either_side__is_min_of_share_and_cap(
    underwater: Client, trader: str, keeper: str, roles, cap_offset: int
) -> None:
    # I9 at the cap's boundary: the uncapped reward R is 30% of the penalty, rounded down; with
    # the cap at R − 1, R and R + 1 the keeper gets R − 1, R and R. Catches a cap compared the
    # wrong way (`<`, `<=`), off by one, or missing.
    system = underwater
    preview = system.preview(trader, "ETH-PERP")
    uncapped = preview.penalty_wad * KEEPER_SHARE_BPS // BPS
    assert uncapped == preview.keeper_reward_wad < REWARD_CAP_WAD  # the default cap is far
    cap = uncapped + cap_offset
    config = (CLOSE_FACTOR_BPS, FULL_HEALTH_BPS, KEEPER_SHARE_BPS, 8, DUST_WAD, cap)
    system.chain.send(system.fn("configureLiquidation", config), roles.owner, "cap")
    assert system.preview(trader, "ETH-PERP").keeper_reward_wad == min(uncapped, cap)
    ev = event(system, system.liquidate(keeper, trader, "ETH-PERP"), "Liquidate")
    assert ev["penaltyWad"] == preview.penalty_wad
    assert ev["keeperRewardWad"] == min(uncapped, cap)
    assert system.account(keeper)["cash_wad"] == min(uncapped, cap)


# --------------------------------------------------------------------- bad debt (I11, S6, A12, D16)
def _open_and_move(
    system: Client, trader: str, maker: str, collateral: int, size: int, move_to: str
) -> None:
    fund(system, trader, "USDC", collateral)
    fund(system, maker, "USDC", usdc(10_000_000))
    open_at_oracle(system, ETH, trader, maker, size)
    set_price(system, ETH, usd(move_to))


def test_liquidate__into_negative_equity__resolves_insolvency_in_the_same_tx_from_the_fund(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    fund_account = roles.insurance_fund
    # 3 ETH from 3000 on 1000 USDC; at 2500 equity is −500: everything closes.
    _open_and_move(system, trader, maker, usdc(1_000), wad(3), "2500")
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    liq = event(system, receipt, "Liquidate")
    # I24: no equity left, so no penalty and no reward (the fund would have paid them).
    assert (liq["sizeDelta"], liq["penaltyWad"], liq["keeperRewardWad"]) == (-wad(3), 0, 0)
    assert system.account(keeper)["cash_wad"] == 0
    # Cash after the close: 1000 − 9000 + 7500 = −500. The fund's equity covers it all.
    resolved = event(system, receipt, "InsolvencyResolved")
    assert resolved == {
        "account": trader,
        "debtWad": 500 * E18,
        "coveredWad": 500 * E18,
        "deficitWad": 0,
    }
    assert system.account(trader) == {
        "cash_wad": 0,
        "nonce": 2,
        "market_mask": 0,
        "collateral_mask": 0,
    }
    assert system.health(trader) == Health(0, 0, 0)
    assert deficit(system) == 0
    # The fund bought 3 ETH at 2500 and absorbed the 500 debt: the account's hole, no more.
    assert system.account(fund_account)["cash_wad"] == FUND_SEED_WAD - 7_500 * E18 - 500 * E18
    assert system.health(fund_account).equity_wad == FUND_SEED_WAD - 500 * E18


def test_liquidate__debt_beyond_a_drained_fund__covers_what_the_fund_has_and_books_the_rest(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    fund_account = roles.insurance_fund
    system.withdraw(fund_account, "USDC", 99_700)  # the fund keeps 300 USDC
    _open_and_move(system, trader, maker, usdc(1_000), wad(3), "2500")
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    # The fund's equity before the debt: its 300 (no penalty from an account under water, I24).
    resolved = event(system, receipt, "InsolvencyResolved")
    assert resolved["debtWad"] == 500 * E18
    assert resolved["coveredWad"] == 300 * E18
    assert resolved["deficitWad"] == 200 * E18
    assert deficit(system) == 200 * E18
    # Booked, not hidden: the fund's negative equity is exactly the booked deficit.
    assert system.health(fund_account).equity_wad == -deficit(system)


@pytest.mark.parametrize(
    ("side", "move_to", "debt", "fund_equity"),
    [
        # 1000 ETH long from 3000 on 400k, crash to 2000: equity −600k, no penalty (I24).
        (1, "2000", 600_000 * E18, FUND_SEED_WAD),
        # 1000 ETH short from 3000 on 400k, squeeze to 4000: the fund's cash swells with the
        # short's proceeds, but those are owed back: only its equity may cover the debt.
        (-1, "4000", 600_000 * E18, FUND_SEED_WAD),
    ],
    ids=["long_crash", "short_squeeze"],
)
def test_liquidate__bad_debt_beyond_the_fund__books_the_deficit_and_spares_bystanders(
    system: Client,
    trader: str,
    maker: str,
    keeper: str,
    others: list[str],
    roles,
    side: int,
    move_to: str,
    debt: int,
    fund_equity: int,
) -> None:
    fund_account = roles.insurance_fund
    saver, weth_holder, wbtc_holder = others[:3]
    fund(system, saver, "USDC", 12_345_678_901)
    fund(system, weth_holder, "WETH", 1_500_000_000_000_000_001)
    fund(system, weth_holder, "USDC", usdc(10))
    fund(system, wbtc_holder, "WBTC", 12_345_678)
    _open_and_move(system, trader, maker, usdc(400_000), side * wad(1_000), move_to)
    bystanders = [saver, weth_holder, wbtc_holder, maker]

    def observed() -> list[Any]:
        calls = []
        for who in bystanders:
            calls += [view(system.ch, "account", who), view(system.ch, "accountHealth", who)]
            calls += [view(system.ch, "collateralBalance", who, c) for c in (WETH, WBTC)]
            calls += [view(system.ch, "position", who, m) for m in (ETH, BTC, SOL)]
        return read_many(system.chain, calls)

    seen = observed()
    receipt = system.liquidate(keeper, trader, "ETH-PERP")

    resolved = event(system, receipt, "InsolvencyResolved")
    assert resolved["debtWad"] == debt
    assert resolved["coveredWad"] == fund_equity
    assert resolved["deficitWad"] == debt - fund_equity
    assert deficit(system) == debt - fund_equity
    assert system.health(fund_account).equity_wad == -deficit(system)
    assert observed() == seen  # D16: accounts without positions never absorb bad debt
    assert system.account(trader)["cash_wad"] == 0


def test_resolve_insolvency__negative_cash_backed_by_weth_that_crashes__seizes_it_into_the_fund(
    system: Client, trader: str, keeper: str, roles
) -> None:
    fund_account = roles.insurance_fund
    fund(system, trader, "WETH", E18)
    system.withdraw(trader, "USDC", 2_000)  # borrows against 80% of 3000
    assert system.account(trader)["cash_wad"] == -2_000 * E18
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("resolveInsolvency", trader), keeper, "resolve")
    assert e.value.name == "NotInsolvent"
    assert e.value.args_by_name["equityWad"] == 400 * E18

    set_price(system, ETH, usd(2_000))  # WETH now counts 1600 against a 2000 debt
    assert system.health(trader).equity_wad == -400 * E18
    receipt = system.chain.send(system.fn("resolveInsolvency", trader), keeper, "resolve")

    seized = event(system, receipt, "CollateralSeized")
    assert seized == {"account": trader, "assetId": WETH, "amount": E18, "valueWad": 2_000 * E18}
    resolved = event(system, receipt, "InsolvencyResolved")
    assert resolved == {
        "account": trader,
        "debtWad": 2_000 * E18,
        "coveredWad": 2_000 * E18,
        "deficitWad": 0,
    }
    assert system.account(trader) == {
        "cash_wad": 0,
        "nonce": 0,
        "market_mask": 0,
        "collateral_mask": 0,
    }
    assert system.balance(trader, "WETH") == 0
    assert system.balance(fund_account, "WETH") == E18
    assert system.account(fund_account)["collateral_mask"] == 1 << WETH
    assert system.account(fund_account)["cash_wad"] == FUND_SEED_WAD - 2_000 * E18
    assert system.ch.functions.collateral(WETH).call()[6] == E18  # I3: only the owner changed
    assert deficit(system) == 0
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("resolveInsolvency", trader), keeper, "resolve")
    assert e.value.name == "NotInsolvent"
    assert e.value.args_by_name["equityWad"] == 0


def test_resolve_insolvency__account_with_positions__reverts_has_open_positions(
    underwater: Client, trader: str, keeper: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        underwater.chain.send(underwater.fn("resolveInsolvency", trader), keeper, "resolve")
    assert e.value.name == "HasOpenPositions"
    assert e.value.args_by_name["marketMask"] == 1 << ETH


def test_resolve_insolvency__the_insurance_fund__reverts_backstop_not_liquidatable(
    system: Client, keeper: str, roles
) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("resolveInsolvency", roles.insurance_fund), keeper, "resolve")
    assert e.value.name == "BackstopNotLiquidatable"


# ---------------------------------------------------------------------------- previewLiquidation
def _make_healthy(system: Client, trader: str) -> tuple[str, int, str]:
    set_price(system, ETH, usd(3_000))
    return trader, ETH, "AccountHealthy"


def _make_no_position(system: Client, trader: str) -> tuple[str, int, str]:
    return trader, SOL, "NoPosition"


def _make_unknown_market(system: Client, trader: str) -> tuple[str, int, str]:
    return trader, 7, "UnknownMarket"


def _make_stale_market_price(system: Client, trader: str) -> tuple[str, int, str]:
    make_stale(system, "ETH")
    return trader, ETH, "StalePrice"


def _make_sequencer_down(system: Client, trader: str) -> tuple[str, int, str]:
    feed = system.chain.deploy("MockAggregator", 0, "sequencer", 1, sender=system.d.owner)
    send_fast(
        system.chain, system.router.functions.setSequencerFeed(feed.address, 3_600), system.d.owner
    )
    return trader, ETH, "SequencerDown"


def _make_backstop(system: Client, trader: str) -> tuple[str, int, str]:
    return system.d.insurance_fund, ETH, "BackstopNotLiquidatable"


PREVIEW_CASES = {  # status name: (setup, PreviewStatus value)
    "HEALTHY": (_make_healthy, 1),
    "NO_POSITION": (_make_no_position, 2),
    "UNKNOWN_MARKET": (_make_unknown_market, 3),
    "PRICE_UNAVAILABLE": (_make_stale_market_price, 4),
    "SEQUENCER_DOWN": (_make_sequencer_down, 5),
    "BACKSTOP": (_make_backstop, 6),
}


@pytest.mark.parametrize("status", PREVIEW_CASES.keys())
def test_preview_liquidation__each_status__never_reverts_and_liquidate_agrees(
    underwater: Client, trader: str, keeper: str, status: str
) -> None:
    system = underwater
    setup, expected_status = PREVIEW_CASES[status]
    account, market_id, error = setup(system, trader)
    preview = system.ch.functions.previewLiquidation(account, market_id).call()  # never reverts
    assert preview[0] == expected_status
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("liquidate", account, market_id, MAX_UINT), keeper, "liquidate")
    assert e.value.name == error
    if status == "HEALTHY":
        h = system.health(trader)
        assert (preview[6], preview[7]) == (h.equity_wad, h.maintenance_margin_wad)
        assert (
            e.value.args_by_name["equityWad"],
            e.value.args_by_name["maintenanceMarginWad"],
        ) == (
            h.equity_wad,
            h.maintenance_margin_wad,
        )
        assert (preview[1], preview[2], preview[4], preview[5]) == (False, 0, 0, 0)
        assert preview[3] == 3_000 * E18
    else:
        assert tuple(preview[1:]) == (False, 0, 0, 0, 0, 0, 0)


def test_preview_liquidation__liquidatable__predicts_close_penalty_and_reward_exactly(
    underwater: Client, trader: str, keeper: str
) -> None:
    system = underwater
    p = system.preview(trader, "ETH-PERP")
    h = system.health(trader)
    assert (p.status_name, p.full, p.price_e18) == ("LIQUIDATABLE", False, 2_660 * E18)
    assert (p.equity_wad, p.maintenance_margin_wad) == (h.equity_wad, h.maintenance_margin_wad)
    ev = event(system, system.liquidate(keeper, trader, "ETH-PERP"), "Liquidate")
    assert (-ev["sizeDelta"], ev["penaltyWad"], ev["keeperRewardWad"], ev["priceE18"]) == (
        p.close_size,
        p.penalty_wad,
        p.keeper_reward_wad,
        p.price_e18,
    )


# ---------------------------------------------------------------------------- A07 state machine
@dataclass
class Book:
    """Everything the invariants need, read in one JSON-RPC batch."""

    states: dict[str, AccountState]
    masks: dict[str, tuple[int, int]]
    on_chain_health: dict[str, Health]
    open_interest: dict[int, int]
    total_deposited: dict[int, int]
    held: dict[int, int]
    prices: dict[int, int]
    deficit: int


class Machine:
    """A seeded random walk of deposits, withdrawals, trades, price moves and liquidations. Every
    action's outcome is predicted exactly with the integer mirror before it is sent."""

    def __init__(
        self, system: Client, traders: list[str], keeper: str, fund_account: str, seed: int
    ) -> None:
        self.s = system
        self.rng = random.Random(seed)
        self.traders = traders
        self.keeper = keeper
        self.accounts = [*traders, keeper, fund_account]
        coll = read_many(system.chain, [view(system.ch, "collateral", i) for i in range(3)])
        mkts = read_many(system.chain, [view(system.ch, "market", i) for i in range(3)])
        self.collaterals = {
            i: CollateralParams(c[1], c[2], c[3]) for i, c in enumerate(coll) if i > 0
        }
        self.decimals = {i: c[3] for i, c in enumerate(coll)}
        self.markets = {i: MarketParams(m[0], m[1], m[2]) for i, m in enumerate(mkts)}
        self.max_size = {i: m[6] for i, m in enumerate(mkts)}
        ch = system.ch
        views: list[View] = []
        for a in self.accounts:
            views += [view(ch, "account", a), view(ch, "accountHealth", a)]
            views += [view(ch, "collateralBalance", a, c) for c in (WETH, WBTC)]
            views += [view(ch, "position", a, m) for m in (ETH, BTC, SOL)]
        views += [view(ch, "market", m) for m in (ETH, BTC, SOL)]
        views += [view(ch, "collateral", c) for c in (USDC, WETH, WBTC)]
        views += [
            view(system.tokens[sym], "balanceOf", ch.address) for sym in ("USDC", "WETH", "WBTC")
        ]
        views += [view(system.router, "priceE18", a) for a in (ETH, BTC, SOL)]
        views.append(view(ch, "deficitWad"))
        self.book_views = views
        self.rounding_ops = 0  # trades and liquidations: each may leave one wei of dust (I4)
        self.needs_im: list[str] = []
        self.resolved: list[str] = []
        self.after_liquidation: tuple[str, int, int, int, int] | None = None
        self.outcomes: dict[str, int] = {}
        self.deficit_seen = 0

    # -------------------------------------------------------------- reading and checking
    def read(self) -> Book:
        v = read_many(self.s.chain, self.book_views)
        states, masks, healths = {}, {}, {}
        for i, a in enumerate(self.accounts):
            acct, h, weth, wbtc, *pos = v[i * 7 : i * 7 + 7]
            states[a] = AccountState(acct[0], {WETH: weth, WBTC: wbtc}, dict(enumerate(pos)))
            masks[a] = (acct[2], acct[3])
            healths[a] = Health(*h)
        k = len(self.accounts) * 7
        return Book(
            states=states,
            masks=masks,
            on_chain_health=healths,
            open_interest={m: v[k + m][8] for m in range(3)},
            total_deposited={c: v[k + 3 + c][6] for c in range(3)},
            held={c: v[k + 6 + c] for c in range(3)},
            prices={a: v[k + 9 + a] for a in range(3)},
            deficit=v[k + 12],
        )

    def health(self, state: AccountState, book: Book) -> Health:
        h = health(state, self.collaterals, self.markets, book.prices)
        return Health(h.equity_wad, h.initial_margin_wad, h.maintenance_margin_wad)

    def check_invariants(self, book: Book) -> None:
        for m in (ETH, BTC, SOL):
            sizes = [book.states[a].positions[m] for a in self.accounts]
            assert sum(sizes) == 0, f"I1 market {m}"
            assert book.open_interest[m] == sum(max(s, 0) for s in sizes), f"I2 market {m}"
        for c in (WETH, WBTC):
            total = sum(book.states[a].balances[c] for a in self.accounts)
            assert total == book.total_deposited[c] <= book.held[c], f"I3 collateral {c}"
        cash = sum(book.states[a].cash_wad for a in self.accounts)
        backing = book.total_deposited[USDC] * 10 ** (18 - self.decimals[USDC])
        assert backing - self.rounding_ops <= cash <= backing, "I4"
        assert book.total_deposited[USDC] <= book.held[USDC], "I3 quote"
        assert book.deficit >= self.deficit_seen, "I11: a booked deficit never disappears"
        self.deficit_seen = book.deficit
        for a in self.accounts:  # the mirror equals the contract all along the walk
            assert self.health(book.states[a], book) == book.on_chain_health[a], a

    # -------------------------------------------------------------- actions
    def expect(self, fn: Any, sender: str, expected: tuple[str, dict[str, Any]] | None) -> bool:
        """Sends `fn`; asserts it reverts exactly as `expected` says, or succeeds if None."""
        if expected is None:
            ok = try_send(self.s.chain, fn, sender)
            if not ok:  # decode why, for the failure message: the state has not moved
                self.s.chain.call(fn, "replay the failed transaction")
            assert ok, f"{fn} was predicted to succeed"
            self.outcomes["ok"] = self.outcomes.get("ok", 0) + 1
            return True
        with pytest.raises(ContractRevert) as e:
            self.s.chain.send(fn, sender, "predicted revert")
        name, args = expected
        assert e.value.name == name, f"expected {name}, got {e.value}"
        for key, value in args.items():
            got = e.value.args_by_name[key]
            assert (got.lower() if isinstance(got, str) else got) == value, (name, key, got, value)
        self.outcomes[name] = self.outcomes.get(name, 0) + 1
        return False

    def deposit(self, book: Book) -> None:
        who = self.rng.choice(self.traders)
        symbol = self.rng.choice(["USDC", "USDC", "WETH", "WBTC"])
        amount = self.rng.randint(1, 20_000 * 10 ** self.decimals[self.s.d.collateral(symbol).id])
        if symbol == "WETH":
            amount //= 3_000
        if symbol == "WBTC":
            amount //= 60_000
        fund(self.s, who, symbol, max(amount, 1))

    def withdraw(self, book: Book) -> None:
        who = self.rng.choice(self.traders)
        state = book.states[who]
        held = [c for c in (WETH, WBTC) if state.balances[c]]
        asset = self.rng.choice(
            [USDC, USDC, WETH, WBTC] if self.rng.random() < 0.2 else [USDC, *held]
        )
        scale = 10 ** (18 - self.decimals[asset])
        base = max(state.cash_wad, 0) // scale if asset == USDC else state.balances[asset]
        amount = max(1, base * self.rng.randint(1, 13_000) // BPS)
        market_mask, collateral_mask = book.masks[who]
        expected: tuple[str, dict[str, Any]] | None = None
        balances = dict(state.balances)
        cash_after = state.cash_wad
        if asset == USDC:
            cash_after -= amount * scale
            if cash_after < 0 and market_mask == 0 and collateral_mask == 0:
                expected = (
                    "InsufficientBalance",
                    {"assetId": USDC, "balance": base, "amount": amount},
                )
        elif balances[asset] < amount:
            expected = (
                "InsufficientBalance",
                {"assetId": asset, "balance": balances[asset], "amount": amount},
            )
        else:
            balances[asset] -= amount
        if expected is None and (market_mask != 0 or cash_after < 0):
            after = self.health(AccountState(cash_after, balances, state.positions), book)
            if after.equity_wad < after.initial_margin_wad:  # I5 / A15
                expected = (
                    "InsufficientMargin",
                    {
                        "account": who.lower(),
                        "equityWad": after.equity_wad,
                        "initialMarginWad": after.initial_margin_wad,
                    },
                )
        if expected is None and amount > book.total_deposited[asset]:
            expected = ("CollateralShortfall", {"assetId": asset})
        if self.expect(self.s.fn("withdraw", asset, amount, who), who, expected) and (
            market_mask or cash_after < 0
        ):
            self.needs_im.append(who)  # I5, checked on the next read

    def trade(self, book: Book) -> None:
        taker, maker = self.rng.sample(self.traders, 2)
        if self.rng.random() < 0.7:  # the roomiest other trader makes the market
            surplus = {
                w: book.on_chain_health[w].equity_wad - book.on_chain_health[w].initial_margin_wad
                for w in self.traders
            }
            maker = max((w for w in self.traders if w != taker), key=surplus.__getitem__)
        market_id = self.rng.choice([ETH, BTC, SOL])
        oracle = book.prices[self.markets[market_id].oracle_asset]
        held = book.states[taker].positions[market_id]
        mode = self.rng.random()
        if held and mode < 0.35:
            delta = -held * self.rng.randint(1, BPS) // BPS or -held
        elif mode < 0.7:  # leverage up to around the IM limit, on either side of it
            h = book.on_chain_health[taker]
            room = max(h.equity_wad - h.initial_margin_wad, 0) * BPS // IM_BPS
            notional = room * self.rng.randint(5_000, 10_300) // BPS + E18
            delta = self.rng.choice([-1, 1]) * (
                notional * E18 // oracle + self.rng.randint(0, 10**12)
            )
        else:
            notional = int(10 ** self.rng.uniform(1.7, 5.3)) * E18
            delta = self.rng.choice([-1, 1]) * (
                notional * E18 // oracle + self.rng.randint(0, 10**12)
            )
        band = oracle * BAND_BPS // BPS
        if self.rng.random() < 0.08:
            price = oracle + self.rng.choice([-1, 1]) * (band + self.rng.randint(1, band))
        else:
            price = oracle + band * self.rng.randint(-BPS, BPS) // BPS
        expected = self._predict_trade(book, market_id, taker, maker, delta, price, oracle)
        fn = self.s.fn("settleTrade", market_id, taker, maker, delta, price)
        if self.expect(fn, self.s.d.matcher, expected):
            self.rounding_ops += 1
            for who, d in ((taker, delta), (maker, -delta)):
                if not _reduces(book.states[who].positions[market_id], d):
                    self.needs_im.append(who)  # I5: a side that added exposure meets IM

    def _predict_trade(
        self,
        book: Book,
        market_id: int,
        taker: str,
        maker: str,
        delta: int,
        price: int,
        oracle: int,
    ) -> tuple[str, dict[str, Any]] | None:
        sides = ((taker, delta), (maker, -delta))
        for who, d in sides:
            before = book.states[who].positions[market_id]
            if not _reduces(before, d) and abs(before + d) > self.max_size[market_id]:
                return ("PositionTooLarge", {"marketId": market_id, "size": abs(before + d)})
        band = oracle * BAND_BPS // BPS
        if price + band < oracle or price > oracle + band:
            return (
                "PriceOutsideBand",
                {"marketId": market_id, "tradePriceE18": price, "oraclePriceE18": oracle},
            )
        im_bps = self.markets[market_id].im_bps
        for who, d in sides:
            state = book.states[who]
            before = state.positions[market_id]
            after_size = before + d
            cash_change = trade_cash_change_wad(d, price)
            if _reduces(before, d):
                if price == oracle:
                    continue
                im_released = ceil_div(abs(before) * oracle * im_bps, E18 * BPS) - ceil_div(
                    abs(after_size) * oracle * im_bps, E18 * BPS
                )
                change = (
                    cash_change
                    + (after_size * oracle) // E18
                    - (before * oracle) // E18
                    + im_released
                )
                if change < 0:
                    return (
                        "ReduceWorsensMargin",
                        {"account": who.lower(), "surplusChangeWad": change},
                    )
                continue
            positions = {**state.positions, market_id: after_size}
            h = self.health(
                AccountState(state.cash_wad + cash_change, state.balances, positions), book
            )
            if h.equity_wad < h.initial_margin_wad:
                return (
                    "InsufficientMargin",
                    {
                        "account": who.lower(),
                        "equityWad": h.equity_wad,
                        "initialMarginWad": h.initial_margin_wad,
                    },
                )
        return None

    def move_price(self, book: Book) -> None:
        asset = self.rng.choice([ETH, BTC, SOL])
        answer = book.prices[asset] // 10**10
        set_price(self.s, asset, answer * self.rng.randint(8_500, 11_500) // BPS)

    def liquidate(self, book: Book) -> None:
        with_positions = [w for w in self.traders if any(book.states[w].positions.values())]
        if not with_positions:
            return
        underwater = [w for w in with_positions if book.on_chain_health[w].liquidatable]
        who = self.rng.choice(underwater or with_positions)
        h = book.on_chain_health[who]
        market_id = self.rng.choice([m for m, s in book.states[who].positions.items() if s])
        fn = self.s.fn("liquidate", who, market_id, MAX_UINT)
        if not underwater:  # I7
            expected = (
                "AccountHealthy",
                {"equityWad": h.equity_wad, "maintenanceMarginWad": h.maintenance_margin_wad},
            )
            self.expect(fn, self.keeper, expected)
            return
        preview = self.s.preview(who, market_id)
        size = book.states[who].positions[market_id]
        self.expect(fn, self.keeper, None)
        self.rounding_ops += 1
        self.outcomes["liquidated"] = self.outcomes.get("liquidated", 0) + 1
        self.after_liquidation = (who, market_id, size, preview.close_size, shortfall(h))

    def resolve(self, book: Book) -> None:
        """resolveInsolvency on a random trader: refused unless flat and under water (I11)."""
        who = self.rng.choice(self.traders)
        market_mask = book.masks[who][0]
        h = book.on_chain_health[who]
        expected: tuple[str, dict[str, Any]] | None = None
        if market_mask:
            expected = ("HasOpenPositions", {"account": who.lower(), "marketMask": market_mask})
        elif h.equity_wad >= 0:
            expected = ("NotInsolvent", {"account": who.lower(), "equityWad": h.equity_wad})
        if self.expect(self.s.fn("resolveInsolvency", who), self.keeper, expected):
            self.resolved.append(who)

    def step(self) -> None:
        book = self.read()
        self.check_invariants(book)
        for who in self.needs_im:
            h = book.on_chain_health[who]
            assert h.equity_wad >= h.initial_margin_wad, (
                f"I5: {who} below IM after a risk-increasing action"
            )
        self.needs_im = []
        for who in self.resolved:  # I11: flat, zeroed, collateral gone to the fund
            assert (book.states[who].cash_wad, book.masks[who]) == (0, (0, 0))
        self.resolved = []
        if self.after_liquidation is not None:
            who, market_id, size, close, shortfall_before = self.after_liquidation
            remaining = book.states[who].positions[market_id]
            assert abs(size) - abs(remaining) == close
            assert shortfall(book.on_chain_health[who]) <= shortfall_before  # I8
            self.after_liquidation = None
        action = self.rng.choices(
            [
                self.deposit,
                self.withdraw,
                self.trade,
                self.move_price,
                self.liquidate,
                self.resolve,
            ],
            weights=[10, 16, 40, 17, 14, 3],
        )[0]
        action(book)


def _reduces(size_before: int, delta: int) -> bool:
    return size_before != 0 and (size_before > 0) != (delta > 0) and abs(delta) <= abs(size_before)


def test_state_machine__random_actions__refuse_every_step_below_im_and_keep_i1_to_i4(
    system: Client, others: list[str], keeper: str, roles
) -> None:
    # A07 (Euler 2023): every path that lowers equity or adds exposure is tried at random; each
    # outcome, including the exact revert and its values, is predicted by the integer mirror.
    traders = others[:5]
    rng = random.Random(7)
    for who in traders:
        fund(system, who, "USDC", usdc(rng.randint(3_000, 30_000)) + rng.randint(0, 999_999))
    fund(system, traders[0], "WETH", 3 * E18 + 12_345)
    fund(system, traders[1], "WBTC", 12_345_679)
    # Funding off: this walk predicts every outcome from positions and prices alone; funding has
    # its own walk of trades, time and parameter changes (test_funding, I26).
    for market in (ETH, BTC, SOL):
        send_fast(system.chain, system.fn("configureFunding", market, 0, 3_600), roles.owner)
    machine = Machine(system, traders, keeper, roles.insurance_fund, seed=20260522)
    for _ in range(110):
        machine.step()
    machine.check_invariants(machine.read())
    # The walk went through the interesting outcomes, not only the happy path.
    assert machine.outcomes.get("ok", 0) >= 30
    assert machine.outcomes.get("InsufficientMargin", 0) >= 5
    assert machine.outcomes.get("liquidated", 0) >= 3
