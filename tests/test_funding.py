"""Perpetual funding (IFunding): accrual, settlement, configuration and its defences.

SPEC I26-I29; THREATS I01-I04. Expected values come from `offchain.risk.funding`, the integer
model of the contract's formula, fed with block timestamps and prices, never read back from the
contract's own state and compared with themselves.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import assert_revert, make_stale, rollback, rpc, send_fast
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles
from offchain.chain.mirror import AccountMirror
from offchain.errors import ContractRevert
from offchain.ops.views import account_view
from offchain.risk.funding import WAD, FundingMarket, owed
from offchain.risk.health import trade_cash_change_wad

ETH = 0
ETH_E18 = 3_000 * WAD
BAND_BPS = 200
CHAIN_PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


# ---------------------------------------------------------------------------- helpers


def advance(system: Client, seconds: int) -> None:
    """Lets time pass and republishes every feed at its answer, so prices stay usable."""
    rpc(system, "evm_increaseTime", seconds)
    for feed in system.feeds.values():
        answer = feed.functions.latestRoundData().call()[1]
        send_fast(system.chain, feed.functions.setAnswer(answer), system.d.owner)


def block_time(system: Client, receipt: Any) -> int:
    return int(system.chain.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def events(system: Client, receipt: Any, name: str) -> list[Any]:
    return [e.args for e in system.events(receipt) if e.name == name]


def configure(system: Client, roles: Roles, max_rate_bps: int, window_s: int = 3_600) -> Any:
    return system.chain.send(
        system.fn("configureFunding", ETH, max_rate_bps, window_s), roles.owner, "configure funding"
    )


def settle_funding(system: Client, account: str, sender: str) -> Any:
    return system.chain.send(system.fn("settleFunding", account, ETH), sender, "settle funding")


def fund_pair(system: Client, a: str, b: str, usd: int = 1_000_000) -> None:
    system.deposit(a, "USDC", usd, mint=True)
    system.deposit(b, "USDC", usd, mint=True)


def band_edge(bps: int = BAND_BPS) -> int:
    return ETH_E18 + ETH_E18 * bps // 10_000


# ---------------------------------------------------------------------------- reverts


def test_configure_funding__not_owner__reverts_ownable(system: Client, trader: str) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("configureFunding", ETH, 100, 3_600), trader, "configure")
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=trader)


@pytest.mark.parametrize(("rate", "window"), [(1_001, 3_600), (200, 59), (200, 86_401)])
def test_configure_funding__out_of_bounds__reverts_invalid_funding_config(
    system: Client, roles: Roles, rate: int, window: int
) -> None:
    with pytest.raises(ContractRevert) as e:
        configure(system, roles, rate, window)
    assert_revert(e.value, "InvalidFundingConfig", maxRateBps=rate, premiumWindowS=window)


def test_configure_funding__unknown_market__reverts_unknown_market(
    system: Client, roles: Roles
) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("configureFunding", 9, 100, 3_600), roles.owner, "configure")
    assert_revert(e.value, "UnknownMarket", marketId=9)


def test_settle_funding__unknown_market__reverts_unknown_market(
    system: Client, trader: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        system.chain.send(system.fn("settleFunding", trader, 9), trader, "settle")
    assert_revert(e.value, "UnknownMarket", marketId=9)


def test_settle_funding__no_position__reverts_nothing_to_settle(
    system: Client, trader: str, keeper: str
) -> None:
    with pytest.raises(ContractRevert) as e:
        settle_funding(system, trader, keeper)
    assert_revert(e.value, "NothingToSettle", account=trader, marketId=ETH)


# ---------------------------------------------------------------------------- I29 / THREATS I04


def test_i29_wash_trade_at_band_edge__funding_clamped_to_cap(
    system: Client, roles: Roles, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    """I29 (THREATS I04): a premium held at the band edge (2%) pays no more than the cap
    (0.5% per 8 h): the long pays exactly ⌈size · price · 0.5%⌉ over 8 h."""
    fund_pair(system, trader, maker)
    fund_pair(system, others[0], others[1])
    r = configure(system, roles, 50)
    model = FundingMarket(last_accrual=block_time(system, r), max_rate_bps=50)
    r = system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    model = model.accrue(block_time(system, r), ETH_E18).sample(ETH_E18, ETH_E18)
    # The wash trade, between two accounts of one matcher, at the band's upper edge.
    r = system.trade("ETH-PERP", others[0], others[1], wad(1), band_edge())
    model = model.accrue(block_time(system, r), ETH_E18).sample(band_edge(), ETH_E18)
    advance(system, 7_200)  # it stood for two windows: the average is the band edge
    r = settle_funding(system, trader, keeper)
    model = model.accrue(block_time(system, r), ETH_E18)
    assert model.rate_e18 == 50 * 10**14 < model.premium_ema_e18
    start = model.index_wad
    advance(system, 8 * 3600)
    r = settle_funding(system, trader, keeper)
    model = model.accrue(block_time(system, r), ETH_E18)
    [settled] = events(system, r, "FundingSettled")
    elapsed_share = (model.index_wad - start) * 10**4 // ETH_E18  # ≈ 50 bps over ≈ 8 h
    assert 49 <= elapsed_share <= 51
    assert settled["amountWad"] == owed(wad(10), model.index_wad, start)


def test_i29_one_wash_trade_replaced_next_minute__moves_average_by_its_time_share(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    """I29 (THREATS I04): the premium is averaged over the time it stood, so a band-edge print that
    an honest trade replaces a minute later moves the hourly average by about 1/60 of it."""
    fund_pair(system, trader, maker)
    r = system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    model = FundingMarket().accrue(block_time(system, r), ETH_E18).sample(ETH_E18, ETH_E18)
    t_open = block_time(system, r)
    rpc(system, "evm_setNextBlockTimestamp", t_open + 600)
    r = system.trade("ETH-PERP", trader, maker, wad(1), band_edge())
    model = model.accrue(t_open + 600, ETH_E18).sample(band_edge(), ETH_E18)
    rpc(system, "evm_setNextBlockTimestamp", t_open + 660)
    r = system.trade("ETH-PERP", trader, maker, wad(1), ETH_E18)
    model = model.accrue(t_open + 660, ETH_E18)
    [accrued] = events(system, r, "FundingAccrued")
    band_premium = BAND_BPS * 10**14
    assert accrued["premiumEmaE18"] == model.premium_ema_e18 == band_premium * 60 // 3_600
    assert accrued["rateE18"] == model.premium_ema_e18  # far inside the 2% cap


# ---------------------------------------------------------------------------- I26 / I28


def test_i26_owed_funding_counts_in_health_before_it_settles(
    system: Client, roles: Roles, trader: str, maker: str, keeper: str
) -> None:
    """I26: the one health function sees funding owed before any settlement, and settling it
    changes cash, not equity."""
    fund_pair(system, trader, maker)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", trader, maker, wad(1), band_edge())  # longs pay
    advance(system, 3 * 3600)
    settle_funding(system, trader, keeper)  # the rate is now the band premium, capped at 2%
    advance(system, 4 * 3600)
    rpc(system, "evm_mine")
    cash = system.account(trader)["cash_wad"]
    equity_before = system.health(trader).equity_wad
    mark = wad(11) * ETH_E18 // WAD
    assert equity_before < cash + mark  # the owed funding is already out of equity
    r = settle_funding(system, trader, keeper)
    [settled] = events(system, r, "FundingSettled")
    assert settled["amountWad"] > 0
    assert system.account(trader)["cash_wad"] == cash - settled["amountWad"]
    # One second of accrual separates the two reads; nothing else moved equity.
    per_second = wad(11) * ETH_E18 * 2 // 100 // (8 * 3600) // WAD + 1
    assert 0 <= equity_before - system.health(trader).equity_wad <= per_second


def test_i28_liquidation_settles_funding_first_and_backstop_starts_at_the_index(
    system: Client, trader: str, maker: str, keeper: str, roles: Roles
) -> None:
    """I28: a liquidation settles the account's funding before it closes anything, and the
    backstop taking the position neither pays nor receives funding accrued before it held it."""
    fund_pair(system, maker, keeper)
    system.deposit(trader, "USDC", 3_400, mint=True)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", trader, maker, wad(1), band_edge())
    advance(system, 3 * 3600)
    settle_funding(system, trader, keeper)
    advance(system, 8 * 3600)
    system.set_price("ETH", 2_900)
    r = system.liquidate(keeper, trader, "ETH-PERP")
    names = [e.name for e in system.events(r)]
    assert names.index("FundingSettled") < names.index("Liquidate")
    [settled] = events(system, r, "FundingSettled")
    assert settled["account"] == trader
    assert settled["amountWad"] > 0
    [accrued] = events(system, r, "FundingAccrued")
    fund = roles.insurance_fund
    assert system.ch.functions.fundingIndexOf(fund, ETH).call() == accrued["indexWad"]
    assert system.ch.functions.fundingIndexOf(trader, ETH).call() == accrued["indexWad"]


def test_i28_closed_account_neither_pays_nor_receives(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    """I28: once closed, later funding does not touch the account; reopened, it starts at the
    index of the moment."""
    fund_pair(system, trader, maker)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", trader, maker, wad(1), band_edge())
    advance(system, 3 * 3600)
    settle_funding(system, maker, keeper)
    system.trade("ETH-PERP", trader, maker, -wad(11), ETH_E18)  # closes, settling
    cash = system.account(trader)["cash_wad"]
    advance(system, 8 * 3600)
    assert system.health(trader).equity_wad == cash
    with pytest.raises(ContractRevert) as e:
        settle_funding(system, trader, keeper)
    assert_revert(e.value, "NothingToSettle", account=trader, marketId=ETH)
    r = system.trade("ETH-PERP", trader, maker, wad(1), ETH_E18)
    assert events(system, r, "FundingSettled") == [] or all(
        ev["account"] != trader for ev in events(system, r, "FundingSettled")
    )
    [accrued] = events(system, r, "FundingAccrued")
    assert system.ch.functions.fundingIndexOf(trader, ETH).call() == accrued["indexWad"]


def test_account_view__shows_the_funding_owed_that_health_already_counts(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    """I26: `marginsync account` shows what the positions owe, exactly the gap between the
    contract's equity and the same book without funding."""
    fund_pair(system, trader, maker)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", trader, maker, wad(1), band_edge())
    advance(system, 3 * 3600)
    r = settle_funding(system, maker, keeper)
    [accrued] = events(system, r, "FundingAccrued")
    advance(system, 4 * 3600)
    rpc(system, "evm_mine")
    now = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    model = FundingMarket(
        index_wad=accrued["indexWad"],
        rate_e18=accrued["rateE18"],
        last_accrual=accrued["accruedAt"],
    )
    expected = owed(wad(11), model.index_at(now, ETH_E18), 0)
    assert expected > 0
    assert account_view(system, trader).funding_owed_usd == expected / WAD
    assert account_view(system, maker).funding_owed_usd < 0  # the short is owed


