"""Feeds that misbehave (THREATS F01-F04; SPEC I14, I18, I19, I20).

BTC's feed is replaced by a `HostileFeed` that can fail in every way a feed can. The trader is
long ETH (under water) and long BTC, with WBTC collateral: under each fault every view documented
as total answers, the ETH market is still liquidated (I18), the BTC market is refused with the
router's reason, and the views equal the Python mirror to the wei.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import assert_revert, fund, rpc, send_fast, usdc
from web3.contract import Contract

from offchain.chain.client import Client, wad
from offchain.errors import ContractRevert
from offchain.risk.health import (
    AccountState,
    CollateralParams,
    MarketParams,
    broken_feed_quote,
    health,
)

E18 = 10**18
ETH, BTC, SOL = 0, 1, 2
HEARTBEAT, DRIFT = 3_600, 200
MIN_E18, MAX_E18 = 10**12, 10**27
BTC_E8 = 60_000 * 10**8
# IOracleRouter.PriceStatus
OK, NO_FEED, CALL_FAILED, NON_POSITIVE, STALE, FUTURE, OUT_OF_BOUNDS = range(7)
BAD_REPLY, BAD_DECIMALS, ROUND_BACKWARDS = 7, 8, 9
# HostileFeed.Mode
NORMAL, REVERT, INVALID, EMPTY, SHORT, FLOOD, WIDE_ROUND_ID, BURN_GAS = range(8)


def now(system: Client) -> int:
    return int(system.chain.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def hostile(system: Client) -> Contract:
    """BTC (asset 1) priced by a HostileFeed at $60,000, 8 decimals, round id 1."""
    feed = system.chain.deploy("HostileFeed", 8, BTC_E8, sender=system.d.owner)
    fn = system.router.functions.setFeed(BTC, feed.address, HEARTBEAT, DRIFT, MIN_E18, MAX_E18)
    send_fast(system.chain, fn, system.d.owner)
    return feed


@pytest.fixture
def exposed(system: Client, hostile: Contract, trader: str, maker: str) -> Client:
    """The trader: 3,500 USDC and 0.01 WBTC; long 10 ETH and 0.1 BTC; ETH then falls 10%."""
    fund(system, trader, "USDC", usdc(3_500))
    fund(system, trader, "WBTC", 10**6)
    fund(system, maker, "USDC", usdc(10_000_000))
    system.trade("ETH-PERP", trader, maker, wad(10), 3_000 * E18)
    system.trade("BTC-PERP", trader, maker, wad("0.1"), 60_000 * E18)
    system.set_price("ETH", 2_700)
    return system


def _stale(system: Client, feed: Contract) -> None:
    """Time passes beyond BTC's heartbeat; every other feed publishes again."""
    updated_at = feed.functions.updatedAt().call()
    rpc(system, "evm_increaseTime", updated_at + HEARTBEAT + 1 - now(system))
    rpc(system, "evm_mine")
    for symbol in ("ETH", "SOL"):
        answer = system.feeds[symbol].functions.getRoundData(0).call()[1]
        send_fast(system.chain, system.feeds[symbol].functions.setAnswer(answer), system.d.owner)


def _round(system: Client, feed: Contract, round_id: int, answer: int, updated_at: int) -> None:
    send_fast(system.chain, feed.functions.setRound(round_id, answer, updated_at), system.d.owner)


def _modes(system: Client, feed: Contract, decimals_mode: int, round_mode: int) -> None:
    send_fast(system.chain, feed.functions.setModes(decimals_mode, round_mode), system.d.owner)


