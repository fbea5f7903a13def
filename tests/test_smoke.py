from offchain.chain.client import Client


def test_open_position__at_oracle_price__records_size_and_health(
    system: Client, open_position
) -> None:
    opened = open_position(size=10, collateral_usd=5_000)
    assert system.position(opened.trader, "ETH-PERP") == opened.size_wad
    h = system.health(opened.trader)
    # 10 ETH at 3000: IM 10% = 3000, MM 6.5% = 1950, equity = 5000 exactly at the trade price.
    assert h.equity_wad == 5_000 * 10**18
    assert h.initial_margin_wad == 3_000 * 10**18
    assert h.maintenance_margin_wad == 1_950 * 10**18
