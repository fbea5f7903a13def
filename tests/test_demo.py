"""`make demo`'s job, small: the report exists, has its keys, and its figures agree."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from offchain.demo import run_demo
from offchain.settings import Settings


def test_demo__small_crash__writes_consistent_report_and_latest_link(tmp_path: Path) -> None:
    settings = Settings(runs_dir=tmp_path / "runs")
    path = run_demo(seed=3, steps=6, traders=6, settings=settings, console=Console(quiet=True))
    report = json.loads(path.read_text())
    assert {"accounts", "liquidations", "bad_debt", "insurance_fund", "gas"} <= report.keys()
    assert (settings.runs_dir / "latest").resolve() == path.parent.resolve()
    assert len(report["accounts"]) == 6
    assert sum(a["liquidations"] for a in report["accounts"]) == len(report["liquidations"])
    bd = report["bad_debt"]
    assert abs(bd["debt_usd"] - bd["covered_by_insurance_usd"] - bd["deficit_usd"]) < 1e-6
    assert len(report["liquidations"]) > 0  # a crash this deep liquidates someone
    assert report["gas"]["liquidate"]["max"] < 300_000
    # A liquidated long ends with no more equity than it started with.
    for a in report["accounts"]:
        if a["liquidations"] and a["side"] > 0:
            assert a["equity_end_usd"] < a["equity_start_usd"]
