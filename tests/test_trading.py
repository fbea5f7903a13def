"""settleTrade: sizes, cash, nonces and open interest, and every way a trade is refused.

SPEC I1, I2, I5, I6, I12, I13, I16; THREATS A16; ARCHITECTURE S4. Expected values are computed
here from the accounting model (cash moves by −⌈d·P/1e18⌉ per side), never read back from the
contract and compared with themselves.
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest
from helpers import (
    fund,
    read_many,
    rollback,
    send_fast,
    usdc,
    view,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from offchain.chain import Chain
from offchain.chain.client import Client, Health, wad
from offchain.errors import ContractRevert
from offchain.risk.health import ceil_div, trade_cash_change_wad

E18 = 10**18
BPS = 10_000
ETH_E18 = 3_000 * E18
ETH, BTC, SOL = 0, 1, 2
BAND_BPS, IM_BPS = 200, 1_000
ZERO = "0x0000000000000000000000000000000000000000"
STALE_AFTER_S = 3_601  # the default feeds' heartbeat is 3600 s
# Every example runs transactions on Anvil: shrinking a failure would take minutes, so a failing
# example is reported as generated (still reproducible: derandomized).
CHAIN_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


# ---------------------------------------------------------------------------- helpers


def settle(
    system: Client,
    market_id: int,
    taker: str,
    maker: str,
    delta: int,
    price: int,
    sender: str | None = None,
):
    """settleTrade by raw market id (the client only knows the deployed markets)."""
    fn = system.fn("settleTrade", market_id, taker, maker, delta, price)
    return system.chain.send(fn, sender or system.d.matcher, f"settle trade on market {market_id}")


def as_owner(system: Client, name: str, *args: Any):
    return system.chain.send(system.fn(name, *args), system.d.owner, name)


def trade_event(system: Client, receipt) -> dict[str, Any]:
    events = [e for e in system.events(receipt) if e.name == "TradeSettled"]
    assert len(events) == 1
    return events[0].args


def surplus(system: Client, account: str) -> int:
    h = system.health(account)
    return h.equity_wad - h.initial_margin_wad


def open_interest(system: Client, market_id: int) -> int:
    return int(system.ch.functions.market(market_id).call()[8])


def set_feed_answer(system: Client, symbol: str, answer: int) -> None:
    send_fast(system.chain, system.feeds[symbol].functions.setAnswer(answer), system.d.owner)


def stale_oracle(chain: Chain) -> None:
    chain.w3.provider.make_request("evm_increaseTime", [STALE_AFTER_S])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def band_of(price_e18: int) -> int:
    return price_e18 * BAND_BPS // BPS


def im_of(size: int, price_e18: int) -> int:
    return ceil_div(abs(size) * price_e18 * IM_BPS, E18 * BPS)


@pytest.fixture
def funded(system: Client, trader: str, maker: str) -> Client:
    """`trader` with 50k USDC and a deep-pocketed `maker`."""
    fund(system, trader, "USDC", usdc(50_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    return system


# ---------------------------------------------------------------------------- happy paths
def test_settle_trade__odd_size_inside_band__moves_sizes_cash_and_nonces_exactly(
    funded: Client, trader: str, maker: str
) -> None:
    system = funded
    delta = 1_234_567_890_123_456_789
    price = 3_012_345_678_901_234_567_891  # above the oracle, inside the 60 USD band
    assert (delta * price) % E18 != 0  # the rounding direction is observable
    before_t, before_m = system.account(trader), system.account(maker)

    receipt = system.trade("ETH-PERP", trader, maker, delta, price)

    after_t, after_m = system.account(trader), system.account(maker)
    # The payer rounds up, the receiver rounds down: −⌈d·P⌉ and +⌊d·P⌋.
    assert after_t["cash_wad"] - before_t["cash_wad"] == -ceil_div(delta * price, E18)
    assert after_m["cash_wad"] - before_m["cash_wad"] == (delta * price) // E18
    assert (after_t["cash_wad"] - before_t["cash_wad"]) + (
        after_m["cash_wad"] - before_m["cash_wad"]
    ) == -1
    ev = trade_event(system, receipt)
    assert ev["marketId"] == ETH
    assert (ev["taker"], ev["maker"]) == (trader, maker)
    assert (ev["takerSizeDelta"], ev["priceE18"]) == (delta, price)
    assert (ev["takerSizeAfter"], ev["makerSizeAfter"]) == (delta, -delta)
    # I12: one position change, one nonce step, on each side; the event carries the new nonces.
    assert ev["takerNonce"] == before_t["nonce"] + 1 == after_t["nonce"]
    assert ev["makerNonce"] == before_m["nonce"] + 1 == after_m["nonce"]
    assert (system.position(trader, ETH), system.position(maker, ETH)) == (delta, -delta)
    assert after_t["market_mask"] == after_m["market_mask"] == 1 << ETH
    assert open_interest(system, ETH) == delta  # I2


def test_settle_trade__every_position_change__bumps_nonces_by_one_and_cash_by_the_notional(
    funded: Client, trader: str, maker: str
) -> None:
    system = funded  # I12
    eth = system.price_e18("ETH")
    steps = [wad("2.5") + 7, wad("1.25") - 3, -wad("3") + 1, -wad("4.5"), wad("3.75") - 5]
    prices = [eth, eth + 13, eth - 17, eth + band_of(eth), eth - band_of(eth)]
    size_t = 0
    for delta, price in zip(steps, prices, strict=True):
        before_t, before_m = system.account(trader), system.account(maker)
        ev = trade_event(system, system.trade("ETH-PERP", trader, maker, delta, price))
        size_t += delta
        after_t, after_m = system.account(trader), system.account(maker)
        assert after_t["nonce"] == before_t["nonce"] + 1 == ev["takerNonce"]
        assert after_m["nonce"] == before_m["nonce"] + 1 == ev["makerNonce"]
        assert after_t["cash_wad"] - before_t["cash_wad"] == trade_cash_change_wad(delta, price)
        assert after_m["cash_wad"] - before_m["cash_wad"] == trade_cash_change_wad(-delta, price)
        assert ev["takerSizeAfter"] == size_t == system.position(trader, ETH)
        assert ev["makerSizeAfter"] == -size_t == system.position(maker, ETH)
    assert size_t == 0
    assert system.account(trader)["nonce"] == len(steps)


def test_settle_trade__long_flips_to_short__sizes_cash_and_open_interest_follow(
    funded: Client, trader: str, maker: str
) -> None:
    system = funded
    system.trade("ETH-PERP", trader, maker, wad(5), ETH_E18)
    assert open_interest(system, ETH) == wad(5)
    cash_t, cash_m = system.account(trader)["cash_wad"], system.account(maker)["cash_wad"]

    ev = trade_event(system, system.trade("ETH-PERP", trader, maker, -wad(8), ETH_E18 - 1))

    assert ev["takerSizeAfter"] == -wad(3) == system.position(trader, ETH)
    assert ev["makerSizeAfter"] == wad(3) == system.position(maker, ETH)
    assert system.account(trader)["cash_wad"] - cash_t == (wad(8) * (ETH_E18 - 1)) // E18
    assert system.account(maker)["cash_wad"] - cash_m == -ceil_div(wad(8) * (ETH_E18 - 1), E18)
    assert open_interest(system, ETH) == wad(3)  # I2: the maker is now the only long
    assert system.account(trader)["market_mask"] == 1 << ETH


def test_settle_trade__flip__is_risk_increasing_and_needs_initial_margin(
    system: Client, trader: str, maker: str
) -> None:
    fund(system, trader, "USDC", usdc(1_500))
    fund(system, maker, "USDC", usdc(1_000_000))
    system.trade("ETH-PERP", trader, maker, wad(5), ETH_E18)  # equity 1500 = IM 1500
    # I5: crossing zero opens new exposure; a short of 10 needs 3000 of IM.
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, -wad(15), ETH_E18)
    assert e.value.name == "InsufficientMargin"
    assert e.value.args_by_name["account"].lower() == trader.lower()
    assert e.value.args_by_name["equityWad"] == 1_500 * E18
    assert e.value.args_by_name["initialMarginWad"] == 3_000 * E18
    system.trade("ETH-PERP", trader, maker, -wad(5), ETH_E18)  # closing the same size is fine
    assert system.position(trader, ETH) == 0


def test_settle_trade__closing_to_zero__clears_the_market_bit_and_keeps_the_others(
    funded: Client, trader: str, maker: str
) -> None:
    system = funded
    sol = system.price_e18("SOL")
    system.trade("ETH-PERP", trader, maker, wad("2.5"), ETH_E18)
    system.trade("SOL-PERP", trader, maker, -wad(40), sol)
    assert system.account(trader)["market_mask"] == (1 << ETH) | (1 << SOL)

    ev = trade_event(system, system.trade("ETH-PERP", trader, maker, -wad("2.5"), ETH_E18 + 1))

    assert (ev["takerSizeAfter"], ev["makerSizeAfter"]) == (0, 0)
    assert system.account(trader)["market_mask"] == 1 << SOL
    assert system.account(maker)["market_mask"] == 1 << SOL
    assert open_interest(system, ETH) == 0
    assert open_interest(system, SOL) == wad(40)  # the maker's long


# ---------------------------------------------------------------------------- argument reverts
def test_settle_trade__caller_not_a_matcher__reverts_not_matcher(
    funded: Client, trader: str, maker: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        funded.trade("ETH-PERP", trader, maker, wad(1), ETH_E18, matcher=trader)
    assert e.value.name == "NotMatcher"
    assert e.value.args_by_name["caller"].lower() == trader.lower()


def test_settle_trade__taker_is_maker__reverts_self_trade(funded: Client, trader: str) -> None:
    with pytest.raises(ContractRevert) as e:
        funded.trade("ETH-PERP", trader, trader, wad(1), ETH_E18)
    assert e.value.name == "SelfTrade"
    assert e.value.args_by_name["account"].lower() == trader.lower()


@pytest.mark.parametrize("zero_side", ["taker", "maker"])
def test_settle_trade__zero_address_side__reverts_zero_address(
    funded: Client, trader: str, maker: str, zero_side: str
) -> None:
    taker, counterparty = (ZERO, maker) if zero_side == "taker" else (trader, ZERO)
    with pytest.raises(ContractRevert) as e:
        funded.trade("ETH-PERP", taker, counterparty, wad(1), ETH_E18)
    assert e.value.name == "ZeroAddress"


@pytest.mark.parametrize(("delta", "price"), [(0, ETH_E18), (wad(1), 0)], ids=["size_0", "price_0"])
def test_settle_trade__zero_size_or_zero_price__reverts_zero_amount(
    funded: Client, trader: str, maker: str, delta: int, price: int
) -> None:
    with pytest.raises(ContractRevert) as e:
        funded.trade("ETH-PERP", trader, maker, delta, price)
    assert e.value.name == "ZeroAmount"
    assert funded.account(trader)["nonce"] == 0


@pytest.mark.parametrize("market_id", [3, 31, 2**256 - 1])
def test_settle_trade__unlisted_market__reverts_unknown_market(
    funded: Client, trader: str, maker: str, market_id: int
) -> None:
    with pytest.raises(ContractRevert) as e:
        settle(funded, market_id, trader, maker, wad(1), ETH_E18)
    assert e.value.name == "UnknownMarket"
    assert e.value.args_by_name["marketId"] == market_id


# ---------------------------------------------------------------------------- price band
@pytest.mark.parametrize("side", [-1, 1], ids=["below", "above"])
def test_settle_trade__price_one_wei_outside_the_band__reverts_and_the_boundary_is_accepted(
    funded: Client, trader: str, maker: str, side: int
) -> None:
    system = funded
    band = band_of(ETH_E18)
    assert band == 60 * E18
    outside = ETH_E18 + side * (band + 1)
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, wad(1), outside)
    assert e.value.name == "PriceOutsideBand"
    assert e.value.args_by_name == {
        "marketId": ETH,
        "tradePriceE18": outside,
        "oraclePriceE18": ETH_E18,
        "priceBandBps": BAND_BPS,
    }
    boundary = ETH_E18 + side * band
    ev = trade_event(system, system.trade("ETH-PERP", trader, maker, wad(1), boundary))
    assert ev["priceE18"] == boundary


def test_settle_trade__reducing_trade_with_the_oracle_up__is_still_held_to_the_band(
    funded: Client, trader: str, maker: str
) -> None:
    system = funded
    system.trade("ETH-PERP", trader, maker, wad(4), ETH_E18)
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, -wad(4), ETH_E18 - band_of(ETH_E18) - 1)
    assert e.value.name == "PriceOutsideBand"
    assert system.position(trader, ETH) == wad(4)


# ---------------------------------------------------------------------------- caps (I16, A16)
def test_settle_trade__size_above_max_position__reverts_position_too_large_on_either_side(
    system: Client, trader: str, maker: str, others: list[str]
) -> None:
    max_size = 10_000 * E18
    fund(system, trader, "USDC", usdc(3_100_000))
    fund(system, maker, "USDC", usdc(3_100_000))
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, max_size + 1, ETH_E18)
    assert e.value.name == "PositionTooLarge"
    assert e.value.args_by_name == {
        "marketId": ETH,
        "size": max_size + 1,
        "maxPositionSize": max_size,
    }

    system.trade("ETH-PERP", trader, maker, max_size, ETH_E18)  # exactly the cap is allowed
    buyer = others[0]
    fund(system, buyer, "USDC", usdc(1_000))
    with pytest.raises(ContractRevert) as e:  # now the maker's short would exceed it
        system.trade("ETH-PERP", buyer, maker, 1, ETH_E18)
    assert e.value.name == "PositionTooLarge"
    assert e.value.args_by_name["size"] == max_size + 1
    system.trade("ETH-PERP", trader, maker, -wad(1), ETH_E18)  # reducing below the cap is fine


def test_settle_trade__thin_market_open_interest_cap__refuses_exposure_beyond_it(
    system: Client, trader: str, maker: str, others: list[str]
) -> None:
    # A16 (GMX 2022, JELLY 2025): a thin market gets small caps; nothing may grow past them.
    sol = system.price_e18("SOL")
    as_owner(system, "configureMarket", SOL, 1_000, 650, 300, 200, 100 * E18, 150 * E18)
    second, shorter = others[0], others[1]
    for who in (trader, second, shorter):
        fund(system, who, "USDC", usdc(100_000))
    fund(system, maker, "USDC", usdc(100_000))
    system.trade("SOL-PERP", trader, maker, 100 * E18, sol)
    with pytest.raises(ContractRevert) as e:
        system.trade("SOL-PERP", trader, maker, 1, sol)
    assert e.value.name == "PositionTooLarge"
    system.trade("SOL-PERP", second, shorter, 50 * E18, sol)  # open interest exactly at the cap
    assert open_interest(system, SOL) == 150 * E18

    with pytest.raises(ContractRevert) as e:
        system.trade("SOL-PERP", second, shorter, 1, sol)
    assert e.value.name == "OpenInterestCapExceeded"
    assert e.value.args_by_name == {
        "marketId": SOL,
        "openInterest": 150 * E18 + 1,
        "cap": 150 * E18,
    }

    # The owner tightens the cap below the open interest. A new long buying from a closing long
    # leaves it unchanged and a trade closing both sides lowers it: both settle ...
    as_owner(system, "configureMarket", SOL, 1_000, 650, 300, 200, 100 * E18, 120 * E18)
    third = others[2]
    fund(system, third, "USDC", usdc(100_000))
    system.trade("SOL-PERP", third, trader, 10 * E18, sol)
    assert open_interest(system, SOL) == 150 * E18
    system.trade("SOL-PERP", second, maker, -5 * E18, sol)
    assert open_interest(system, SOL) == 145 * E18
    # ... and what would raise it does not, even back to a level that was allowed before.
    with pytest.raises(ContractRevert) as e:
        system.trade("SOL-PERP", second, shorter, 5 * E18, sol)
    assert e.value.name == "OpenInterestCapExceeded"
    assert e.value.args_by_name == {"marketId": SOL, "openInterest": 150 * E18, "cap": 120 * E18}


def test_settle_trade__ninth_market__reverts_too_many_positions_for_taker_and_maker(
    system: Client, trader: str, maker: str, others: list[str]
) -> None:
    for _ in range(6):  # markets 3..8 on the ETH feed
        listing = system.fn("listMarket", ETH, 1_000, 650, 300, 200, 10_000 * E18, 1_000_000 * E18)
        send_fast(system.chain, listing, system.d.owner)
    fund(system, trader, "USDC", usdc(100_000))
    fund(system, maker, "USDC", usdc(100_000))
    prices = {0: ETH_E18, 1: system.price_e18("BTC"), 2: system.price_e18("SOL")}
    for market_id in range(8):
        opening = system.fn(
            "settleTrade", market_id, trader, maker, E18 // 100, prices.get(market_id, ETH_E18)
        )
        send_fast(system.chain, opening, system.d.matcher)
    assert bin(system.account(trader)["market_mask"]).count("1") == 8

    with pytest.raises(ContractRevert) as e:
        settle(system, 8, trader, maker, E18 // 100, ETH_E18)
    assert e.value.name == "TooManyPositions"
    assert e.value.args_by_name["account"].lower() == trader.lower()
    assert (e.value.args_by_name["count"], e.value.args_by_name["max"]) == (9, 8)

    fresh = others[0]
    fund(system, fresh, "USDC", usdc(10_000))
    with pytest.raises(ContractRevert) as e:  # the maker is full too
        settle(system, 8, fresh, maker, E18 // 100, ETH_E18)
    assert e.value.name == "TooManyPositions"
    assert e.value.args_by_name["account"].lower() == maker.lower()

    settle(system, 7, trader, maker, -(E18 // 100), ETH_E18)  # closing one frees a slot
    settle(system, 8, trader, maker, E18 // 100, ETH_E18)
    assert system.account(trader)["market_mask"] == 0b1_0111_1111


# ---------------------------------------------------------------------------- margin (I5)
def test_settle_trade__taker_short_of_initial_margin__reverts_and_exactly_enough_settles(
    system: Client, trader: str, maker: str
) -> None:
    fund(system, maker, "USDC", usdc(1_000_000))
    fund(system, trader, "USDC", 2_999_999_999)
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    assert e.value.name == "InsufficientMargin"
    assert e.value.args_by_name["account"].lower() == trader.lower()
    assert e.value.args_by_name["equityWad"] == 2_999_999_999 * 10**12
    assert e.value.args_by_name["initialMarginWad"] == 3_000 * E18

    fund(system, trader, "USDC", 1)  # equity == IM is enough
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    h = system.health(trader)
    assert h.equity_wad == h.initial_margin_wad == 3_000 * E18


def test_settle_trade__buying_above_the_oracle__counts_the_loss_against_initial_margin(
    system: Client, trader: str, maker: str
) -> None:
    fund(system, maker, "USDC", usdc(1_000_000))
    fund(system, trader, "USDC", usdc(3_500))
    price = ETH_E18 + band_of(ETH_E18)  # pays 600 over the oracle value for 10 ETH
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, wad(10), price)
    assert e.value.name == "InsufficientMargin"
    assert e.value.args_by_name["equityWad"] == 2_900 * E18
    assert e.value.args_by_name["initialMarginWad"] == 3_000 * E18


def test_settle_trade__maker_short_of_initial_margin__reverts_naming_the_maker(
    system: Client, trader: str, maker: str
) -> None:
    fund(system, trader, "USDC", usdc(1_000_000))
    fund(system, maker, "USDC", usdc(1_000))
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    assert e.value.name == "InsufficientMargin"
    assert e.value.args_by_name["account"].lower() == maker.lower()
    assert e.value.args_by_name["equityWad"] == 1_000 * E18
    assert e.value.args_by_name["initialMarginWad"] == 3_000 * E18
    assert system.position(trader, ETH) == 0


# ---------------------------------------------------------------- pause and oracle faults (S4, I13)
def test_settle_trade__while_paused__refuses_risk_and_lets_exits_through(
    funded: Client, roles, trader: str, maker: str, others: list[str]
) -> None:
    system = funded
    system.trade("ETH-PERP", trader, maker, wad(6), ETH_E18)
    system.chain.send(system.fn("pause"), roles.guardian, "pause")
    newcomer = others[0]
    system.deposit(newcomer, "USDC", 10_000, mint=True)  # deposits stay open while paused

    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", newcomer, maker, wad(1), ETH_E18)
    assert e.value.name == "Paused"
    with pytest.raises(ContractRevert) as e:  # a flip adds exposure too
        system.trade("ETH-PERP", trader, maker, -wad(7), ETH_E18)
    assert e.value.name == "Paused"
    with pytest.raises(ContractRevert) as e:  # one side reducing is not enough: the maker adds
        system.trade("ETH-PERP", trader, newcomer, -wad(1), ETH_E18)
    assert e.value.name == "Paused"

    system.trade("ETH-PERP", trader, maker, -wad(4), ETH_E18 - 5)  # both sides reduce
    assert system.position(trader, ETH) == wad(2)
    system.chain.send(system.fn("unpause"), system.d.owner, "unpause")
    system.trade("ETH-PERP", newcomer, maker, wad(1), ETH_E18)
    assert system.position(newcomer, ETH) == wad(1)


def _break_eth_feed(system: Client, fault: str) -> str:
    """Makes the ETH price unusable; returns the router error a risk-increasing trade meets."""
    if fault == "stale":
        stale_oracle(system.chain)
        return "StalePrice"
    if fault == "reverting":
        system.chain.send(
            system.feeds["ETH"].functions.setReverts(True), system.d.owner, "break feed"
        )
        return "FeedCallFailed"
    if fault == "out_of_bounds":
        set_feed_answer(system, "ETH", 2 * 10**9 * 10**8)  # 2e9 USD, above the 1e9 bound
        return "PriceOutOfBounds"
    set_feed_answer(system, "ETH", 0)
    return "NonPositivePrice"


@pytest.mark.parametrize("fault", ["stale", "reverting", "out_of_bounds", "non_positive"])
def test_settle_trade__oracle_unusable__reducing_trade_settles_and_opening_reverts(
    funded: Client, trader: str, maker: str, others: list[str], fault: str
) -> None:
    system = funded  # S4 / I13: exits stay open whatever the oracle does
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    newcomer = others[0]
    error = _break_eth_feed(system, fault)
    system.deposit(newcomer, "USDC", 10_000, mint=True)  # deposits need no price
    status = system.chain.call(system.router.functions.tryPriceE18(ETH), "try price")[1]
    assert status != 0  # the router reports the feed unusable

    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", newcomer, maker, wad(1), ETH_E18)
    assert e.value.name == error
    # With no usable oracle the venue's price is trusted for exits: no band, no margin read.
    far = 2_000 * E18
    cash_before = system.account(trader)["cash_wad"]
    ev = trade_event(system, system.trade("ETH-PERP", trader, maker, -wad(4), far))
    assert (ev["takerSizeAfter"], ev["makerSizeAfter"]) == (wad(6), -wad(6))
    assert system.account(trader)["cash_wad"] - cash_before == 4 * 2_000 * E18
    system.trade("ETH-PERP", trader, maker, -wad(6), far)
    assert system.account(trader)["market_mask"] == 0
    # With no positions and cash ≥ 0 the trader leaves without any price read.
    cash = system.balance(trader, "USDC")
    system.withdraw(trader, "USDC", str(Decimal(cash) / 10**6))
    assert system.account(trader)["cash_wad"] == 0


# ----------------------------------------------------------------------- I6: reducing never worsens
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=CHAIN_PHASES,
)
@given(
    market=st.sampled_from([("ETH-PERP", "ETH"), ("BTC-PERP", "BTC"), ("SOL-PERP", "SOL")]),
    long=st.booleans(),
    notional_usd=st.integers(min_value=10, max_value=400_000),
    size_noise=st.integers(min_value=0, max_value=10**18 - 1),
    move_bps=st.integers(min_value=-3_000, max_value=3_000),
    reduce_bps=st.integers(min_value=1, max_value=BPS),
    band_position=st.integers(min_value=-BPS, max_value=BPS),
)
def test_settle_trade__reducing_anywhere_inside_the_band__never_lowers_equity_minus_im(
    funded: Client,
    trader: str,
    maker: str,
    market: tuple[str, str],
    long: bool,
    notional_usd: int,
    size_noise: int,
    move_bps: int,
    reduce_bps: int,
    band_position: int,
) -> None:
    system = funded  # I6, for the taker and for the (also reducing) maker
    symbol, asset = market
    with rollback(system.chain):
        entry = system.price_e18(asset)
        size = (notional_usd * E18 * E18) // entry + size_noise
        size = size if long else -size
        send_fast(
            system.chain,
            system.fn("settleTrade", system.d.market(symbol).id, trader, maker, size, entry),
            system.d.matcher,
        )
        answer = system.chain.call(system.feeds[asset].functions.latestRoundData(), "round")[1]
        set_feed_answer(system, asset, answer * (BPS + move_bps) // BPS)
        oracle = system.price_e18(asset)
        price = oracle + band_of(oracle) * band_position // BPS
        reduce = max(1, abs(size) * reduce_bps // BPS)
        delta = -reduce if long else reduce
        health_calls = [
            view(system.ch, "accountHealth", trader),
            view(system.ch, "accountHealth", maker),
        ]
        before_t, before_m = (Health(*h) for h in read_many(system.chain, health_calls))

        system.trade(symbol, trader, maker, delta, price)

        after_t, after_m = (Health(*h) for h in read_many(system.chain, health_calls))
        for before, after in ((before_t, after_t), (before_m, after_m)):
            assert (
                after.equity_wad - after.initial_margin_wad
                >= before.equity_wad - before.initial_margin_wad
            )
        # And the change is exactly the accounting model's: cash at the trade price, the mark at
        # the oracle price, IM released.
        size_after = size + delta
        expected_equity = (
            before_t.equity_wad
            + trade_cash_change_wad(delta, price)
            + (size_after * oracle) // E18
            - (size * oracle) // E18
        )
        assert after_t.equity_wad == expected_equity
        assert after_t.initial_margin_wad == before_t.initial_margin_wad - im_of(
            size, oracle
        ) + im_of(size_after, oracle)


def test_settle_trade__reduce_that_rounding_makes_lose_a_wei__reverts_reduce_worsens_margin(
    system: Client, trader: str, maker: str
) -> None:
    # I6 is enforced to the wei. At 0.5 USD one wei of size is worth half a wei of USD: closing
    # one wei of an even-sized long at any price below 1 USD takes ⌊0.5⌋ = 0 in cash while the
    # mark drops by a whole wei and no IM is released, so even a better-than-oracle price loses a
    # wei of surplus. This is the only way to reach ReduceWorsensMargin: band < IM means a
    # reducing trade inside the band releases more IM than it can lose, except in rounding dust.
    set_feed_answer(system, "SOL", 50_000_000)  # 0.5 USD
    fund(system, trader, "USDC", usdc(1_000))
    fund(system, maker, "USDC", usdc(1_000))
    oracle = system.price_e18("SOL")
    assert oracle == E18 // 2
    system.trade("SOL-PERP", trader, maker, wad(1_000), oracle)
    with pytest.raises(ContractRevert) as e:
        system.trade("SOL-PERP", trader, maker, -1, oracle + 1)
    assert e.value.name == "ReduceWorsensMargin"
    assert e.value.args_by_name["account"].lower() == trader.lower()
    assert e.value.args_by_name["surplusChangeWad"] == -1
    assert system.position(trader, SOL) == wad(1_000)


def test_settle_trade__one_wei_reduce_at_exactly_the_oracle_price__never_lowers_equity_minus_im(
    system: Client, trader: str, maker: str
) -> None:
    # I6 holds at every price inside the band, the oracle price itself included: the same
    # one-wei reduce as above, settled exactly at the oracle price, must either revert with
    # ReduceWorsensMargin or leave equity − IM where it was.
    set_feed_answer(system, "SOL", 50_000_000)  # 0.5 USD
    fund(system, trader, "USDC", usdc(1_000))
    fund(system, maker, "USDC", usdc(1_000))
    oracle = system.price_e18("SOL")
    system.trade("SOL-PERP", trader, maker, wad(1_000), oracle)
    before = surplus(system, trader)
    try:
        system.trade("SOL-PERP", trader, maker, -1, oracle)
        refused = None
    except ContractRevert as exc:
        refused = exc.name
    assert refused in (None, "ReduceWorsensMargin")
    assert surplus(system, trader) >= before, "a reducing trade lowered equity − IM"


# ------------------------------------------------------------------------ I1, I2 over random trades
def test_open_interest__random_opens_flips_and_closes__equals_the_sum_of_longs(
    system: Client, others: list[str]
) -> None:
    # I1: sizes sum to zero per market; I2: openInterestLong = Σ max(size, 0).
    rng = random.Random(1207)
    accounts = others[:5]
    for who in accounts:
        fund(system, who, "USDC", usdc(2_000_000))
    prices = {
        m.id: system.price_e18(system.d.asset(m.oracle_asset).symbol) for m in system.d.markets
    }
    sizes = {(a, m): 0 for a in accounts for m in prices}
    for _ in range(30):
        taker, maker = rng.sample(accounts, 2)
        market_id = rng.choice(list(prices))
        if sizes[(taker, market_id)] and rng.random() < 0.3:
            delta = -sizes[(taker, market_id)]  # close exactly
        else:
            delta = rng.choice([-1, 1]) * rng.randint(1, 5_000 * E18 * E18 // prices[market_id])
        send_fast(
            system.chain,
            system.fn("settleTrade", market_id, taker, maker, delta, prices[market_id]),
            system.d.matcher,
        )
        sizes[(taker, market_id)] += delta
        sizes[(maker, market_id)] -= delta
        calls = [view(system.ch, "position", a, m) for m in prices for a in accounts]
        calls += [view(system.ch, "market", m) for m in prices]
        values = read_many(system.chain, calls)
        for i, m in enumerate(prices):
            on_chain = dict(
                zip(accounts, values[i * len(accounts) : (i + 1) * len(accounts)], strict=True)
            )
            assert on_chain == {a: sizes[(a, m)] for a in accounts}
            assert sum(on_chain.values()) == 0
            assert values[len(prices) * len(accounts) + i][8] == sum(
                max(s, 0) for s in on_chain.values()
            )
    assert any(s == 0 for s in sizes.values())
