"""`marginsync bench link`: certificate lag and gas across linked venues (issue 12's goal: lag
p99 ≤ 1 s for 3 venues and 200 accounts on local chains).

It deploys N linked venues exactly as `marginsync deploy --venues N` does (`ops.venues`), on
Anvils it starts (chain ids 31337…, a block every second as well as one per transaction) and
stops at the end. Each of `accounts` traders holds a book split across two venues (long ETH on
venue i mod N, short on the next, 1–10 ETH each, $20,000 on each venue), so the whole book is a
hedge only the link sees. Then the product's link service (`ops.link_service`: the LinkEngine,
the development committee's members in this process, each with its own mirrors, one journaled
sender per chain) runs:
- **burst**: the first step certifies every account at once;
- **steady**: after one step with no change (in which the mirrors read the burst's own events:
  `burst.settle_s`), `steps` steps in each of which `changes` random traders trade 0.1 ETH on one of
  their venues and the engine re-certifies them (and refreshes what nears its max age).

`lag_ms` is the engine's certificate lag: from the step whose sync first saw the account's new
state to the receipt that applied its certificate on the last venue (`LinkEngine.lag_ms`).
`certificate_gas` is what each `submitCertificate` used (transaction base included), from the
engine's receipts; `step_s` the steady steps' wall time. Figures depend on the machine's load.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from offchain.chain.anvil import Anvil
from offchain.chain.client import Client
from offchain.models import SystemSpec
from offchain.ops.link_service import build_link_engine, members_for
from offchain.ops.venue import credit, trade, trader_address
from offchain.ops.venues import LOCAL_CHAIN_ID, Committee, deploy_venues, open_venues
from offchain.settings import Settings

GOAL_LAG_P99_MS = 1_000.0
MARKET = "ETH-PERP"
LEG_COLLATERAL_USD = 20_000
SEED = 7

console = Console(soft_wrap=True)


def run(
    json_path: Path | None = None,
    *,
    accounts: int = 200,
    venues: int = 3,
    steps: int = 20,
    changes: int = 5,
    progress: Callable[[str], None] = lambda line: console.print(f"[dim]{line}[/dim]"),
) -> dict[str, Any]:
    rng = random.Random(SEED)
    with ExitStack() as stack, tempfile.TemporaryDirectory() as registry_dir:
        nodes = [
            stack.enter_context(
                Anvil(chain_id=LOCAL_CHAIN_ID + i, block_time_s=1, extra_args=("--mixed-mining",))
            )
            for i in range(venues)
        ]
        settings = Settings(deployments_dir=Path(registry_dir))
        linked = deploy_venues(
            settings,
            SystemSpec(),
            venues=venues,
            rpc_urls=[n.url for n in nodes],
            committee=Committee.given(None, None),
            progress=progress,
        )
        opened = open_venues(linked.link, settings)
        clients = [Client(v.chain, v.deployment) for v in opened]
        traders = [trader_address(SEED, i) for i in range(accounts)]
        legs = {t: (i % venues, (i + 1) % venues) for i, t in enumerate(traders)}
        progress(f"opening {accounts} books split across {venues} venues")
        for venue, client in enumerate(clients):
            quote = client.d.collaterals[0]
            mine = [t for t in traders if venue in legs[t]]
            credit(
                client, [(t, quote.symbol, LEG_COLLATERAL_USD * 10**quote.decimals) for t in mine]
            )
        for t in traders:
            size = rng.randint(1, 10)
            long_venue, short_venue = legs[t]
            trade(clients[long_venue], t, MARKET, size)
            trade(clients[short_venue], t, MARKET, -size)

        members = members_for(linked.link, opened, processes=False, stack=stack)
        engine = build_link_engine(linked.link, opened, opened[0].chain.accounts[9], members)
        started = time.monotonic()
        burst = engine.step()
        burst_s = time.monotonic() - started
        burst_lags = engine.lag_ms()
        progress(f"burst: {burst.applied} certificates in {burst_s:.1f} s")
        # One step with no change: the mirrors (the engine's and every member's) read the
        # burst's own events; a cost of the burst, not of the changes measured next.
        started = time.monotonic()
        engine.step()
        settle_s = time.monotonic() - started
        engine.lags.clear()
        step_s = []
        for k in range(steps):
            for t in rng.sample(traders, changes):
                trade(clients[rng.choice(legs[t])], t, MARKET, 0.1)
            started = time.monotonic()
            engine.step()
            step_s.append(time.monotonic() - started)
            progress(f"steady step {k + 1}/{steps}: {step_s[-1]:.2f} s")
        gas = np.asarray(engine.gas_used, dtype=np.float64)
        result: dict[str, Any] = {
            "venues": venues,
            "accounts": accounts,
            "burst": {
                "certificates": burst.applied,
                "seconds": round(burst_s, 2),
                "settle_s": round(settle_s, 2),
                "lag_ms": burst_lags,
            },
            "steady": {
                "steps": steps,
                "changes_per_step": changes,
                "lag_ms": engine.lag_ms(),
                "step_s_mean": round(float(np.mean(step_s)), 3),
            },
            "certificate_gas_mean": int(gas.mean()) if gas.size else None,
            "goal_lag_p99_ms": GOAL_LAG_P99_MS,
        }
    _print(result)
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def _print(r: dict[str, Any]) -> None:
    table = Table(title=f"certificate lag: {r['venues']} venues, {r['accounts']} accounts")
    for column in ("phase", "certificates / changes", "lag p50 ms", "lag p99 ms"):
        table.add_column(column, justify="right")
    for phase in ("burst", "steady"):
        lag = r[phase]["lag_ms"] or {"p50": float("nan"), "p99": float("nan")}
        count = r[phase].get("certificates", r[phase].get("changes_per_step"))
        table.add_row(phase, str(count), f"{lag['p50']:,.0f}", f"{lag['p99']:,.0f}")
    console.print(table)
    console.print(
        f"steady step {r['steady']['step_s_mean']:.2f} s on average; submitCertificate "
        f"{r['certificate_gas_mean']:,} gas on average; "
        f"goal: steady p99 ≤ {GOAL_LAG_P99_MS:,.0f} ms"
    )
