"""The keeper: finds under-water accounts from events, liquidates them, races safely (D08)."""

from __future__ import annotations

from helpers import rpc, send_fast

from offchain.chain.client import MAX_UINT, Client
from offchain.keeper import Keeper


def test_keeper_step__price_drop__liquidates_only_underwater_accounts(
    system: Client, open_position, keeper: str, others: list[str]
) -> None:
    risky = open_position(size=15, collateral_usd=5_000, who=others[0])
    safe = open_position(size=1, collateral_usd=5_000, who=others[1])
    system.set_price("ETH", 2_800)  # risky: equity 2000 < MM 2730; safe: far above
    k = Keeper(system, keeper)
    done = k.step()
    assert [d.account for d in done] == [risky.trader]
    assert done[0].keeper_reward_wad > 0
    assert system.position(safe.trader, "ETH-PERP") == safe.size_wad
    assert abs(system.position(risky.trader, "ETH-PERP")) < risky.size_wad
    # The reward sits in the keeper's cash: it needed no capital to earn it.
    assert system.account(keeper)["cash_wad"] == sum(d.keeper_reward_wad for d in done)


def test_keeper_step__nothing_underwater__sends_nothing(
    system: Client, open_position, keeper: str
) -> None:
    open_position(size=1, collateral_usd=5_000)
    block = system.chain.w3.eth.block_number
    assert Keeper(system, keeper).step() == []
    assert system.chain.w3.eth.block_number == block


def test_two_keepers__same_account_same_block__one_wins_other_fails_cheaply(
    system: Client, open_position, keeper: str, others: list[str]
) -> None:
    """D08: both keepers pre-flight against the same state; only one liquidation lands and the
    state is what one liquidation leaves."""
    opened = open_position(size=12, collateral_usd=4_000)
    system.set_price("ETH", 2_750)  # deep: equity < 50% of MM, so one liquidation closes all
    w3 = system.chain.w3
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        hashes = [
            system.ch.functions.liquidate(opened.trader, 0, MAX_UINT).transact(
                {"from": k, "gas": 400_000}
            )
            for k in (keeper, others[0])
        ]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    receipts = [w3.eth.get_transaction_receipt(h) for h in hashes]
    assert sorted(r["status"] for r in receipts) == [0, 1]
    loser = next(r for r in receipts if r["status"] == 0)
    assert loser["gasUsed"] < 100_000  # fails on the NoPosition check, before any heavy work
    assert system.position(opened.trader, "ETH-PERP") == 0
    assert system.position(system.d.insurance_fund, "ETH-PERP") == opened.size_wad


def test_keeper_step__funding_owed_not_yet_settled__ranks_and_liquidates_the_payer(
    system: Client, open_position, keeper: str, others: list[str]
) -> None:
    """I26: funding counts in equity before it settles, in the keeper's mirror as in the
    contract. A long that owes a day of funding at the cap, settled by nobody, is ranked and
    liquidated although prices never moved."""
    payer = open_position(size=10, collateral_usd=3_100)
    for who in others[:2]:
        system.deposit(who, "USDC", 1_000_000, mint=True)
    oracle = system.price_e18("ETH")
    system.trade("ETH-PERP", others[0], others[1], 10**18, oracle * 10_200 // 10_000)  # band edge
    for hours in (2, 20):
        rpc(system, "evm_increaseTime", hours * 3_600)
        for feed in system.feeds.values():  # the feeds publish again: prices stay usable
            send_fast(
                system.chain,
                feed.functions.setAnswer(feed.functions.latestRoundData().call()[1]),
                system.d.owner,
            )
        if hours == 2:  # anyone's settlement makes the held premium the rate in force (2% / 8 h)
            system.chain.send(system.fn("settleFunding", others[0], 0), keeper, "poke")
    assert (
        system.health(payer.trader).equity_wad < system.health(payer.trader).maintenance_margin_wad
    )
    done = Keeper(system, keeper).step()
    assert [d.account for d in done] == [payer.trader]
