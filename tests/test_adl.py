"""Auto-deleveraging, the last resort (SPEC I32, issue 10 item 3): when the insurance fund's
equity no longer covers its maintenance margin, its position closes against ranked opposite
positions at the oracle price; ranking, conservation, and exits kept open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from helpers import assert_revert, fund, fund_absorbs, send_fast, usdc

from offchain.chain.client import Client, wad
from offchain.errors import ContractRevert

E18 = 10**18
ETH, BTC = 0, 1


def adl_contract(system: Client) -> Any:
    assert system.d.auto_deleverage is not None
    return system.chain.contract("AutoDeleverage", system.d.auto_deleverage)


def set_price(system: Client, symbol: str, usd: int) -> None:
    send_fast(system.chain, system.feeds[symbol].functions.setAnswer(usd * 10**8), system.d.owner)


def trade(system: Client, market: int, taker: str, maker: str, size: int) -> None:
    symbol = "ETH" if market == ETH else "BTC"
    price = system.price_e18(symbol)
    send_fast(
        system.chain, system.fn("settleTrade", market, taker, maker, size, price), system.d.matcher
    )


@dataclass(frozen=True)
class Book:
    rich: str  # short 200 ETH on 200k: the highest equity / MM after the fall
    poor: str  # short 300 ETH on 100k
    long: str  # the shorts' counterparty
    thin: str  # short 100 ETH and long 5 BTC: above MM, below IM once BTC falls
    late: str  # long 10 ETH on 3k, left unliquidated: liquidated after the ADL


def fund_under_water(
    system: Client, trader: str, maker: str, keeper: str, others: list[str], eth_usd: int = 2_400
) -> Book:
    """1000 ETH long from 3000 on 400k, liquidated in full at 2660 into the fund; ETH then
    `eth_usd` and BTC 44,000: at 2400 the fund's equity is -101k against an MM of 156k."""
    book = Book(*others[:5])
    fund(system, trader, "USDC", usdc(400_000))
    fund(system, maker, "USDC", usdc(20_000_000))
    for who, amount in ((book.rich, 200_000), (book.poor, 100_000), (book.long, 5_000_000)):
        fund(system, who, "USDC", usdc(amount))
    fund(system, book.thin, "USDC", usdc(61_000))
    fund(system, book.late, "USDC", usdc(3_000))
    trade(system, ETH, trader, maker, wad(1_000))
    trade(system, ETH, book.rich, book.long, -wad(200))
    trade(system, ETH, book.poor, book.long, -wad(300))
    trade(system, ETH, book.thin, book.long, -wad(100))
    trade(system, BTC, book.thin, maker, wad(5))
    trade(system, ETH, book.late, maker, wad(10))
    set_price(system, "ETH", 2_660)
    system.liquidate(keeper, trader, "ETH-PERP")
    set_price(system, "ETH", eth_usd)
    set_price(system, "BTC", 44_000)
    return book