# fault: (how to cause it, the status it must read as)
FAULTS: dict[str, tuple[Callable[[Client, Contract], None], int]] = {
    "reverting": (lambda s, f: _modes(s, f, NORMAL, REVERT), CALL_FAILED),
    "INVALID opcode": (lambda s, f: _modes(s, f, NORMAL, INVALID), CALL_FAILED),
    "burns all its gas": (lambda s, f: _modes(s, f, NORMAL, BURN_GAS), CALL_FAILED),
    "empty reply": (lambda s, f: _modes(s, f, NORMAL, EMPTY), BAD_REPLY),
    "short reply": (lambda s, f: _modes(s, f, NORMAL, SHORT), BAD_REPLY),
    "round id wider than 80 bits": (lambda s, f: _modes(s, f, NORMAL, WIDE_ROUND_ID), BAD_REPLY),
    "64 KB reply of zeros": (lambda s, f: _modes(s, f, NORMAL, FLOOD), NON_POSITIVE),
    "no code": (lambda s, f: rpc(s, "anvil_setCode", f.address, "0x"), BAD_REPLY),
    "decimals() reverts": (lambda s, f: _modes(s, f, REVERT, NORMAL), CALL_FAILED),
    "decimals() empty": (lambda s, f: _modes(s, f, EMPTY, NORMAL), BAD_REPLY),
    "decimals changed to 19": (
        lambda s, f: send_fast(s.chain, f.functions.setDecimals(19), s.d.owner),
        BAD_DECIMALS,
    ),
    "decimals changed to 2, answer not": (  # read as $60B: the bounds catch it
        lambda s, f: send_fast(s.chain, f.functions.setDecimals(2), s.d.owner),
        OUT_OF_BOUNDS,
    ),
    "zero": (lambda s, f: _round(s, f, 9, 0, now(s)), NON_POSITIVE),
    "negative": (lambda s, f: _round(s, f, 9, -BTC_E8, now(s)), NON_POSITIVE),
    "stale": (_stale, STALE),
    "future": (lambda s, f: _round(s, f, 9, BTC_E8, now(s) + 600), FUTURE),
    "lower round id": (lambda s, f: _round(s, f, 0, BTC_E8, now(s)), ROUND_BACKWARDS),
    "older updatedAt": (lambda s, f: _round(s, f, 9, BTC_E8, now(s) - 3_000), ROUND_BACKWARDS),
    "out of bounds": (lambda s, f: _round(s, f, 9, 2 * 10**17, now(s)), OUT_OF_BOUNDS),
}


def mirror_health(system: Client, trader: str) -> tuple[int, int, int]:
    """The trader's health by `offchain.risk.health`, quoting BTC as the router does (I18)."""
    router, ch = system.router.functions, system.ch.functions
    prices: dict[int, int] = {}
    highs: dict[int, int] = {}
    for asset in (ETH, BTC):
        price, status = router.tryPriceE18(asset).call()
        if status == OK:
            prices[asset] = price
            continue
        _, _, drift, lo, hi = router.feedConfig(asset).call()
        last_price, _, last_at = router.lastRound(asset).call()
        base = (last_price, last_at)
        if status == STALE:  # a merely stale round is its own base
            _, answer, _, updated_at, _ = (
                system.chain.contract("HostileFeed", router.feedConfig(asset).call()[0])
                .functions.latestRoundData()
                .call()
            )
            base = (answer * 10**10, updated_at)
        prices[asset], highs[asset] = broken_feed_quote(*base, now(system), drift, lo, hi)
    markets = {m: MarketParams(*ch.market(m).call()[:3]) for m in (ETH, BTC)}
    wbtc = ch.collateral(2).call()
    state = AccountState(
        ch.account(trader).call()[0],
        {2: ch.collateralBalance(trader, 2).call()},
        {m: ch.position(trader, m).call() for m in (ETH, BTC)},
    )
    h = health(state, {2: CollateralParams(wbtc[1], wbtc[2], wbtc[3])}, markets, prices, highs)
    return h.equity_wad, h.initial_margin_wad, h.maintenance_margin_wad


