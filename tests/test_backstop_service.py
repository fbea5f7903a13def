"""The shipped backstop (`offchain/backstop.py`, `marginsync backstop`): takes the fund's offer
with its own capital, unwinds it, and books what the fund lost (SPEC I25, I31; issue 10 item 2)."""

from __future__ import annotations

from pathlib import Path

from helpers import fund, fund_absorbs, send_fast, usdc

from offchain.backstop import Backstop, Call, matcher_hedge, rank_for_adl
from offchain.chain.client import Client, wad
from offchain.chain.journal import TxState
from offchain.ops.backstop import ChainWire, contracts_of, positions_from_events

E18 = 10**18
BPS = 10_000
TAKE = "take the fund's offer on market 0"


def make_backstop(
    system: Client, address: str, counterparty: str | None, journal: Path | str = ":memory:"
) -> Backstop:
    d = system.d
    wire = ChainWire(system.chain, contracts_of(d), address, journal)
    hedge = matcher_hedge(system.chain, d, address, counterparty) if counterparty else None
    return Backstop(
        system.chain, d, address, wire, hedge=hedge, accounts=positions_from_events(system.chain, d)
    )


def test_round__fund_holds_a_long__takes_it_all_unwinds_it_and_keeps_the_discount(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I31: the backstop takes the fund's 10 ETH at the oracle price less 1% and sells them to
    # the venue's counterparty at the oracle price: the fund is flat, so is the backstop, and the
    # backstop's cash grew by the discount, which is what the fund paid for unwinding.
    address = others[1]
    held = fund_absorbs(system, trader, maker, keeper, long=True)
    fund(system, address, "USDC", usdc(50_000))
    oracle = system.price_e18("ETH")
    cash_before = system.account(address)["cash_wad"]
    fund_equity = system.health(system.d.insurance_fund).equity_wad

    report = make_backstop(system, address, maker).round()

    assert [(t.market_id, t.size_delta_wad) for t in report.taken] == [(0, held)]
    assert (report.hedged, report.failed, report.booked_wad) == (1, 0, 0)
    assert system.position(system.d.insurance_fund, "ETH-PERP") == 0
    assert system.position(address, "ETH-PERP") == 0
    discount = report.taken[0].discount_wad
    assert discount == held * oracle // E18 - held * report.taken[0].price_e18 // E18
    assert system.account(address)["cash_wad"] - cash_before == discount
    assert fund_equity - system.health(system.d.insurance_fund).equity_wad == discount


def test_round__little_capital__takes_what_its_free_margin_carries(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # 1,000 USDC of free margin at a 10% IM rate carries 90% of 10,000 USD of notional: 3.26 of
    # the fund's 10 ETH at 2,760; the rest stays offered for the next round.
    address = others[1]
    fund_absorbs(system, trader, maker, keeper, long=True)
    fund(system, address, "USDC", usdc(1_000))
    oracle = system.price_e18("ETH")

    report = make_backstop(system, address, None).round()

    taken = report.taken[0].size_delta_wad
    assert taken == 900 * E18 * BPS * E18 // (oracle * 1_000)
    assert system.position(address, "ETH-PERP") == taken
    assert system.position(system.d.insurance_fund, "ETH-PERP") == wad(10) - taken
    health = system.health(address)
    assert health.equity_wad >= health.initial_margin_wad

    # What an earlier round (or a process that crashed before hedging) left is unwound next,
    # with what this round takes.
    report = make_backstop(system, address, maker).round()
    assert report.hedged == 1
    assert system.position(address, "ETH-PERP") == 0


def test_round__fund_under_water_and_no_capital__books_its_loss(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # I25, I32: 1000 ETH long from 3000 on 400k USDC, liquidated in full at 2660 into the fund;
    # ETH then at 2400 leaves the fund at -101k, below its MM. A backstop with no capital takes
    # nothing; its round auto-deleverages the one opposite account (the maker's short) at the
    # oracle price and books the loss, which ADL does not change; the next round has nothing.
    fund(system, trader, "USDC", usdc(400_000))
    fund(system, maker, "USDC", usdc(10_000_000))
    send_fast(
        system.chain,
        system.fn("settleTrade", 0, trader, maker, wad(1_000), system.price_e18("ETH")),
        system.d.matcher,
    )
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_660 * 10**8), system.d.owner)
    system.liquidate(keeper, trader, "ETH-PERP")
    send_fast(system.chain, system.feeds["ETH"].functions.setAnswer(2_400 * 10**8), system.d.owner)
    backstop = make_backstop(system, others[1], maker)

    report = backstop.round()

    assert (report.offered, report.taken, report.deleveraged) == (1, [], 1)
    assert report.booked_wad == 101_000 * E18
    assert system.position(system.d.insurance_fund, "ETH-PERP") == 0
    assert system.position(maker, "ETH-PERP") == 0
    assert system.ch.functions.deficitWad().call() == 101_000 * E18
    assert backstop.round().booked_wad == 0


def test_rank_for_adl__opposite_accounts_above_im__by_equity_over_mm_then_address() -> None:
    # I32: the fund is long; shorts above IM rank by equity / MM, highest first; a tie goes to
    # the lower address; longs, flat accounts and shorts below IM are left out.
    rows = {
        "0xB": (-wad(1), 300, 100, 50),  # 6.0
        "0xA": (-wad(2), 600, 200, 100),  # 6.0, lower address
        "0xC": (-wad(1), 900, 100, 50),  # 18.0
        "0xD": (-wad(1), 90, 100, 50),  # below IM
        "0xE": (wad(1), 900, 100, 50),  # long, the fund's side
        "0xF": (0, 900, 0, 0),
    }
    assert rank_for_adl(wad(5), rows) == ["0xC", "0xA", "0xB"]


def test_wire__killed_after_journaling_a_take__restart_settles_it_and_sends_nothing_again(
    system: Client, trader: str, maker: str, keeper: str, others: list[str], tmp_path: Path
) -> None:
    # THREATS D09, issue 8: the backstop sends through the journaled TxSender. Its take is one
    # row of its journal, mined. A process killed after journaling it, before it recorded the
    # receipt (the row pending again), restarts on the same file: resuming finishes the row from
    # its receipt and sends nothing, so the take stays one row and the key's nonce unmoved.
    address, journal = others[1], tmp_path / "backstop.sqlite"
    fund_absorbs(system, trader, maker, keeper, long=True)
    fund(system, address, "USDC", usdc(50_000))
    backstop = make_backstop(system, address, maker, journal)
    assert isinstance(backstop.wire, ChainWire)

    assert len(backstop.round().taken) == 1
    (row,) = backstop.wire.sender.journal.rows(TAKE)
    assert row.state is TxState.MINED
    assert system.chain.w3.eth.get_transaction_receipt(row.mined_hash)["status"] == 1
    backstop.wire.sender.journal.reopen(row.id)  # the kill: journaled, outcome not recorded
    backstop.wire.sender.journal.close()
    nonce = system.chain.w3.eth.get_transaction_count(address)

    again = make_backstop(system, address, maker, journal)
    assert isinstance(again.wire, ChainWire)

    assert again.wire.sender.journal.rows(TAKE) == [row]
    assert system.chain.w3.eth.get_transaction_count(address) == nonce
    assert again.round().taken == []  # the fund's offer is gone: it was taken once
    assert again.wire.sender.journal.rows(TAKE) == [row]
    again.wire.sender.journal.close()


def test_wire__take_that_would_revert__fails_its_preflight_and_sends_nothing(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    # A take another taker beat (here: more than the fund offers) reverts in its eth_estimateGas
    # pre-flight: the round learns False, nothing is journaled, the key's nonce is unmoved.
    address = others[1]
    held = fund_absorbs(system, trader, maker, keeper, long=True)
    fund(system, address, "USDC", usdc(50_000))
    wire = ChainWire(system.chain, contracts_of(system.d), address)
    offer = system.chain.contract("BackstopOffer", str(system.d.backstop_offer))
    data = offer.encode_abi("take", [0, held + 1, system.price_e18("ETH")])
    nonce = system.chain.w3.eth.get_transaction_count(address)

    assert wire.send([Call(address, offer.address, bytes.fromhex(data[2:]), TAKE)]) == [False]
    assert wire.sender.journal.rows() == []
    assert system.chain.w3.eth.get_transaction_count(address) == nonce
