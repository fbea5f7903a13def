"""The lab's outputs: report.json (stable keys), PNG plots, a self-contained report.html, the
terminal table, and `runs/latest` pointing at the newest run (swapped atomically)."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display

import matplotlib.pyplot as plt
import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table

from offchain.lab.metrics import margin_ratio_bands
from offchain.lab.runner import GenerationRun

MARKET_COLOURS = {"ETH": "#4c72b0", "BTC": "#dd8452", "SOL": "#55a868"}
GEN_COLOURS = {"gen1": "#c44e52", "gen2": "#8172b3", "gen3": "#2a9d8f"}
PLOT_FILES = {
    "prices": "prices.png",
    "health": "health.png",
    "summary": "summary.png",
    "sweep": "sweep.png",
}


# ---------------------------------------------------------------------------- files
def write_report(run_dir: Path, report: Mapping[str, Any]) -> Path:
    path = run_dir / "report.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def point_latest(runs_dir: Path, run_dir: Path) -> None:
    """`runs/latest` → `run_dir`, replaced in one rename so it always names a complete run."""
    latest = runs_dir / "latest"
    tmp = runs_dir / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name)
    tmp.replace(latest)


# ---------------------------------------------------------------------------- plots
def _hours(run: GenerationRun) -> NDArray[np.float64]:
    return np.asarray(run.times_s) / 3600.0


def plot_prices(runs: Sequence[GenerationRun], metrics: Mapping[str, Any], path: Path) -> None:
    """Normalised price paths, one panel per generation, each liquidation a marker."""
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.9 * len(runs)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, run in zip(axes, runs, strict=True):
        hours = _hours(run)
        symbols = run.symbols
        start = run.prices_e18[0]
        for asset, symbol in symbols.items():
            series = [p[asset] / start[asset] for p in run.prices_e18]
            ax.plot(hours, series, color=MARKET_COLOURS.get(symbol), lw=1.4, label=symbol)
        for asset, symbol in symbols.items():
            liqs = [liq for liq in run.liquidations if run.market_assets[liq.market_id] == asset]
            if not liqs:
                continue
            x = [hours[liq.update] for liq in liqs]
            y = [liq.price_e18 / start[asset] for liq in liqs]
            size = [
                8 + 60 * math.sqrt(liq.closed_size_wad * liq.price_e18 / 1e36 / 1e5) for liq in liqs
            ]
            ax.scatter(
                x,
                y,
                s=size,
                color=MARKET_COLOURS.get(symbol),
                edgecolor="black",
                lw=0.4,
                alpha=0.55,
                zorder=3,
            )
        m = metrics[run.generation.key]
        ax.set_title(
            f"{run.generation.label}: {m['liquidations']} liquidations, "
            f"bad debt ${m['bad_debt']:,.0f}",
            fontsize=10,
        )
        ax.set_ylabel("price / start")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=8)
    axes[-1].set_xlabel("scenario time (hours); markers: liquidations (size ~ notional)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_health(runs: Sequence[GenerationRun], path: Path) -> None:
    """Distribution of equity ÷ MM in force over traders with positions, per generation."""
    fig, axes = plt.subplots(1, len(runs), figsize=(4.2 * len(runs), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, run in zip(axes, runs, strict=True):
        hours = _hours(run)
        bands = margin_ratio_bands(run)
        colour = GEN_COLOURS.get(run.generation.key, "#555555")
        ax.fill_between(
            hours, bands["p10"], bands["p90"], color=colour, alpha=0.15, lw=0, label="10-90%"
        )
        ax.fill_between(
            hours, bands["p25"], bands["p75"], color=colour, alpha=0.3, lw=0, label="25-75%"
        )
        ax.plot(hours, bands["p50"], color=colour, lw=1.6, label="median")
        ax.axhline(1.0, color="black", ls="--", lw=0.8)
        ax.set_ylim(-0.5, 10.0)
        ax.set_title(run.generation.label, fontsize=10)
        ax.set_xlabel("hours")
        ax.grid(alpha=0.3)
        share = ax.twinx()
        share.plot(hours, bands["below"], color="black", lw=0.8, alpha=0.6)
        share.set_ylim(0, 1)
        share.set_yticks([0, 0.5, 1])
        share.tick_params(labelsize=7)
    axes[0].set_ylabel("equity / MM in force (1 = liquidatable)")
    axes[0].legend(loc="upper right", fontsize=7)
    fig.suptitle(
        "account health over time (thin black line, right axis: share below MM)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_summary(metrics: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Bad debt, capital efficiency and liquidations per generation, as bars."""
    keys = list(metrics)
    labels = [metrics[k]["label"].replace(" ", "\n", 2) for k in keys]
    colours = [GEN_COLOURS.get(k, "#555555") for k in keys]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    x = np.arange(len(keys))
    unpaid = [metrics[k]["bad_debt_detail"]["unpaid_at_resolution"] for k in keys]
    latent = [metrics[k]["bad_debt_detail"]["latent_at_end"] for k in keys]
    deficit = [metrics[k]["bad_debt_detail"]["deficit"] for k in keys]
    axes[0].bar(x, unpaid, color=colours, label="unpaid at resolution")
    axes[0].bar(x, latent, bottom=unpaid, color="grey", alpha=0.5, label="latent at end")
    axes[0].scatter(
        x, deficit, marker="_", s=900, color="black", zorder=3, label="of which booked as deficit"
    )
    axes[0].set_title("bad debt (USD)", fontsize=10)
    axes[0].legend(fontsize=7)
    ratio = [100 * metrics[k]["im_to_notional_mean"] for k in keys]
    axes[1].bar(x, ratio, color=colours)
    axes[1].set_title("capital: IM in force / notional, mean (%)", fontsize=10)
    for i, v in enumerate(ratio):
        axes[1].text(i, v, f"{v:.1f}%", ha="center", va="bottom", fontsize=8)
    liqs = [metrics[k]["liquidations"] for k in keys]
    unnecessary = [metrics[k]["unnecessary_liquidations"] for k in keys]
    accounts = [metrics[k]["liquidated_accounts"] for k in keys]
    axes[2].bar(x - 0.25, liqs, width=0.25, color=colours, label="liquidations")
    axes[2].bar(x, accounts, width=0.25, color=colours, alpha=0.55, label="accounts liquidated")
    axes[2].bar(x + 0.25, unnecessary, width=0.25, color="grey", label="unnecessary (accounts)")
    axes[2].set_title("liquidations", fontsize=10)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, labels, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(sweep: Mapping[str, Any], path: Path) -> None:
    """Left: bad debt and liquidations along the swept axis. Right: the mean IM in force as a
    share of notional, which is what a slower engine costs when nobody comes near liquidation
    (a calm market: the left panel is flat at zero there)."""
    points = sweep["points"]
    x = [p["value"] for p in points]
    fig, (ax, capital) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax.plot(x, [p["bad_debt"] for p in points], marker="o", color="#c44e52", label="bad debt")
    ax.set_ylabel("bad debt (USD)")
    other = ax.twinx()
    other.plot(
        x,
        [p["liquidations"] for p in points],
        marker="s",
        color="#4c72b0",
        lw=1,
        label="liquidations",
    )
    other.set_ylabel("liquidations")
    lines = ax.get_lines() + other.get_lines()
    ax.legend(lines, [str(ln.get_label()) for ln in lines], fontsize=8, loc="upper left")
    capital.plot(x, [100 * p["im_to_notional_mean"] for p in points], marker="o", color="#55a868")
    capital.set_ylabel("IM in force / notional, mean (%)")
    for panel in (ax, capital):
        panel.set_xlabel(sweep["axis"])
        panel.set_xscale("log")
        panel.set_xticks(x, [str(v) for v in x])
        panel.grid(alpha=0.3)
    fig.suptitle(sweep["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(
    run_dir: Path,
    runs: Sequence[GenerationRun],
    metrics: Mapping[str, Mapping[str, Any]],
    sweep: Mapping[str, Any] | None,
) -> dict[str, str]:
    plot_prices(runs, metrics, run_dir / PLOT_FILES["prices"])
    plot_health(runs, run_dir / PLOT_FILES["health"])
    plot_summary(metrics, run_dir / PLOT_FILES["summary"])
    files = {k: PLOT_FILES[k] for k in ("prices", "health", "summary")}
    if sweep is not None:
        plot_sweep(sweep, run_dir / PLOT_FILES["sweep"])
        files["sweep"] = PLOT_FILES["sweep"]
    return files


# ---------------------------------------------------------------------------- table and html
ROWS: tuple[tuple[str, str], ...] = (
    ("bad debt $", "bad_debt"),
    ("  deficit $", "bad_debt_detail.deficit"),
    ("liquidations", "liquidations"),
    ("accounts liquidated", "liquidated_accounts"),
    ("unnecessary (accounts)", "unnecessary_liquidations"),
    ("liquidated notional $", "liquidated_notional"),
    ("IM / notional, mean", "im_to_notional_mean"),
    ("IM / notional, median", "im_to_notional_median"),
    ("sync lag p50 ms", "sync_lag_ms.p50"),
    ("sync lag p99 ms", "sync_lag_ms.p99"),
    ("gas: engine", "gas.engine"),
    ("gas: keepers", "gas.keepers"),
    ("funding paid $", "funding.paid"),
    ("funding received $", "funding.received"),
    ("liquidations from funding", "funding.liquidations_from_funding"),
    ("insurance fund end $", "insurance_fund_end"),
    ("  gross debt absorbed $", "bad_debt_detail.debt_absorbed"),
)


def _get(m: Mapping[str, Any], dotted: str) -> Any:
    value: Any = m
    for part in dotted.split("."):
        value = value[part]
    return value


def _fmt(value: Any, key: str) -> str:
    if key.startswith("im_to_notional"):
        return f"{100 * value:.2f}%"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{value:,}"


def print_table(console: Console, report: Mapping[str, Any], path: Path) -> None:
    gens = report["generations"]
    table = Table(
        title=f"marginsync lab: {report['scenario']}, seed {report['seed']}, "
        f"{report['accounts']} traders, {report['steps']} updates"
    )
    table.add_column("metric")
    for key in gens:
        table.add_column(gens[key]["label"], justify="right")
    for label, key in ROWS:
        table.add_row(label, *(_fmt(_get(gens[g], key), key) for g in gens))
    console.print(table)
    if report.get("sweep"):
        sweep = report["sweep"]
        console.print(
            f"{sweep['title']}: "
            + ", ".join(
                f"{p['value']} → ${p['bad_debt']:,.0f}, IM {100 * p['im_to_notional_mean']:.2f}%"
                for p in sweep["points"]
            )
        )
    console.print(f"report: {path}  ({report['timings']['wall_clock_s']} s)")


def _comparison(
    columns: Mapping[str, Mapping[str, Any]],
    rows: Sequence[tuple[str, str]],
    cell: Callable[[Mapping[str, Any], str], str],
) -> tuple[str, str, str]:
    """report.html's side-by-side table (generations or rule sets as columns): its header cells,
    its rows (`cell` formats one figure) and the list of each column's rules."""
    head = "".join(f"<th>{html.escape(columns[c]['label'])}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{html.escape(cell(columns[c], key))}</td>" for c in columns)
        + "</tr>"
        for label, key in rows
    )
    rules = "".join(
        f"<li><b>{html.escape(columns[c]['label'])}</b>: {html.escape(columns[c]['rules'])}</li>"
        for c in columns
    )
    return head, body, rules


