"""SPEC I17: the event mirror rebuilds every account's state exactly from events alone."""

from __future__ import annotations

from offchain.chain.client import Client, wad
from offchain.chain.mirror import AccountMirror


def _assert_mirror_equals_chain(system: Client, mirror: AccountMirror) -> None:
    for account, state in mirror.accounts.items():
        on_chain = system.account(account)
        assert state.cash_wad == on_chain["cash_wad"], account
        assert state.nonce == on_chain["nonce"], account
        for m in system.d.markets:
            assert state.positions.get(m.id, 0) == system.position(account, m.id), (
                account,
                m.symbol,
            )
        for c in system.d.collaterals[1:]:
            assert state.balances.get(c.id, 0) == system.balance(account, c.symbol), (
                account,
                c.symbol,
            )
    assert mirror.deficit_wad == system.ch.functions.deficitWad().call()


def test_mirror__trades_liquidations_and_insolvency__equal_contract_storage(
    system: Client, trader: str, maker: str, keeper: str, others: list[str]
) -> None:
    weth_trader, short = others[0], others[1]
    system.deposit(trader, "USDC", 1_000, mint=True)
    system.deposit(maker, "USDC", 5_000_000, mint=True)
    system.deposit(weth_trader, "WETH", "1.234567891234567891", mint=True)
    system.deposit(short, "USDC", 20_000, mint=True)
    eth = system.price_e18("ETH")
    system.trade("ETH-PERP", trader, maker, wad("3.3333"), eth + 7)
    system.trade("ETH-PERP", weth_trader, maker, wad("9"), eth - 11)
    system.trade("BTC-PERP", short, maker, -wad("0.5"), system.price_e18("BTC"))
    system.trade("ETH-PERP", trader, maker, -wad("0.3333"), eth)
    system.withdraw(short, "USDC", 1_000)

    system.set_price("ETH", 2_500)  # both under water; weth_trader insolvent with WETH to seize
    for account in (trader, weth_trader):
        while system.position(account, "ETH-PERP") and system.health(account).liquidatable:
            system.liquidate(keeper, account, "ETH-PERP")
    names = {
        e.name for e in system.chain.get_events([system.d.clearinghouse], system.d.block, "latest")
    }
    assert {"Liquidate", "CollateralSeized", "InsolvencyResolved"} <= names

    mirror = AccountMirror(
        system.chain, system.d.clearinghouse, system.d.insurance_fund, system.d.block
    )
    applied = mirror.sync()
    assert applied > 20
    assert mirror.accounts[weth_trader].positions[0] == 0
    _assert_mirror_equals_chain(system, mirror)


def test_mirror__health_from_events__equals_contract_health(
    system: Client, open_position, trader: str
) -> None:
    open_position(size="7.77", collateral_usd=4_000)
    system.set_price("ETH", "2890.12345678")
    mirror = AccountMirror(
        system.chain, system.d.clearinghouse, system.d.insurance_fund, system.d.block
    )
    mirror.sync()
    prices = {a.id: system.price_e18(a.symbol) for a in system.d.assets}
    mirrored = mirror.health(trader, prices)
    on_chain = system.health(trader)
    assert (mirrored.equity_wad, mirrored.initial_margin_wad, mirrored.maintenance_margin_wad) == (
        on_chain.equity_wad,
        on_chain.initial_margin_wad,
        on_chain.maintenance_margin_wad,
    )