def test_i17_mirror__funding_settled_in_trades_liquidations_and_settles__rebuilt_from_events(
    system: Client, trader: str, maker: str, keeper: str, roles: Roles, others: list[str]
) -> None:
    """I17: every account's cash and funding index, and every market's index, rebuilt from
    events alone equal the contract's, after funding settled by trades, by `settleFunding`, and
    by a liquidation (account and backstop)."""
    fund_pair(system, maker, keeper)
    system.deposit(trader, "USDC", 3_400, mint=True)
    system.deposit(others[0], "USDC", 100_000, mint=True)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", others[0], maker, wad(3), band_edge())
    advance(system, 3 * 3600)
    settle_funding(system, maker, keeper)
    advance(system, 5 * 3600)
    system.trade("ETH-PERP", others[0], maker, -wad(1), ETH_E18)
    advance(system, 3 * 3600)
    system.set_price("ETH", 2_900)
    system.liquidate(keeper, trader, "ETH-PERP")
    settle_funding(system, others[0], keeper)
    mirror = AccountMirror(system.chain, system.ch.address, system.d.insurance_fund, system.d.block)
    mirror.sync()
    for who in (trader, maker, keeper, others[0], roles.insurance_fund):
        assert mirror.accounts[who].cash_wad == system.account(who)["cash_wad"], who
        on_chain = system.ch.functions.fundingIndexOf(who, ETH).call()
        assert mirror.accounts[who].funding_index.get(ETH, 0) == on_chain, who
    assert mirror.funding[ETH].index_wad != 0


