"""Liquidation economics: who pays a keeper, and the fund's losses booked (SPEC I9, I24, I25,
I30; ARCHITECTURE S5, S6; issue 10 items 4 and 1).

A trader who also runs a keeper account must never do better by liquidating itself than by
closing the position at the oracle price: the penalty, and the keeper's share of it, come out of
the equity the account has, never out of negative cash the insurance fund later covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from helpers import assert_revert, fund, rollback, send_fast, try_send, usdc

from offchain.chain.client import MAX_UINT, Client, wad
from offchain.errors import ContractRevert

E18 = 10**18
ETH = 0
ENTRY_USD = 3_000


@dataclass(frozen=True)
class Gap:
    """The account's equity, after the move, as a fraction of its notional (negative: a gap
    through zero). Maintenance margin is 6.5%, full liquidation below half of it."""

    name: str
    equity_bps: int


GAPS = (
    Gap("through_zero", -200),
    Gap("a_hair_above_zero", 10),
    Gap("below_the_keeper_share", 50),
    Gap("below_the_penalty", 200),
    Gap("deep_but_covering", 300),
    Gap("partial_close", 500),
)
LEVERAGES = (4, 9)


def usd_answer(price_e18: int) -> int:
    """An 8-decimal feed answer, rounded down."""
    return price_e18 // 10**10


def gap_price_e18(size: int, deposit_wad: int, equity_bps: int) -> int:
    """The price at which a long of `size` bought at ENTRY_USD with `deposit_wad` has equity
    `equity_bps` of its notional: deposit + size·(P − entry) = f·size·P."""
    entry_notional = size * ENTRY_USD
    return (entry_notional - deposit_wad) * E18 * 10_000 // (size * (10_000 - equity_bps))


def value(system: Client, who: str) -> int:
    """What an account is worth to its owner: its equity at oracle prices, but never below zero
    (an owner walks away from a negative account)."""
    return max(system.health(who).equity_wad, 0)


def liquidate_in_chunks(
    system: Client, keeper: str, trader: str, chunks: int, one_block: bool = False
) -> None:
    """The keeper closes what each liquidation allows, in `chunks` calls of ⌈allowed / chunks⌉
    (the last closing the rest), each in its own block or all in one, and keeps liquidating
    while the account stays liquidatable."""
    while True:
        preview = system.preview(trader, "ETH-PERP")
        if preview.status_name != "LIQUIDATABLE":
            return
        piece = -(-preview.close_size // chunks)
        if one_block:
            in_one_block(system, keeper, trader, [piece] * (chunks - 1) + [MAX_UINT])
            continue
        for _ in range(chunks - 1):
            if system.preview(trader, "ETH-PERP").status_name != "LIQUIDATABLE":
                return
            if not _try_liquidate(system, keeper, trader, piece):
                break
        if system.preview(trader, "ETH-PERP").status_name == "LIQUIDATABLE":
            system.liquidate(keeper, trader, "ETH-PERP", MAX_UINT)


def _try_liquidate(system: Client, keeper: str, trader: str, max_close: int) -> bool:
    """A chunk the dust rule refuses (`LiquidationLeavesDust`) is skipped, as a keeper would."""
    return try_send(system.chain, system.fn("liquidate", trader, ETH, max_close), keeper)


def in_one_block(system: Client, keeper: str, trader: str, max_closes: list[int]) -> list[Any]:
    """One liquidation per `max_closes` entry, all mined in one block; the `Liquidate` events of
    those that went through (a chunk may fail: dust, or the account healthy again)."""
    request = system.chain.w3.provider.make_request
    request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        hashes = []
        for max_close in max_closes:
            fn = system.fn("liquidate", trader, ETH, max_close)
            tx = {"from": keeper, "to": fn.address, "data": fn._encode_transaction_data()}
            sent = request("eth_sendTransaction", [{**tx, "gas": hex(1_000_000)}])  # type: ignore[arg-type]
            assert "error" not in sent, sent
            hashes.append(sent["result"])
        request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        request("evm_setAutomine", [True])  # type: ignore[arg-type]
    receipts = [system.chain.w3.eth.get_transaction_receipt(h) for h in hashes]
    assert len({r["blockNumber"] for r in receipts}) == 1
    return [
        e.args
        for r in receipts
        if r["status"] == 1
        for e in system.events(r)
        if e.name == "Liquidate"
    ]


@pytest.mark.parametrize(
    ("chunks", "one_block"), [(1, False), (4, False), (4, True)], ids=["whole", "blocks", "block"]
)
@pytest.mark.parametrize("size_eth", [1, 20, 400])
def test_self_liquidation__sizes_leverage_gaps_and_chunks__never_beats_closing_oneself(
    system: Client,
    trader: str,
    maker: str,
    keeper: str,
    roles,
    size_eth: int,
    chunks: int,
    one_block: bool,
) -> None:
    # I24, S5: a sybil keeper liquidating its own trader account gains nothing over the trader
    # closing at the oracle price (trader value + keeper cash, before vs after), and the
    # insurance fund never pays the keeper: it loses at most the hole the account already had.
    fund(system, maker, "USDC", usdc(100_000_000))
    size = wad(size_eth)
    gains, fund_overdraws = [], []
    for leverage in LEVERAGES:
        deposit_wad = size * ENTRY_USD // leverage
        for gap in GAPS:
            with rollback(system.chain):
                fund(system, trader, "USDC", deposit_wad // 10**12)
                price = system.price_e18("ETH")
                send_fast(
                    system.chain,
                    system.fn("settleTrade", ETH, trader, maker, size, price),
                    system.d.matcher,
                )
                target = usd_answer(gap_price_e18(size, deposit_wad, gap.equity_bps))
                send_fast(
                    system.chain,
                    system.feeds["ETH"].functions.setAnswer(target),
                    system.d.owner,
                )
                assert system.preview(trader, "ETH-PERP").status_name == "LIQUIDATABLE"
                equity_before = system.health(trader).equity_wad
                trader_before, keeper_cash_before = value(system, trader), _cash(system, keeper)
                fund_before = system.health(roles.insurance_fund).equity_wad

                liquidate_in_chunks(system, keeper, trader, chunks, one_block)

                reward = _cash(system, keeper) - keeper_cash_before
                where = "in one block" if one_block else "across blocks"
                case = f"{size_eth} ETH, {leverage}x, {gap.name}, {chunks} chunk(s) {where}"
                gains.append((value(system, trader) + reward - trader_before, case))
                fund_change = system.health(roles.insurance_fund).equity_wad - fund_before
                # The fund may lose the hole the account already had, never more.
                fund_overdraws.append((min(equity_before, 0) - fund_change, case))
    best, best_case = max(gains)
    print(f"\nsybil grid best case: {best / E18:+,.2f} USD ({best_case})")
    assert best <= 0, f"best case {best_case}: self-liquidation gains {best / E18:.2f} USD"
    worst, worst_case = max(fund_overdraws)
    assert worst <= 0, f"{worst_case}: the fund paid {worst / E18:.2f} USD beyond the hole"


def _cash(system: Client, who: str) -> int:
    return system.account(who)["cash_wad"]


def test_liquidate__two_full_steps_in_one_block__each_rewarded(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    # I30: closing what it may is no chunk. 400 ETH long from 3000 on 124.8k USDC, ETH at 2800:
    # equity 44.8k, 4% of notional, between half of MM and MM: a 50% step (200 ETH, penalty
    # 16.8k) leaves equity 28k under MM 36.4k, so a second step (100 ETH) follows in the same
    # block, and both are paid the cap: an honest keeper still drains an account in one block.
    fund(system, trader, "USDC", usdc(124_800))
    fund(system, maker, "USDC", usdc(10_000_000))
    send_fast(
        system.chain,
        system.fn("settleTrade", ETH, trader, maker, wad(400), system.price_e18("ETH")),
        system.d.matcher,
    )
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_800 * 10**8), system.d.owner)
    cap = system.ch.functions.liquidationConfig().call()[5]

    events = in_one_block(system, keeper, trader, [MAX_UINT, MAX_UINT])

    assert [(abs(e["sizeDelta"]), e["keeperRewardWad"]) for e in events] == [
        (wad(200), cap),
        (wad(100), cap),
    ]


def test_liquidate__a_close_chunked_in_one_block__pays_one_reward_and_the_rest_to_the_fund(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    # I30: 400 ETH long from 3000 on 150k USDC, ETH at 2700: equity 30k < half of MM 70.2k, so
    # all of it may close, and the 30% share of its 32.4k penalty is capped at 1,000. Four calls
    # of 50 ETH in one block (penalty 4,050 each) would each earn the cap without the rule; the
    # first alone is paid, the others pay their whole penalty to the insurance fund. The next
    # block pays again (equity 13.8k is still below MM 35.1k).
    fund(system, trader, "USDC", usdc(150_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    send_fast(
        system.chain,
        system.fn("settleTrade", ETH, trader, maker, wad(400), system.price_e18("ETH")),
        system.d.matcher,
    )
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_700 * 10**8), system.d.owner)
    whole = system.preview(trader, "ETH-PERP")
    cap = system.ch.functions.liquidationConfig().call()[5]
    assert (whole.close_size, whole.keeper_reward_wad) == (wad(400), cap)
    fund_cash_before = _cash(system, roles.insurance_fund)

    events = in_one_block(system, keeper, trader, [wad(50)] * 4)

    assert [e["keeperRewardWad"] for e in events] == [cap, 0, 0, 0]
    penalties = sum(e["penaltyWad"] for e in events)
    assert _cash(system, keeper) == cap
    closed_cash = sum(abs(e["sizeDelta"]) * e["priceE18"] // E18 for e in events)
    assert _cash(system, roles.insurance_fund) - fund_cash_before == penalties - cap - closed_cash
    assert system.preview(trader, "ETH-PERP").keeper_reward_wad == 0  # still this block's tag

    system.chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert system.preview(trader, "ETH-PERP").keeper_reward_wad > 0
    receipt = system.liquidate(keeper, trader, "ETH-PERP")
    assert (
        next(e for e in system.events(receipt) if e.name == "Liquidate").args["keeperRewardWad"] > 0
    )


def test_liquidate__equity_below_the_penalty__takes_only_the_equity_and_books_no_debt(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    # I24, I9: 3 ETH from 3000 on 1000 USDC, ETH at 2700: equity 100 < half of MM 526.50, so
    # all closes. The rate's penalty is 243 (3% of 8100); only the 100 the account has is taken,
    # the keeper gets 30% of that, and no negative cash is left for the fund to cover.
    fund(system, trader, "USDC", usdc(1_000))
    fund(system, maker, "USDC", usdc(100_000))
    send_fast(
        system.chain,
        system.fn("settleTrade", ETH, trader, maker, wad(3), system.price_e18("ETH")),
        system.d.matcher,
    )
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_700 * 10**8), system.d.owner)
    fund_before = system.health(roles.insurance_fund).equity_wad
    preview = system.preview(trader, "ETH-PERP")
    assert (preview.penalty_wad, preview.keeper_reward_wad) == (100 * E18, 30 * E18)

    receipt = system.liquidate(keeper, trader, "ETH-PERP")

    names = [e.name for e in system.events(receipt)]
    assert "InsolvencyResolved" not in names
    liq = next(e.args for e in system.events(receipt) if e.name == "Liquidate")
    assert (liq["penaltyWad"], liq["keeperRewardWad"]) == (100 * E18, 30 * E18)
    assert system.account(trader)["cash_wad"] == 0
    assert _cash(system, keeper) == 30 * E18
    assert system.health(roles.insurance_fund).equity_wad - fund_before == 70 * E18


# ------------------------------------------------------------------------ the fund's books (I25)
def test_book_deficit__crash_after_the_fund_absorbed_longs__books_its_loss_so_assets_cover_claims(
    system: Client, trader: str, maker: str, keeper: str, roles
) -> None:
    # I25, S6: 1000 ETH long from 3000 on 400k USDC, ETH at 2660: equity 60k < half of MM, so
    # all 1000 ETH move to the fund at 2660 and the fund keeps 59k of the penalty (the keeper
    # 1k). ETH then crashes to 2400: the fund's equity is 100k + 59k − 260k = −101k, and no
    # insolvency ever ran, so nothing booked it.
    fund_account = roles.insurance_fund
    fund(system, trader, "USDC", usdc(400_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    send_fast(
        system.chain,
        system.fn("settleTrade", ETH, trader, maker, wad(1_000), system.price_e18("ETH")),
        system.d.matcher,
    )
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_660 * 10**8), system.d.owner)
    system.liquidate(keeper, trader, "ETH-PERP")
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_400 * 10**8), system.d.owner)
    loss = 101_000 * E18
    assert tuple(system.ch.functions.backstopDeficit().call()) == (-loss, loss)
    assert system.ch.functions.deficitWad().call() == 0

    def held_minus_claims_plus_deficit() -> int:
        """What I25 says is never negative: quote held (no other collateral here, I4) less every
        other account's claim (its equity, if positive), plus the booked deficit."""
        held = system.tokens["USDC"].functions.balanceOf(system.ch.address).call() * 10**12
        claims = sum(max(system.health(a).equity_wad, 0) for a in (trader, maker, keeper))
        return held - claims + system.ch.functions.deficitWad().call()

    assert held_minus_claims_plus_deficit() == -loss  # hidden: claims backed by nothing

    receipt = system.chain.send(system.fn("bookDeficit"), keeper, "book deficit")

    booked = next(e.args for e in system.events(receipt) if e.name == "DeficitBooked")
    assert booked == {"addedWad": loss, "deficitWad": loss, "fundEquityWad": -loss}
    assert system.ch.functions.deficitWad().call() == loss
    assert held_minus_claims_plus_deficit() == 0
    assert system.health(fund_account).equity_wad == -loss


def test_book_deficit__nothing_unbooked__reverts_no_unbooked_deficit(
    system: Client, keeper: str, roles
) -> None:
    # I25: a fund with non-negative equity has nothing to book.
    equity = system.health(roles.insurance_fund).equity_wad
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("bookDeficit"), keeper, "book deficit")
    assert_revert(e.value, "NoUnbookedDeficit", fundEquityWad=equity, deficitWad=0)