def test_adl__fund_under_water__closes_ranked_shorts_at_the_oracle_price_and_books_balance(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I32, I1: the fund's 1000 ETH long closes against the rich short (200) then the poor one
    # (300), at 2400 exactly; every size nets to zero and no equity moves (both sides trade at
    # the oracle price, which their equity already marks).
    book = fund_under_water(system, trader, maker, keeper, others)
    fund_account = system.d.insurance_fund
    fund_health = system.health(fund_account)
    assert fund_health.equity_wad < fund_health.maintenance_margin_wad
    parties = (fund_account, book.rich, book.poor)
    equity_before = [system.health(a).equity_wad for a in parties]

    receipt = system.chain.send(
        adl_contract(system).functions.adl(ETH, [book.rich, book.poor]), keeper, "adl"
    )

    events = [e.args for e in system.events(receipt) if e.name == "AutoDeleveraged"]
    price = 2_400 * E18
    assert events == [
        {
            "marketId": ETH,
            "account": book.rich,
            "sizeDelta": wad(200),
            "priceE18": price,
            "fundSizeAfter": wad(800),
        },
        {
            "marketId": ETH,
            "account": book.poor,
            "sizeDelta": wad(300),
            "priceE18": price,
            "fundSizeAfter": wad(500),
        },
    ]
    assert system.position(book.rich, "ETH-PERP") == 0
    assert system.position(book.poor, "ETH-PERP") == 0
    assert system.position(fund_account, "ETH-PERP") == wad(500)
    assert [system.health(a).equity_wad for a in parties] == equity_before


def test_adl__fund_covers_its_margin_again__stops_before_the_rest_of_the_list(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I32: with ETH at 2600 the fund's equity is 99k against an MM of 169k. Closing the rich
    # short's 200 leaves MM 135.2k, the poor one's 300 then 84.5k < 99k: ADL stops there, and
    # the third account (below IM, which would revert if reached) is never touched.
    book = fund_under_water(system, trader, maker, keeper, others, eth_usd=2_600)
    thin_size = system.position(book.thin, "ETH-PERP")

    receipt = system.chain.send(
        adl_contract(system).functions.adl(ETH, [book.rich, book.poor, book.thin]), keeper, "adl"
    )

    events = [e.args for e in system.events(receipt) if e.name == "AutoDeleveraged"]
    assert [e["account"] for e in events] == [book.rich, book.poor]
    assert system.position(book.thin, "ETH-PERP") == thin_size
    fund_health = system.health(system.d.insurance_fund)
    assert fund_health.equity_wad >= fund_health.maintenance_margin_wad


def test_adl__accounts_out_of_rank__reverts_ranking_broken(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I32: the poor short (equity / MM 5.98) may not go before the rich one (10.26).
    book = fund_under_water(system, trader, maker, keeper, others)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            adl_contract(system).functions.adl(ETH, [book.poor, book.rich]), keeper, "adl"
        )
    assert_revert(e.value, "RankingBroken", account=book.rich, previous=book.poor)


def test_adl__an_account_on_the_funds_side__reverts_not_opposite(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    book = fund_under_water(system, trader, maker, keeper, others)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(adl_contract(system).functions.adl(ETH, [book.long]), keeper, "adl")
    assert_revert(e.value, "NotOpposite", account=book.long, marketId=ETH, size=wad(600))


def test_adl__an_account_below_initial_margin__reverts_below_initial_margin(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I32: a short above MM but below IM (its BTC long fell) is not deleveraged.
    book = fund_under_water(system, trader, maker, keeper, others)
    h = system.health(book.thin)
    assert h.maintenance_margin_wad <= h.equity_wad < h.initial_margin_wad
    with pytest.raises(ContractRevert) as e:
        system.chain.send(adl_contract(system).functions.adl(ETH, [book.thin]), keeper, "adl")
    assert_revert(
        e.value,
        "BelowInitialMargin",
        account=book.thin,
        equityWad=h.equity_wad,
        initialMarginWad=h.initial_margin_wad,
    )


def test_adl__fund_covers_its_margin__reverts_fund_covered(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I32: ADL is a last resort: a fund whose equity covers its MM is left to the backstop.
    fund_absorbs(system, trader, maker, keeper, True)
    h = system.health(system.d.insurance_fund)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(adl_contract(system).functions.adl(ETH, [maker]), keeper, "adl")
    assert_revert(
        e.value,
        "FundCovered",
        fundEquityWad=h.equity_wad,
        fundMaintenanceMarginWad=h.maintenance_margin_wad,
    )


def test_adl__fund_holds_nothing__reverts_nothing_to_deleverage(
    system: Client, keeper: str, maker: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(adl_contract(system).functions.adl(ETH, [maker]), keeper, "adl")
    assert_revert(e.value, "NothingToDeleverage", marketId=ETH)


def test_adl__before_and_after__exits_deposits_and_liquidations_keep_working(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I32: ADL pauses nothing: a deleveraged account withdraws, anyone deposits, and an account
    # left under water is liquidated, right after it.
    book = fund_under_water(system, trader, maker, keeper, others)
    system.chain.send(adl_contract(system).functions.adl(ETH, [book.rich]), keeper, "adl")

    system.withdraw(book.rich, "USDC", 100_000)
    fund(system, book.poor, "USDC", usdc(1_000))
    assert system.preview(book.late, "ETH-PERP").status_name == "LIQUIDATABLE"
    system.liquidate(keeper, book.late, "ETH-PERP")
    assert system.position(book.late, "ETH-PERP") == 0