def _page(report: Mapping[str, Any], heading: str, setting: str, body: str) -> str:
    """A self-contained report.html: the scenario's heading and setting, then `body`."""
    time = f"every {report['interval_s']:.0f} s of scenario time."
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>marginsync lab {html.escape(report["run_id"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
td:first-child{{text-align:left}}img{{max-width:100%}}</style></head><body>
<h1>marginsync lab: {html.escape(report["scenario"])}{heading}</h1>
<p>{html.escape(report["scenario_description"])}. Seed {report["seed"]}, {report["accounts"]}
traders, {report["steps"]} price updates {time}{setting}</p>
{body}
</body></html>
"""


def write_html(run_dir: Path, report: Mapping[str, Any]) -> Path:
    head, rows, rules = _comparison(
        report["generations"], ROWS, lambda figures, key: _fmt(_get(figures, key), key)
    )
    images = ""
    for name, file in report["plots"].items():
        data = base64.b64encode((run_dir / file).read_bytes()).decode()
        images += (
            f'<h2>{html.escape(name)}</h2><img alt="{name}" src="data:image/png;base64,{data}">'
        )
    sweep = ""
    if report.get("sweep"):
        s = report["sweep"]
        points = "".join(
            f"<tr><td>{p['value']}</td><td>{p['bad_debt']:,.0f}</td><td>{p['liquidations']}</td>"
            f"<td>{100 * p['im_to_notional_mean']:.2f}%</td></tr>"
            for p in s["points"]
        )
        sweep = (
            f"<h2>{html.escape(s['title'])}</h2><table><tr><th>{html.escape(s['axis'])}</th>"
            f"<th>bad debt $</th><th>liquidations</th><th>IM / notional</th></tr>{points}</table>"
        )
    body = f"""<ul>{rules}</ul>
<table><tr><th>metric</th>{head}</tr>{rows}</table>
<p>Definitions: see docs/lab.md. Bad debt = what insolvent accounts left unpaid: debt absorbed
by the insurance fund (covered + deficit) less the collateral it seized, at market value, plus
negative equity still open at the end.</p>
{sweep}{images}"""
    page = _page(
        report,
        "",
        "\nSame path and population for every generation, each on its own Anvil chain.",
        body,
    )
    path = run_dir / "report.html"
    path.write_text(page)
    return path


# ---------------------------------------------------------------------------- venues
RULE_SET_COLOURS = {"isolated": "#c44e52", "linked": "#2a9d8f"}
VENUE_PLOT_FILE = "venues.png"
VENUE_ROWS: tuple[tuple[str, str], ...] = (
    ("bad debt $", "bad_debt"),
    ("  booked by the venues $", "bad_debt_detail.booked_by_venues"),
    ("  claims paid from pledges $", "bad_debt_detail.claims_paid"),
    ("liquidations", "liquidations"),
    ("unnecessary liquidations", "unnecessary_liquidations"),
    ("collateral required $", "collateral_required.total"),
    ("  hedged across venues $", "collateral_required.hedged"),
    ("  concentrated across venues $", "collateral_required.concentrated"),
    ("  single-venue $", "collateral_required.single"),
    ("collateral posted $", "collateral_posted.total"),
    ("disagreement ticks", "disagreement_ticks"),
    ("  while certified everywhere", "disagreement_ticks_certified"),
    ("account-ticks certified everywhere", "certified_ticks"),
    ("certificate lag p50 ms", "certificate_lag_ms.p50"),
    ("certificate lag p99 ms", "certificate_lag_ms.p99"),
    ("gas: committee", "gas.committee"),
    ("gas: keepers", "gas.keepers"),
    ("gas: Gen 3 engines", "gas.engine"),
)


def _venue_cell(figures: Mapping[str, Any], key: str) -> str:
    value: Any = figures
    for part in key.split("."):
        if value is None:
            return "–"
        value = value.get(part)
    return "–" if value is None else _fmt(value, key)


def write_venues_plot(run_dir: Path, report: Mapping[str, Any]) -> str:
    """Bars per rule set: bad debt, liquidations (and unnecessary ones), collateral required by
    kind of book, disagreement ticks."""
    sets = report["venues"]
    keys = list(sets)
    colours = [RULE_SET_COLOURS.get(k, "#555555") for k in keys]
    x = np.arange(len(keys))
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8))
    net = [sets[k]["bad_debt"] for k in keys]
    booked = [sets[k]["bad_debt_detail"]["booked_by_venues"] for k in keys]
    axes[0].bar(x, net, color=colours, label="net")
    covered = [b - n for b, n in zip(booked, net, strict=True)]
    axes[0].bar(x, covered, bottom=net, color="grey", alpha=0.5, label="paid by pledges (X4)")
    axes[0].set_ylim(bottom=0, top=max(1.0, *booked) * 1.1)
    axes[0].set_title("bad debt booked by the venues (USD)", fontsize=10)
    axes[0].legend(fontsize=7)
    axes[1].bar(x - 0.2, [sets[k]["liquidations"] for k in keys], 0.4, color=colours, label="all")
    axes[1].bar(
        x + 0.2,
        [sets[k]["unnecessary_liquidations"] for k in keys],
        0.4,
        color="grey",
        label="whole book healthy",
    )
    axes[1].set_title("liquidations (legs)", fontsize=10)
    axes[1].legend(fontsize=7)
    kinds = ("hedged", "concentrated", "single")
    width = 0.8 / len(keys)
    for i, k in enumerate(keys):
        required = sets[k]["collateral_required"]
        axes[2].bar(
            np.arange(len(kinds)) + (i - (len(keys) - 1) / 2) * width,
            [required.get(kind, 0.0) / 1e3 for kind in kinds],
            width,
            color=colours[i],
            label=sets[k]["label"],
        )
    axes[2].set_xticks(np.arange(len(kinds)), [f"{kind}\nbooks" for kind in kinds], fontsize=8)
    axes[2].set_title("collateral required ($k)", fontsize=10)
    axes[2].legend(fontsize=7)
    axes[3].bar(x - 0.2, [sets[k]["disagreement_ticks"] for k in keys], 0.4, color=colours)
    axes[3].bar(
        x + 0.2,
        [sets[k]["disagreement_ticks_certified"] for k in keys],
        0.4,
        color="grey",
        label="certificates in force everywhere",
    )
    axes[3].set_title("disagreement (account-ticks)", fontsize=10)
    axes[3].legend(fontsize=7)
    for ax in (axes[0], axes[1], axes[3]):
        ax.set_xticks(x, [sets[k]["label"] for k in keys], fontsize=8)
    for ax in axes:
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"{report['venue_count']} venues, {report['scenario']}: isolated vs linked", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(run_dir / VENUE_PLOT_FILE, dpi=110)
    plt.close(fig)
    return VENUE_PLOT_FILE


def print_venues_table(console: Console, report: Mapping[str, Any], path: Path) -> None:
    sets = report["venues"]
    table = Table(
        title=f"marginsync lab --venues {report['venue_count']}: {report['scenario']}, seed "
        f"{report['seed']}, {report['accounts']} traders, {report['steps']} updates"
    )
    table.add_column("metric")
    for key in sets:
        table.add_column(sets[key]["label"], justify="right")
    for label, key in VENUE_ROWS:
        table.add_row(label, *(_venue_cell(sets[s], key) for s in sets))
    console.print(table)
    console.print(f"report: {path}  ({report['timings']['wall_clock_s']} s)")


def venues_html_section(run_dir: Path, report: Mapping[str, Any]) -> str:
    """The venues section of report.html: rules, table, definitions, plot."""
    head, rows, rules = _comparison(report["venues"], VENUE_ROWS, _venue_cell)
    data = base64.b64encode((run_dir / report["plots"]["venues"]).read_bytes()).decode()
    population = ", ".join(f"{n} {kind}" for kind, n in report["population"].items())
    return f"""<h2>Across venues</h2>
<p>{report["venue_count"]} venues (chain ids {", ".join(map(str, report["chain_ids"]))}), each a
full deployment on its own Anvil, driven in lockstep over the same path; population: {population}
(books hedged across venues, concentrated across venues, single-venue).</p>
<ul>{rules}</ul>
<table><tr><th>metric</th>{head}</tr>{rows}</table>
<p>Unnecessary: a venue liquidated a leg while the whole book met the global maintenance
requirement. Disagreement: account-ticks at which the venues where the account holds positions
disagreed on whether it is healthy. Collateral required: the least collateral keeping every
venue at or above its requirement in force at every update; isolated venues count only their own
deposit (Σ over venues of each venue's worst shortfall), linked venues count pledged collateral,
which the committee moves (the worst shortfall of the sum). See docs/lab.md.</p>
<img alt="venues" src="data:image/png;base64,{data}">
"""


def write_venues_html(run_dir: Path, report: Mapping[str, Any]) -> Path:
    page = _page(report, " across venues", "", venues_html_section(run_dir, report))
    path = run_dir / "report.html"
    path.write_text(page)
    return path