@pytest.mark.parametrize("fault", FAULTS)
def test_broken_feed__every_fault__views_total_and_the_other_market_still_liquidates(
    exposed: Client, hostile: Contract, trader: str, keeper: str, fault: str
) -> None:
    """# F01, F02, F04 / I20: no reply makes a total view revert; each fault has its status.
    # F03 / I18: the ETH market is liquidated while BTC is broken; BTC itself is refused."""
    system = exposed
    cause, status = FAULTS[fault]
    cause(system, hostile)
    router, ch = system.router.functions, system.ch.functions
    # Router views: never revert.
    assert router.tryPriceE18(BTC).call()[1] == status
    up, quotes = router.quotes(0b111).call()
    assert up is True
    assert [q[0] for q in quotes] == [OK, status, OK]
    _, low, high = quotes[1]
    assert MIN_E18 <= low <= high <= MAX_E18
    assert router.sequencerOk().call() is True
    assert router.feedConfig(BTC).call()[0] == hostile.address
    assert router.lastRound(BTC).call()[0] == 60_000 * E18
    # Clearinghouse views: never revert, and equal the mirror to the wei.
    assert tuple(ch.accountHealth(trader).call()) == mirror_health(system, trader)
    assert ch.isLiquidatable(trader).call() is True
    assert system.preview(trader, "BTC-PERP").status_name == "PRICE_UNAVAILABLE"
    preview = system.preview(trader, "ETH-PERP")
    assert preview.status_name == "LIQUIDATABLE"
    # The BTC market needs its own price: refused with the router's reason.
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, trader, "BTC-PERP")
    assert e.value.name not in ("AccountHealthy", "Panic", "UnknownError")
    # The ETH market is liquidated as previewed (I18).
    system.liquidate(keeper, trader, "ETH-PERP")
    assert system.position(trader, "ETH-PERP") == wad(10) - preview.close_size


def test_sequencer_feed__every_fault__sequencer_ok_is_false_and_never_reverts(
    exposed: Client, trader: str, keeper: str
) -> None:
    """# I20 / C07: a sequencer feed that fails in any way counts as down, in views and actions."""
    system = exposed
    sequencer = system.chain.deploy("HostileFeed", 0, 0, sender=system.d.owner)
    _round(system, sequencer, 1, 0, now(system) - HEARTBEAT)  # up for an hour
    fn = system.router.functions.setSequencerFeed(sequencer.address, 60)
    send_fast(system.chain, fn, system.d.owner)
    assert system.router.functions.sequencerOk().call() is True
    for mode in (REVERT, INVALID, EMPTY, SHORT, WIDE_ROUND_ID, BURN_GAS):
        _modes(system, sequencer, NORMAL, mode)
        assert system.router.functions.sequencerOk().call() is False
        assert system.preview(trader, "ETH-PERP").status_name == "SEQUENCER_DOWN"
        with pytest.raises(ContractRevert) as e:
            system.liquidate(keeper, trader, "ETH-PERP")
        assert_revert(e.value, "SequencerDown", statusChangedAt=0)


# ---------------------------------------------------------------------------- F02 decimals
def test_decimals_change_behind_a_proxy__read_at_the_new_scale_never_the_old(
    system: Client, hostile: Contract
) -> None:
    """# F02 / I14: decimals are read with every price. A proxy moving from 8 to 6 decimals with
    its answer (60,000e6) still reads $60,000, not $600 as a cached 8 would."""
    send_fast(system.chain, hostile.functions.setDecimals(6), system.d.owner)
    _round(system, hostile, 2, 60_000 * 10**6, now(system))
    assert system.router.functions.priceE18(BTC).call() == 60_000 * E18
    send_fast(system.chain, hostile.functions.setDecimals(19), system.d.owner)
    with pytest.raises(ContractRevert) as e:
        system.chain.call(system.router.functions.priceE18(BTC), "price")
    assert_revert(e.value, "UnsupportedFeedDecimals", feed=hostile.address, decimals=19)