def test_i28_settle_funding__oracle_stale__settles_at_the_routers_quote(
    system: Client, trader: str, maker: str, keeper: str
) -> None:
    """I28 with S4: settling needs no usable price; the index accrues at the broken feed's low
    quote, as liquidation values the market (I18)."""
    fund_pair(system, trader, maker)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", trader, maker, wad(1), band_edge())
    advance(system, 3 * 3600)
    settle_funding(system, maker, keeper)
    make_stale(system, "ETH")
    assert system.router.functions.tryPriceE18(ETH).call()[1] != 0  # not usable
    r = settle_funding(system, trader, keeper)
    [settled] = events(system, r, "FundingSettled")
    assert settled["amountWad"] > 0


def test_i28_settle_funding__less_than_a_wei_due__leaves_the_claim_accruing(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    """I28: a one-wei short is owed less than a wei: settling moves nothing and keeps its index,
    so the claim goes on accruing instead of being rounded away at every call."""
    fund_pair(system, trader, maker)
    system.deposit(others[0], "USDC", 100_000, mint=True)
    system.trade("ETH-PERP", trader, maker, -1, ETH_E18)
    system.trade("ETH-PERP", others[0], maker, wad(1), band_edge())  # longs will pay
    advance(system, 3 * 3600)
    settle_funding(system, maker, keeper)
    advance(system, 300)  # at 2% per 8 h on 3,000 USD: 0.625 USD per unit, under a wei on 1 wei
    before = system.ch.functions.fundingIndexOf(trader, ETH).call()
    r = settle_funding(system, trader, keeper)
    [accrued] = events(system, r, "FundingAccrued")
    assert 0 < accrued["indexWad"] - before < WAD  # owed: ⌈−1 · Δ / 1e18⌉ = 0
    assert events(system, r, "FundingSettled") == []
    assert system.ch.functions.fundingIndexOf(trader, ETH).call() == before


def test_health_views__simulated_before_the_last_accrual__see_no_accrual_instead_of_reverting(
    system: Client, trader: str, maker: str
) -> None:
    """I20's promise for the health views holds with funding: a node simulating a call at a time
    before the market's last accrual (its own clock, a block override) gets an answer."""
    fund_pair(system, trader, maker)
    advance(system, 60)  # the feeds' rounds, then the trade's accrual 100 s later
    feeds_at = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    rpc(system, "evm_setNextBlockTimestamp", feeds_at + 100)
    r = system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    call = {
        "to": system.ch.address,
        "data": system.fn("accountHealth", trader)._encode_transaction_data(),
    }
    earlier = {"time": hex(block_time(system, r) - 50)}  # after the rounds, before the accrual
    reply = rpc(system, "eth_call", call, "latest", {}, earlier)
    assert "error" not in reply, reply
    assert reply["result"] == rpc(system, "eth_call", call, "latest")["result"]


# ---------------------------------------------------------------------------- I27


def test_i27_parameter_change_accrues_first__funding_accrued_is_not_repriced(
    system: Client, roles: Roles, trader: str, maker: str, keeper: str
) -> None:
    """I27 (THREATS I02): the configuration change accrues the index at the old rate up to its
    own block, so what positions owe for the time before it is what the old cap said."""
    fund_pair(system, trader, maker)
    system.trade("ETH-PERP", trader, maker, wad(10), ETH_E18)
    system.trade("ETH-PERP", trader, maker, wad(1), band_edge())
    advance(system, 3 * 3600)
    r = settle_funding(system, trader, keeper)
    [accrued] = events(system, r, "FundingAccrued")
    model = FundingMarket(
        index_wad=accrued["indexWad"],
        rate_e18=accrued["rateE18"],
        last_accrual=block_time(system, r),
        premium_ema_e18=accrued["premiumEmaE18"],
    )
    assert model.rate_e18 > 0
    advance(system, 4 * 3600)
    r = configure(system, roles, 10)
    first, second = events(system, r, "FundingAccrued")
    assert first["indexWad"] == model.index_at(block_time(system, r), ETH_E18)
    assert second["indexWad"] == first["indexWad"]
    assert second["rateE18"] == 10 * 10**14


# ---------------------------------------------------------------------------- I26 conservation

OPS = st.lists(
    st.tuples(
        st.sampled_from(["trade", "wait", "configure", "settle"]),
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(-20, 20),
        st.integers(-BAND_BPS, BAND_BPS),
    ),
    min_size=4,
    max_size=12,
)


@settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    phases=CHAIN_PHASES,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
# One walk sure to move money: a premium, time for it to become the rate, settlements, a cap
# change, a reversal at a discount, more time.
@example(
    ops=[
        ("trade", 0, 1, 10, BAND_BPS),
        ("trade", 2, 3, -7, 50),
        ("wait", 1, 2, 0, 0),
        ("settle", 0, 0, 0, 0),
        ("wait", 2, 2, 0, 0),
        ("configure", 1, 0, 0, 0),
        ("trade", 1, 2, 4, -150),
        ("wait", 1, 1, 0, 0),
        ("settle", 3, 0, 0, 0),
    ]
)
def test_i26_conservation__random_trades_waits_and_parameter_changes(
    system: Client, roles: Roles, others: list[str], keeper: str, ops: list[tuple[Any, ...]]
) -> None:
    """I26 (THREATS I01): once every position has settled to one index, Σ paid − Σ received over
    all settlements is the rounding dust: ≥ 0 (in the protocol's favour) and below one wei per
    settlement. Funding is never paid out of nothing."""
    with rollback(system.chain):
        accounts = others[:4]
        for a in accounts:
            system.deposit(a, "USDC", 10_000_000, mint=True)
        sizes = dict.fromkeys(accounts, 0)
        cash_before = sum(system.account(a)["cash_wad"] for a in accounts)
        trade_cash = 0
        receipts = []
        for op, i, j, size, premium_bps in ops:
            if op == "trade" and i != j and size != 0:
                price = ETH_E18 + ETH_E18 * premium_bps // 10_000
                receipts.append(
                    system.trade("ETH-PERP", accounts[i], accounts[j], wad(size), price)
                )
                sizes[accounts[i]] += wad(size)
                sizes[accounts[j]] -= wad(size)
                trade_cash += trade_cash_change_wad(wad(size), price)
                trade_cash += trade_cash_change_wad(-wad(size), price)
            elif op == "wait":
                advance(system, 600 * (i + 1) * (j + 1))
            elif op == "configure":
                receipts.append(configure(system, roles, 25 * (i + 1) * (j + 1), 60 * (i + 1) * 15))
            elif op == "settle" and sizes[accounts[i]] != 0:
                receipts.append(settle_funding(system, accounts[i], keeper))
        advance(system, 3_600)
        rpc(system, "evm_setAutomine", False)
        try:
            hashes = [
                system.fn("settleFunding", a, ETH).transact({"from": keeper, "gas": 500_000})
                for a in [*accounts, roles.insurance_fund]
                if sizes.get(a, 0) != 0
            ]
            rpc(system, "evm_mine")
        finally:
            rpc(system, "evm_setAutomine", True)
        final = [system.chain.w3.eth.get_transaction_receipt(h) for h in hashes]
        assert all(r["status"] == 1 for r in final)
        settled = {e["account"] for r in final for e in events(system, r, "FundingSettled")}
        indices = {system.ch.functions.fundingIndexOf(a, ETH).call() for a in settled}
        assert len(indices) <= 1  # every position settled to one index, in one block
        amounts = [
            e["amountWad"] for r in receipts + final for e in events(system, r, "FundingSettled")
        ]
        dust = sum(amounts)
        assert 0 <= dust < max(1, len(amounts))
        if ops[0] == ("trade", 0, 1, 10, BAND_BPS):  # the explicit walk: funding did move
            assert any(a > 0 for a in amounts)
            assert any(a < 0 for a in amounts)
        # I4: the accounts' cash moved by the trades' cash flows and lost exactly the dust.
        cash_after = sum(system.account(a)["cash_wad"] for a in accounts)
        assert cash_after == cash_before + trade_cash - dust
