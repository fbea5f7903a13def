"""`marginsync lab`: one scenario, three generations of margin rules, one report.

    run_lab(scenario="crash", seed=7, traders=200, sweep=None, settings=Settings(), console=c)

runs Gen 1, Gen 2 and Gen 3 one after another, each on its own Anvil, over the same seeded path
and population, then writes `runs/<run-id>/` (report.json, PNGs, report.html) and points
`runs/latest` at it. A sweep adds runs along one axis:

* `keeper-latency`: Gen 2's rules with the keeper checking every 1, 2, 5, 10, 20 updates;
* `sync-interval`: Gen 3 with the engine passing (and posting) every 1, 2, 5, 10 updates.

Sweep points with the same rules as a generation reuse its run (keeper every 1 is Gen 2, every
10 is Gen 1; posting every update is Gen 3) rather than repeat it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from offchain.errors import ConfigError
from offchain.lab.generations import GEN2, GEN3, GENERATIONS, Generation
from offchain.lab.metrics import generation_metrics
from offchain.lab.population import TraderPlan, trader_population
from offchain.lab.report import point_latest, print_table, write_html, write_plots, write_report
from offchain.lab.runner import MAX_TRADERS, GenerationRun, run_generation
from offchain.lab.scenarios import SCENARIOS, lab_path
from offchain.models import SystemSpec
from offchain.settings import Settings

DEFAULT_STEPS = 40
SWEEPS: dict[str, dict[str, Any]] = {
    "keeper-latency": {
        "values": (1, 2, 5, 10, 20),
        "axis": "keeper checks every n updates (Gen 2 rules)",
        "title": "bad debt vs keeper latency",
    },
    "sync-interval": {
        "values": (1, 2, 5, 10),
        "axis": "engine posts every n updates (Gen 3 rules)",
        "title": "bad debt and capital vs sync interval",
    },
}


def _sweep_generations(sweep: str) -> list[tuple[int, Generation]]:
    values = SWEEPS[sweep]["values"]
    if sweep == "keeper-latency":
        return [
            (
                n,
                replace(
                    GEN2,
                    key=f"gen2-keeper-every-{n}",
                    label=f"Gen 2, keeper every {n}",
                    rules=f"static margin; keeper checks every {n} updates",
                    keeper_every=n,
                ),
            )
            for n in values
        ]
    return [
        (
            n,
            replace(
                GEN3,
                key=f"gen3-post-every-{n}",
                label=f"Gen 3, posts every {n}",
                rules=f"synchronised margin; engine posts every {n} updates",
                attest_every=n,
            ),
        )
        for n in values
    ]


def _same_rules(a: Generation, b: Generation) -> bool:
    return (a.keeper_every, a.attested, a.attest_every) == (
        b.keeper_every,
        b.attested,
        b.attest_every,
    )


def run_lab(
    *,
    scenario: str,
    seed: int,
    traders: int,
    sweep: str | None,
    settings: Settings,
    console: Console,
    steps: int = DEFAULT_STEPS,
) -> Path:
    """Runs the lab and returns the path of report.json."""
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}", f"use one of {', '.join(SCENARIOS)}")
    if sweep is not None and sweep not in SWEEPS:
        raise ConfigError(f"unknown sweep {sweep!r}", f"use one of {', '.join(SWEEPS)}")
    if not 1 <= traders <= MAX_TRADERS:
        raise ConfigError(f"{traders} traders", f"use between 1 and {MAX_TRADERS}")
    started = time.perf_counter()
    start_usd = {a.symbol: a.price_usd for a in SystemSpec().assets}
    path = lab_path(scenario, seed=seed, steps=steps, start_usd=start_usd)
    plans = trader_population(seed, traders, path.long_probability)
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + f"-lab-{scenario}-s{seed}"
    run_dir = settings.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)

    sweep_points = _sweep_generations(sweep) if sweep else []
    extra = [g for _, g in sweep_points if not any(_same_rules(g, b) for b in GENERATIONS)]
    plan = [*GENERATIONS, *extra]
    console.print(
        f"[bold]marginsync lab[/] {run_id}: {SCENARIOS[scenario]}; {traders} traders, "
        f"{steps} updates, {len(plan)} runs"
    )
    runs: dict[str, GenerationRun] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        for generation in plan:
            task = bar.add_task(f"{generation.label}: starting", total=steps + 2)

            def progress(message: str, task: Any = task, label: str = generation.label) -> None:
                bar.update(task, advance=1, description=f"{label}: {message}")

            runs[generation.key] = run_generation(
                generation, path, plans, settings=settings, on_progress=progress
            )
            bar.update(task, completed=steps + 2)

    metrics = {g.key: generation_metrics(runs[g.key]) for g in GENERATIONS}
    sweep_report = None
    if sweep:
        points = []
        for value, generation in sweep_points:
            match = next((b.key for b in GENERATIONS if _same_rules(generation, b)), generation.key)
            m = metrics[match] if match in metrics else generation_metrics(runs[match])
            points.append(
                {
                    "value": value,
                    "run": match,
                    "bad_debt": m["bad_debt"],
                    "liquidations": m["liquidations"],
                    "unnecessary_liquidations": m["unnecessary_liquidations"],
                    "im_to_notional_mean": m["im_to_notional_mean"],
                    "gas_engine": m["gas"]["engine"],
                    "sync_lag_ms": m["sync_lag_ms"],
                }
            )
        sweep_report = {
            "kind": sweep,
            **{k: SWEEPS[sweep][k] for k in ("axis", "title")},
            "points": points,
        }
    plots = write_plots(run_dir, [runs[g.key] for g in GENERATIONS], metrics, sweep_report)
    report: dict[str, Any] = {
        "run_id": run_id,
        "scenario": scenario,
        "scenario_description": SCENARIOS[scenario],
        "seed": seed,
        "accounts": traders,
        "steps": steps,
        "interval_s": path.interval_s,
        "population": _population_summary(plans),
        "generations": metrics,
        # The demo's headline figures by generation, at the top level where `make demo`'s first
        # report kept them (the full figures are under `generations`).
        **{
            key: {g: metrics[g][field] for g in metrics}
            for key, field in (
                ("liquidations", "liquidations"),
                ("bad_debt", "bad_debt"),
                ("insurance_fund", "insurance_fund_end"),
                ("gas", "gas"),
            )
        },
        "sweep": sweep_report,
        "plots": plots,
        "price_paths_usd": {s: [float(p) for p in v] for s, v in path.path.prices_usd.items()},
        "timings": {
            "wall_clock_s": round(time.perf_counter() - started, 1),
            "runs_s": {k: round(r.wall_s, 1) for k, r in runs.items()},
        },
    }
    report_path = write_report(run_dir, report)
    write_html(run_dir, report)
    point_latest(settings.runs_dir, run_dir)
    print_table(console, report, report_path)
    return report_path


def _population_summary(plans: list[TraderPlan]) -> dict[str, Any]:
    legs = [leg for p in plans for leg in p.legs]
    return {
        "directional": sum(p.kind == "directional" for p in plans),
        "hedged_pairs": sum(p.kind == "hedged" for p in plans),
        "posting_weth": sum(p.collateral == "WETH" for p in plans),
        "long_legs": sum(leg.side > 0 for leg in legs),
        "short_legs": sum(leg.side < 0 for leg in legs),
        "gross_leverage_mean": round(sum(p.gross_leverage for p in plans) / len(plans), 2),
        "collateral_usd_total": round(sum(p.collateral_usd for p in plans), 2),
    }
