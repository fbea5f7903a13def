"""`marginsync bench gas`: gas of the clearinghouse's main paths on a real Anvil chain.

The 8-position liquidation uses 8 markets on 8 distinct underlyings, so the health check reads 8
oracle feeds: the worst case the position limit allows at the default `maxPositionsPerAccount`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import MAX_UINT, Client, wad
from offchain.chain.deploy import Roles, deploy_system
from offchain.models import MarketSpec, OracleAssetSpec, SystemSpec
from offchain.settings import Settings

GOALS = {"liquidate_1_position": 150_000, "liquidate_8_positions": 300_000}
# Aave v3 `liquidationCall`, average in its own test report, for comparison.
AAVE_V3_LIQUIDATION_AVG = 265_700


def bench_spec(markets: int = 8, *, verifier: bool = True) -> SystemSpec:
    symbols = [f"A{i}" for i in range(markets)]
    return SystemSpec(
        attestation=SystemSpec().attestation if verifier else None,
        assets=tuple(OracleAssetSpec(symbol=s, price_usd=100.0) for s in symbols),
        collaterals=SystemSpec().collaterals[:1],
        markets=tuple(
            MarketSpec(
                symbol=f"{s}-PERP",
                underlying=s,
                im_bps=1_000,
                mm_bps=650,
                liquidation_penalty_bps=300,
                price_band_bps=200,
                max_position_size=1e9,
                open_interest_cap=1e12,
            )
            for s in symbols
        ),
    )


def measure(client: Client, accounts: list[str]) -> dict[str, int]:
    """Gas used per action; `accounts` are unlocked and unused."""
    gas: dict[str, int] = {}
    maker, trader, trader8, keeper = accounts[:4]

    def used(receipt: Any) -> int:
        return int(receipt["gasUsed"])

    client.mint(trader, "USDC", 2_000_000)
    client.chain.send(
        client.tokens["USDC"].functions.approve(client.ch.address, MAX_UINT), trader, "approve"
    )
    gas["deposit_first"] = used(
        client.chain.send(client.ch.functions.deposit(trader, 0, 1_000 * 10**6), trader, "deposit")
    )
    gas["deposit"] = used(
        client.chain.send(client.ch.functions.deposit(trader, 0, 1_000 * 10**6), trader, "deposit")
    )
    gas["withdraw_no_positions"] = used(client.withdraw(trader, "USDC", 500))

    client.deposit(maker, "USDC", 100_000_000, mint=True)
    client.deposit(trader8, "USDC", 8_000, mint=True)
    price = client.price_e18("A0")
    gas["settle_trade_open"] = used(client.trade("A0-PERP", trader, maker, wad(140), price))
    gas["settle_trade_increase"] = used(client.trade("A0-PERP", trader, maker, wad(1), price))
    gas["settle_trade_reduce"] = used(client.trade("A0-PERP", trader, maker, -wad(1), price))
    gas["withdraw_with_position"] = used(client.withdraw(trader, "USDC", 50))

    for m in client.d.markets:
        client.trade(
            m.id, trader8, maker, wad(70), client.price_e18(client.d.asset(m.oracle_asset).symbol)
        )
    # A 10% fall puts both accounts below maintenance margin (6.5%) but keeps them solvent.
    for a in client.d.assets:
        client.set_price(a.symbol, 90)
    gas["liquidate_1_position"] = used(client.liquidate(keeper, trader, "A0-PERP"))
    gas["liquidate_8_positions"] = used(client.liquidate(keeper, trader8, "A0-PERP"))
    gas["health_view_8_positions"] = int(client.ch.functions.accountHealth(trader8).estimate_gas())
    return gas


def run(json_path: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    # Static margin only (the Gen 2 contracts), then with the attestation verifier wired in and
    # no attestation in force: the price of asking the verifier from every health check.
    configs = {"static": False, "with_verifier": True}
    gas_by: dict[str, dict[str, int]] = {}
    for label, verifier in configs.items():
        console.print(f"bench gas ({label}): starting Anvil and deploying an 8-market system…")
        with Anvil(accounts=12) as node:
            chain = Chain.connect(Settings(rpc_url=node.url))
            d = deploy_system(
                chain, bench_spec(verifier=verifier), Roles.from_accounts(chain.accounts)
            )
            gas_by[label] = measure(Client(chain, d), chain.accounts[4:8])
    gas = gas_by["static"]
    result: dict[str, Any] = {
        "gas": gas,
        "gas_with_verifier": gas_by["with_verifier"],
        "goals": GOALS,
        "goals_met": {k: gas[k] <= v for k, v in GOALS.items()},
        "goals_met_with_verifier": {k: gas_by["with_verifier"][k] <= v for k, v in GOALS.items()},
        "reference": {"aave_v3_liquidationCall_avg": AAVE_V3_LIQUIDATION_AVG},
    }
    table = Table(title="gas per transaction (Anvil, solc 0.8.37, optimizer 200 runs)")
    table.add_column("action")
    table.add_column("static", justify="right")
    table.add_column("with verifier", justify="right")
    table.add_column("goal", justify="right")

    def mark(value: int, goal: int | None) -> str:
        return "" if goal is None else (" ✓" if value <= goal else " ✗")

    for action, value in gas.items():
        goal = GOALS.get(action)
        other = gas_by["with_verifier"][action]
        table.add_row(
            action,
            f"{value:,}{mark(value, goal)}",
            f"{other:,}{mark(other, goal)}",
            "" if goal is None else f"≤ {goal:,}",
        )
    console.print(table)
    console.print(f"reference: Aave v3 liquidationCall averages ≈ {AAVE_V3_LIQUIDATION_AVG:,} gas")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_path}")
    return result