# ---------------------------------------------------------------------------- F04 rounds
def test_round_going_backwards__not_fresh_and_never_recorded(
    system: Client, hostile: Contract, trader: str
) -> None:
    """# F04 / I19: once round 5 at t is accepted by a state-changing read, round 4 (or round 6
    stamped before t) is ROUND_BACKWARDS with the values that broke it and is not recorded; a
    newer round prices again. A view sees a new round but cannot record it."""
    router = system.router.functions
    listed = tuple(router.lastRound(BTC).call())
    assert listed[:2] == (60_000 * E18, 1)
    t = now(system)
    _round(system, hostile, 5, 61_000 * 10**8, t)
    assert router.priceE18(BTC).call() == 61_000 * E18
    assert tuple(router.lastRound(BTC).call()) == listed
    send_fast(system.chain, router.readQuotes(1 << BTC, 0), trader)  # permissionless
    assert tuple(router.lastRound(BTC).call()) == (61_000 * E18, 5, t)
    for round_id, updated_at in ((4, t), (6, t - 1)):
        _round(system, hostile, round_id, 62_000 * 10**8, updated_at)
        with pytest.raises(ContractRevert) as e:
            system.chain.call(router.priceE18(BTC), "price")
        assert_revert(
            e.value,
            "RoundWentBackwards",
            asset=BTC,
            roundId=round_id,
            updatedAt=updated_at,
            lastRoundId=5,
            lastUpdatedAt=t,
        )
        send_fast(system.chain, router.readQuotes(1 << BTC, 0), trader)
        assert tuple(router.lastRound(BTC).call()) == (61_000 * E18, 5, t)
    _round(system, hostile, 6, 62_000 * 10**8, t)
    assert router.priceE18(BTC).call() == 62_000 * E18


def test_set_feed__relisting__resets_the_last_accepted_round_to_the_new_feed(
    system: Client, hostile: Contract, trader: str
) -> None:
    """# I19: a new feed's round ids mean nothing against the old one's."""
    router = system.router.functions
    _round(system, hostile, 10**6, 61_000 * 10**8, now(system))
    send_fast(system.chain, router.readQuotes(1 << BTC, 0), trader)
    fresh = system.chain.deploy("HostileFeed", 8, 59_000 * 10**8, sender=system.d.owner)
    fn = router.setFeed(BTC, fresh.address, HEARTBEAT, DRIFT, MIN_E18, MAX_E18)
    send_fast(system.chain, fn, system.d.owner)
    assert tuple(router.lastRound(BTC).call())[:2] == (59_000 * E18, 1)
    assert router.priceE18(BTC).call() == 59_000 * E18


# ---------------------------------------------------------------------------- I18 quotes
def test_broken_feed_quote__widens_with_the_outage_and_stays_in_the_bounds(
    system: Client, hostile: Contract
) -> None:
    """# I18: the quote moves apart by the drift per hour of age, exactly as the mirror says,
    down to the floor and up to the cap; with no good round ever seen it is the bounds."""
    router = system.router.functions
    cap = 10**24  # $1M: within reach of the drift
    send_fast(
        system.chain,
        router.setFeed(BTC, hostile.address, HEARTBEAT, DRIFT, MIN_E18, cap),
        system.d.owner,
    )
    _modes(system, hostile, NORMAL, REVERT)
    price, _, at = router.lastRound(BTC).call()
    widths = []
    for hours in (0, 1, 24, 49, 10_000):
        rpc(system, "evm_mine", at + hours * 3_600)
        [(status, low, high)] = router.quotes(1 << BTC).call()[1]
        assert status == CALL_FAILED
        assert (low, high) == broken_feed_quote(price, at, now(system), DRIFT, MIN_E18, cap)
        widths.append(high - low)
    assert widths == sorted(widths)
    assert widths[0] < widths[1]
    assert (low, high) == (MIN_E18, cap)  # 10,000 hours: both clamped
    never = system.chain.deploy(
        "HostileFeed", 8, 0, sender=system.d.owner
    )  # answer 0: no good round
    send_fast(
        system.chain,
        router.setFeed(5, never.address, HEARTBEAT, DRIFT, MIN_E18, MAX_E18),
        system.d.owner,
    )
    assert tuple(router.lastRound(5).call()) == (0, 0, 0)
    assert router.quotes(1 << 5).call()[1] == [(NON_POSITIVE, MIN_E18, MAX_E18)]


