"""`marginsync demo`: a crash on a real local chain, end to end.

An embedded Anvil; the system deployed; a market maker and a seeded handful of leveraged traders;
oracle prices driven down a crash path; the keeper liquidating after every price update; then a
summary and `runs/<run-id>/report.json`, with `runs/latest` pointing at it.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from offchain.anvil import Anvil
from offchain.chain import Chain
from offchain.client import Client
from offchain.deploy import Roles, deploy_system
from offchain.feeds import crash
from offchain.keeper import Keeper, Liquidation
from offchain.models import WAD, SystemSpec
from offchain.settings import Settings

# Each underlying's crash depth (ETH as on 2020-03-12; BTC and SOL in proportion).
CRASH = {"ETH": 0.43, "BTC": 0.35, "SOL": 0.50}


@dataclass(frozen=True)
class TraderPlan:
    name: str
    market: str
    side: int  # +1 long, -1 short
    leverage: float
    collateral: str  # "USDC" or "WETH"
    collateral_usd: float


def trader_population(seed: int, count: int = 8) -> list[TraderPlan]:
    """A seeded mix: mostly longs at 2-9x across markets, some shorts, some posting WETH."""
    rng = np.random.default_rng(seed)
    markets = ["ETH-PERP", "BTC-PERP", "SOL-PERP"]
    plans = []
    for i in range(count):
        side = -1 if rng.random() < 0.25 else 1
        collateral = "WETH" if rng.random() < 0.25 else "USDC"
        plans.append(
            TraderPlan(
                name=f"trader-{i}",
                market=markets[i % len(markets)],
                side=side,
                leverage=round(float(rng.uniform(2.0, 9.0)), 1),
                collateral=collateral,
                collateral_usd=float(round(rng.uniform(5_000, 50_000), -2)),
            )
        )
    return plans


def _unwind_backstop(client: Client, maker: str, gas: dict[str, list[int]]) -> None:
    """The insurance fund sells what it absorbed to the market maker at the oracle price, as a
    backstop operator would, so it does not ride the rest of the crash."""
    fund = client.d.insurance_fund
    for m in client.d.markets:
        size = client.position(fund, m.id)
        if size:
            price = client.price_e18(client.d.asset(m.oracle_asset).symbol)
            receipt = client.trade(m.id, fund, maker, -size, price)
            gas["backstop_unwind"].append(int(receipt["gasUsed"]))


def _usd(x_wad: int) -> float:
    return x_wad / WAD


def run_demo(
    *,
    seed: int = 7,
    steps: int = 12,
    traders: int = 8,
    settings: Settings | None = None,
    console: Console | None = None,
) -> Path:
    settings = settings or Settings()
    console = console or Console()
    started = time.monotonic()
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + f"-s{seed}"
    run_dir = settings.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    gas: dict[str, list[int]] = defaultdict(list)

    with Anvil(accounts=max(20, traders + 8)) as node:
        console.print(f"[bold]marginsync demo[/] run {run_id}: Anvil at {node.url}")
        chain = Chain.connect(settings, rpc_url=node.url)
        roles = Roles.from_accounts(chain.accounts)
        spec = SystemSpec()
        deployment = deploy_system(
            chain, spec, roles, progress=lambda s: console.print(f"  deploy: {s}")
        )
        deployment.save(run_dir / "deployments")
        client = Client(chain, deployment)
        maker, keeper_addr = chain.accounts[4], chain.accounts[5]
        trader_addrs = chain.accounts[6 : 6 + traders]
        plans = trader_population(seed, traders)

        console.print(f"  funding a market maker and {traders} traders, opening positions")
        client.deposit(maker, "USDC", 50_000_000, mint=True)
        start_prices = {a.symbol: client.price_e18(a.symbol) for a in deployment.assets}
        for addr, plan in zip(trader_addrs, plans, strict=True):
            if plan.collateral == "USDC":
                amount: float = plan.collateral_usd
            else:
                amount = round(plan.collateral_usd / _usd(start_prices["ETH"]), 6)
            client.deposit(addr, plan.collateral, amount, mint=True)
            underlying = plan.market.split("-")[0]
            price = start_prices[underlying]
            # Leverage on the collateral's counted (haircut) value, sized in whole base wei.
            equity = client.health(addr).equity_wad
            size = plan.side * (equity * int(plan.leverage * 100) // 100) * WAD // price
            receipt = client.trade(plan.market, addr, maker, size, price)
            gas["settle_trade"].append(int(receipt["gasUsed"]))
        initial = {addr: client.health(addr) for addr in trader_addrs}
        insurance_start = client.health(deployment.insurance_fund).equity_wad

        keeper = Keeper(client, keeper_addr)
        keeper.mirror.sync()
        paths = {
            sym: crash(_usd(p), steps, drop=CRASH.get(sym, 0.3), seed=seed + i)
            for i, (sym, p) in enumerate(start_prices.items())
        }
        liquidations: list[Liquidation] = []
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("crash: oracle updates + keeper rounds", total=steps)
            for step in range(steps):
                for sym, path in paths.items():
                    receipt = client.set_price(sym, f"{path[step]:.8f}")
                    gas["oracle_update"].append(int(receipt["gasUsed"]))
                done = keeper.step()
                _unwind_backstop(client, maker, gas)
                liquidations.extend(done)
                gas["liquidate"].extend(liq.gas_used for liq in done)
                bar.update(
                    task,
                    advance=1,
                    description=f"step {step + 1}/{steps}: {len(liquidations)} liquidations",
                )

        final = {addr: client.health(addr) for addr in trader_addrs}
        deficit = int(client.ch.functions.deficitWad().call())
        insurance_end = client.health(deployment.insurance_fund).equity_wad
        insolvencies = [
            e
            for e in chain.get_events(
                [deployment.clearinghouse], deployment.block, chain.w3.eth.block_number
            )
            if e.name == "InsolvencyResolved"
        ]

    report = _report(
        run_id=run_id,
        seed=seed,
        steps=steps,
        plans=plans,
        trader_addrs=trader_addrs,
        initial=initial,
        final=final,
        liquidations=liquidations,
        insolvencies=[e.args for e in insolvencies],
        deficit=deficit,
        insurance=(insurance_start, insurance_end),
        gas=gas,
        paths={k: [float(x) for x in v] for k, v in paths.items()},
        start_prices={k: _usd(v) for k, v in start_prices.items()},
        wall_s=time.monotonic() - started,
    )
    report_path = run_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2))
    _point_latest(settings.runs_dir, run_dir)
    _print_summary(console, report, report_path)
    return report_path


def _report(**r: Any) -> dict[str, Any]:
    accounts = []
    liq_by_account: dict[str, int] = defaultdict(int)
    for liq in r["liquidations"]:
        liq_by_account[liq.account] += 1
    for addr, plan in zip(r["trader_addrs"], r["plans"], strict=True):
        accounts.append(
            {
                "address": addr,
                **asdict(plan),
                "equity_start_usd": _usd(r["initial"][addr].equity_wad),
                "equity_end_usd": _usd(r["final"][addr].equity_wad),
                "liquidations": liq_by_account[addr],
            }
        )
    bad_debt_total = sum(int(e["debtWad"]) for e in r["insolvencies"])
    covered = sum(int(e["coveredWad"]) for e in r["insolvencies"])
    return {
        "run_id": r["run_id"],
        "scenario": "crash",
        "seed": r["seed"],
        "steps": r["steps"],
        "crash_depth": CRASH,
        "start_prices_usd": r["start_prices"],
        "accounts": accounts,
        "liquidations": [
            {
                **asdict(liq),
                "closed_size": liq.closed_size_wad / WAD,
                "price_usd": _usd(liq.price_e18),
            }
            for liq in r["liquidations"]
        ],
        "bad_debt": {
            "insolvent_accounts": len(r["insolvencies"]),
            "debt_usd": _usd(bad_debt_total),
            "covered_by_insurance_usd": _usd(covered),
            "deficit_usd": _usd(r["deficit"]),
        },
        "insurance_fund": {
            "equity_start_usd": _usd(r["insurance"][0]),
            "equity_end_usd": _usd(r["insurance"][1]),
        },
        "gas": {
            action: {"count": len(v), "mean": int(np.mean(v)), "max": int(max(v))}
            for action, v in sorted(r["gas"].items())
            if v
        },
        "price_paths_usd": r["paths"],
        "wall_clock_s": round(r["wall_s"], 2),
    }


def _point_latest(runs_dir: Path, run_dir: Path) -> None:
    latest = runs_dir / "latest"
    tmp = runs_dir / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(latest)  # atomic swap: `latest` always points at a complete run


def _print_summary(console: Console, report: dict[str, Any], path: Path) -> None:
    table = Table(title="accounts after the crash")
    for col in (
        "trader",
        "market",
        "side",
        "lev",
        "collateral",
        "equity start $",
        "equity end $",
        "liq.",
    ):
        table.add_column(col, justify="right")
    for a in report["accounts"]:
        table.add_row(
            a["name"],
            a["market"],
            "long" if a["side"] > 0 else "short",
            f"{a['leverage']:.1f}x",
            a["collateral"],
            f"{a['equity_start_usd']:,.0f}",
            f"{a['equity_end_usd']:,.0f}",
            str(a["liquidations"]),
        )
    console.print(table)
    bd, ins = report["bad_debt"], report["insurance_fund"]
    console.print(
        f"liquidations: {len(report['liquidations'])}   "
        f"insolvent accounts: {bd['insolvent_accounts']}   "
        f"bad debt: ${bd['debt_usd']:,.2f} "
        f"(insurance covered ${bd['covered_by_insurance_usd']:,.2f}, "
        f"deficit ${bd['deficit_usd']:,.2f})"
    )
    console.print(
        f"insurance fund equity (cash + absorbed positions at oracle): "
        f"${ins['equity_start_usd']:,.2f} → ${ins['equity_end_usd']:,.2f}"
    )
    gas = "   ".join(f"{k} {v['mean']:,}" for k, v in report["gas"].items())
    console.print(f"mean gas: {gas}")
    console.print(f"report: {path}  ({report['wall_clock_s']} s)")