def test_broken_feed_quote__simulated_before_its_last_round__answers_instead_of_reverting(
    system: Client, hostile: Contract
) -> None:
    """# I18 / I20: a node may simulate an `eth_call` at an older time than the last round the
    router recorded (its own clock, a block override); the broken feed's quote then counts the
    round as just published (no drift) rather than underflowing its age."""
    _modes(system, hostile, NORMAL, REVERT)
    price, _, at = system.router.functions.lastRound(BTC).call()
    quotes = system.router.functions.quotes(1 << BTC)
    call = {"to": system.router.address, "data": quotes._encode_transaction_data()}
    earlier = {"time": hex(at - 600)}
    reply = rpc(system, "eth_call", call, "latest", {}, earlier)
    assert "error" not in reply, reply
    [(status, low, high)] = quotes.call(block_identifier="latest")[1]
    rpc(system, "evm_mine", at)  # the same quote at the round's own time: no drift either
    assert reply["result"] == rpc(system, "eth_call", call, "latest")["result"]
    assert status == CALL_FAILED
    assert low <= price <= high


# ---------------------------------------------------------------------------- C06 starvation
def test_feed_call__failing_without_its_full_gas__reverts_feed_call_starved(
    system: Client, hostile: Contract
) -> None:
    """# I20 / C06: a feed that burns its gas is CALL_FAILED when it had its full FEED_CALL_GAS,
    but with less the failure may be starvation, so the whole call reverts instead."""
    _modes(system, hostile, NORMAL, BURN_GAS)
    quotes = system.router.functions.quotes(1 << BTC)
    assert quotes.call()[1][0][0] == CALL_FAILED
    reply = rpc(
        system,
        "eth_call",
        {
            "to": system.router.address,
            "data": quotes._encode_transaction_data(),
            "gas": hex(90_000),
        },
        "latest",
    )
    name, args = system.chain.artifacts.decode_error(bytes.fromhex(reply["error"]["data"][2:]))
    assert name == "FeedCallStarved"
    assert args["feed"].lower() == hostile.address.lower()
    assert args["gasAvailable"] < system.router.functions.FEED_CALL_GAS().call() * 64 // 63


# ---------------------------------------------------------------------------- F03 liveness
def test_fund_holding_collateral_of_a_broken_feed__an_unrelated_insolvency_is_still_resolved(
    system: Client, hostile: Contract, trader: str, maker: str, keeper: str, roles: Any
) -> None:
    """# F03 / I11 / I18: the insurance fund holds WBTC and BTC's feed returns nothing; an ETH-only
    account goes insolvent: its liquidation resolves it in the same transaction, the fund's
    equity (WBTC at the low quote) covering the debt. The old router reverted on the empty reply."""
    fund(system, roles.insurance_fund, "WBTC", 10**8)
    fund(system, trader, "USDC", usdc(1_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    system.trade("ETH-PERP", trader, maker, wad(3), 3_000 * E18)
    system.set_price("ETH", 2_500)  # equity −500
    _modes(system, hostile, NORMAL, EMPTY)
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    [resolved] = [e.args for e in system.events(receipt) if e.name == "InsolvencyResolved"]
    assert resolved["debtWad"] > 0
    assert (resolved["coveredWad"], resolved["deficitWad"]) == (resolved["debtWad"], 0)
    assert system.account(trader)["cash_wad"] == 0


def test_broken_feed__its_market_waits_then_no_account_escapes_once_it_recovers(
    system: Client, hostile: Contract, trader: str, maker: str, keeper: str
) -> None:
    """# F03 / I18: a long BTC account whose feed breaks while BTC falls cannot be liquidated in
    BTC (no price to close at) nor withdraw (I14); once the feed is back at the lower price it
    is liquidatable and liquidated."""
    fund(system, trader, "USDC", usdc(1_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    system.trade("BTC-PERP", trader, maker, wad("0.1"), 60_000 * E18)
    _modes(system, hostile, NORMAL, REVERT)
    assert system.preview(trader, "BTC-PERP").status_name == "PRICE_UNAVAILABLE"
    with pytest.raises(ContractRevert) as e:
        system.withdraw(trader, "USDC", 1)
    assert_revert(e.value, "FeedCallFailed", asset=BTC, feed=hostile.address)
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, trader, "BTC-PERP")
    assert_revert(e.value, "FeedCallFailed", asset=BTC, feed=hostile.address)
    # Back at 52,800 (−12%): equity 1,000 − 720 = 280 < MM 343.2.
    _round(system, hostile, 2, 52_800 * 10**8, now(system))
    _modes(system, hostile, NORMAL, NORMAL)
    assert system.preview(trader, "BTC-PERP").status_name == "LIQUIDATABLE"
    system.liquidate(keeper, trader, "BTC-PERP")
    assert system.position(trader, "BTC-PERP") < wad("0.1")


def test_broken_feed__quote_widens__an_account_healthy_at_the_outage_becomes_liquidatable(
    system: Client, hostile: Contract, trader: str, maker: str, keeper: str
) -> None:
    """# F03 / I18: the longer BTC's feed is down, the less its long counts: an account healthy
    when the feed broke becomes liquidatable in ETH as the quote widens, and preview, health and
    liquidate agree."""
    fund(system, trader, "USDC", usdc(3_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    system.trade("ETH-PERP", trader, maker, wad(5), 3_000 * E18)
    system.trade("BTC-PERP", trader, maker, wad("0.2"), 60_000 * E18)
    system.set_price("ETH", 2_800)
    _modes(system, hostile, NORMAL, REVERT)
    assert system.preview(trader, "ETH-PERP").status_name == "HEALTHY"
    # Equity 2,000 against MM 1,690: each hour of drift takes 240 off the BTC long's value and
    # adds 15.6 to its MM, so the account crosses between the first and the second hour.
    hours = 0
    while system.preview(trader, "ETH-PERP").status_name == "HEALTHY":
        hours += 1
        rpc(system, "evm_increaseTime", 3_600)
        rpc(system, "evm_mine")
        for symbol in ("ETH", "SOL"):  # the other feeds keep publishing
            answer = system.feeds[symbol].functions.getRoundData(0).call()[1]
            send_fast(
                system.chain, system.feeds[symbol].functions.setAnswer(answer), system.d.owner
            )
    assert hours == 2
    assert system.health(trader).liquidatable
    system.liquidate(keeper, trader, "ETH-PERP")
    assert system.position(trader, "ETH-PERP") < wad(5)


@pytest.mark.parametrize("fault", ["reverting", "empty reply", "stale"])
def test_the_keeper__an_account_with_a_broken_feed__is_liquidated_in_its_other_markets(
    system: Client, hostile: Contract, trader: str, maker: str, fault: str
) -> None:
    """# F03 / I18, from the product keeper: BTC's feed breaks, ETH falls; the keeper values the
    account at the router's quotes as the contract does, ranks it, and liquidates its ETH
    market, leaving the BTC market (no price to close at) to wait. Without the quotes it would
    skip the account altogether."""
    from test_keeper_hardening import make_keeper

    fund(system, trader, "USDC", usdc(4_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    system.trade("ETH-PERP", trader, maker, wad(10), 3_000 * E18)
    system.trade("BTC-PERP", trader, maker, wad("0.05"), 60_000 * E18)
    if fault == "stale":
        rpc(system, "evm_increaseTime", HEARTBEAT + 1)
        rpc(system, "evm_mine")
        for symbol in ("ETH", "SOL"):  # the other feeds keep publishing
            answer = system.feeds[symbol].functions.getRoundData(0).call()[1]
            send_fast(
                system.chain, system.feeds[symbol].functions.setAnswer(answer), system.d.owner
            )
    else:
        FAULTS[fault][0](system, hostile)
    system.set_price("ETH", 2_750)  # equity 4,000 − 2,500 = 1,500 < MM 1,787.5 + BTC's
    keeper = make_keeper(system)
    done = keeper.step()
    assert [(d.account.lower(), d.market_id) for d in done] == [(trader.lower(), ETH)]
    assert system.position(trader, "ETH-PERP") < wad(10)
    assert system.position(trader, "BTC-PERP") == wad("0.05")
