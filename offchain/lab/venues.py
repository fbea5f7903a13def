"""`marginsync lab --venues N`: one scenario, one population whose books are split across N
venues, two rule sets side by side, one report.

    run_venues("crash", None, 3, seed=7, traders=60, steps=40, settings=Settings(), console=c)

Each rule set runs N venues, each a full marginsync deployment with Gen 3 (the product's engine
and `AttestationVerifier`) on its own Anvil with its own chain id (`VENUE_CHAIN_IDS`), driven in
lockstep over the same seeded path: per update every venue's market moves (`runner.Run.move`),
then, linked, the link's engine certifies, then the lab records what every venue's keeper is
about to decide on (the *decision point*), then every venue's keeper, backstop and insolvencies
act (`runner.Run.act`). The rule sets:

* **isolated**: each venue alone (today's Gen 3 per venue); a trader's collateral for a venue is
  deposited there;
* **linked**: the same venues joined by VenueLinks and a BLS committee, and the product's link
  engine certifying every trader's whole book on every venue (X1-X7; `venues_link`); the same
  total collateral per trader, `PLEDGED_SHARE` of a multi-venue trader's collateral pledged, with
  a rebalance cap.

Figures and their definitions: `venues_metrics`. The report is written as `lab` writes its own
(`runs/<run-id>/`: report.json under `venues` → `isolated` / `linked`, venues.png, report.html)
and the table printed at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console

from offchain.errors import ConfigError
from offchain.lab import venues_metrics as vm
from offchain.lab.generations import GEN3
from offchain.lab.metrics import generation_metrics
from offchain.lab.report import (
    point_latest,
    print_venues_table,
    write_report,
    write_venues_html,
    write_venues_plot,
)
from offchain.lab.runner import MAX_TRADERS, GenerationRun, Run, lab_chain, run_on
from offchain.lab.scenarios import SCENARIOS, LabPath, lab_path
from offchain.lab.venues_link import (
    LinkDriver,
    claims_paid_usd,
    link_chains,
    pledge,
    pledged_wad_to,
)
from offchain.lab.venues_population import (
    PLEDGED_SHARE,
    VenueTrader,
    pledges,
    venue_plans,
    venue_population,
)
from offchain.link.mirror import LinkMirror
from offchain.models import WAD, SystemSpec
from offchain.risk.crossvenue import Book, CrossVenueParams, WadArray, global_view
from offchain.settings import Settings
from offchain.sync.keys import LOCAL_VENUE_CHAIN_IDS

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
DEFAULT_VENUES = 3
MAX_VENUES = 8  # one Anvil per venue and rule set: what one machine runs (the CLI says 2..8)
VENUE_CHAIN_IDS = LOCAL_VENUE_CHAIN_IDS[:MAX_VENUES]


@dataclass(frozen=True)
class RuleSet:
    key: str
    label: str
    rules: str
    linked: bool


ISOLATED = RuleSet(
    "isolated",
    "isolated",
    "each venue alone: Gen 3 (the product engine's attested margin) on every venue, a trader's "
    "collateral for a venue deposited there",
    linked=False,
)
LINKED = RuleSet(
    "linked",
    "linked",
    "VenueLink over every venue's Gen 3 verifier, one committee certifying each trader's whole "
    f"book (X1-X7); {PLEDGED_SHARE:.0%} of a multi-venue trader's collateral pledged (X3), "
    "rebalancing within a cap (X5)",
    linked=True,
)
RULE_SETS = (ISOLATED, LINKED)


@dataclass
class VenuesRun:
    """What one rule set produced. Arrays are [point, trader, venue] at decision points (point
    0: after opening), USD; `sizes` adds a market axis (signed, units of the underlying, markets
    by symbol)."""

    rule_set: RuleSet
    venue_runs: list[GenerationRun]
    equity: FloatArray
    mm: FloatArray  # the maintenance requirement in force
    whole_book_healthy: BoolArray  # [point, trader], by the global model (X1)
    certified: BoolArray  # a link certificate in force
    sizes: FloatArray
    deposits_usd: FloatArray  # [trader, venue]
    pledged_usd: FloatArray  # [trader]: pledged in total (linked)
    claims_paid_usd: FloatArray  # [venue]: paid to its insurance fund from pledges (X4)
    liquidated: list[tuple[int, int, int]]  # (decision point, trader, venue) per Liquidate event
    certificate_lag_ms: list[float] = field(default_factory=list)
    committee_gas: int = 0
    wall_s: float = 0.0


def run_venues(
    scenario: str,
    sweep: str | None,
    venues: int,
    *,
    seed: int,
    traders: int,
    steps: int,
    settings: Settings,
    console: Console,
) -> Path:
    """Runs every rule set and returns the path of report.json. (`sweep` is the lab command's
    option, which the venues lab does not take.)"""
    if sweep is not None:
        raise ConfigError(f"--sweep {sweep} with --venues", "run the sweep without --venues")
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}", f"use one of {', '.join(SCENARIOS)}")
    if not 2 <= venues <= MAX_VENUES:
        raise ConfigError(f"{venues} venues", f"use between 2 and {MAX_VENUES}")
    if not 1 <= traders <= MAX_TRADERS:
        raise ConfigError(f"{traders} traders", f"use between 1 and {MAX_TRADERS}")
    started = time.perf_counter()
    start_usd = {a.symbol: a.price_usd for a in SystemSpec().assets}
    path = lab_path(scenario, seed=seed, steps=steps, start_usd=start_usd)
    population = venue_population(seed, traders, venues, path.long_probability)
    run_id = datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + f"-lab-venues{venues}-{scenario}-s{seed}"
    run_dir = settings.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]marginsync lab --venues {venues}[/] {run_id}: {SCENARIOS[scenario]}; "
        f"{traders} traders, {steps} updates, rule sets: " + ", ".join(r.key for r in RULE_SETS)
    )
    runs: dict[str, VenuesRun] = {}
    for rule_set in RULE_SETS:

        def progress(line: str, key: str = rule_set.key) -> None:
            console.print(f"  {key}: {line}", soft_wrap=True)

        runs[rule_set.key] = run_rule_set(
            rule_set, path, population, venues, settings=settings, on_progress=progress
        )
    figures = {key: venues_figures(run, population) for key, run in runs.items()}
    report: dict[str, Any] = {
        "run_id": run_id,
        "scenario": scenario,
        "scenario_description": SCENARIOS[scenario],
        "seed": seed,
        "accounts": traders,
        "steps": steps,
        "interval_s": path.interval_s,
        "venue_count": venues,
        "chain_ids": list(VENUE_CHAIN_IDS[:venues]),
        "population": {
            kind: sum(t.kind == kind for t in population)
            for kind in ("hedged", "concentrated", "single")
        },
        "pledged_share": PLEDGED_SHARE,
        "venues": figures,
        "rules": {r.key: r.rules for r in RULE_SETS},
        "timings": {
            "wall_clock_s": round(time.perf_counter() - started, 1),
            "runs_s": {k: round(r.wall_s, 1) for k, r in runs.items()},
        },
    }
    report["plots"] = {"venues": write_venues_plot(run_dir, report)}
    report_path = write_report(run_dir, report)
    write_venues_html(run_dir, report)
    point_latest(settings.runs_dir, run_dir)
    print_venues_table(console, report, report_path)
    return report_path


def run_rule_set(
    rule_set: RuleSet,
    path: LabPath,
    population: list[VenueTrader],
    venues: int,
    *,
    settings: Settings,
    on_progress: Callable[[str], None],
) -> VenuesRun:
    """One rule set: `venues` chains in lockstep over `path`."""
    started = time.perf_counter()
    with ExitStack() as stack:
        chains = [
            stack.enter_context(
                lab_chain(GEN3, len(population), settings=settings, chain_id=VENUE_CHAIN_IDS[v])
            )
            for v in range(venues)
        ]
        if rule_set.linked:
            chains = link_chains(chains)
        runs = [
            run_on(c, GEN3, path, venue_plans(population, v, linked=rule_set.linked))
            for v, c in enumerate(chains)
        ]
        for run in runs:
            stack.callback(run.close)
        ids = ", ".join(str(c.deployment.chain_id) for c in chains)
        on_progress(f"{venues} venues deployed (chain ids {ids})" + ", linked" * rule_set.linked)
        for run in runs:
            run.open(started)
        driver = None
        if rule_set.linked:
            pledge(runs, pledges(population))
            driver = LinkDriver(runs)
            driver.step()
        recorder = _Recorder(runs, lambda: pledged_wad_to(runs))
        recorder.record(0)
        on_progress("positions opened" + ", pledged and certified" * rule_set.linked)
        for k in range(1, path.steps + 1):
            ticks = [run.move(k) for run in runs]
            if driver is not None:
                driver.step()
            recorder.record(k)
            for run, tick_at in zip(runs, ticks, strict=True):
                run.act(k, tick_at)
            liquidations = sum(len(run.liquidations) for run in runs)
            on_progress(
                f"update {k}/{path.steps}: {liquidations} liquidations "
                f"({time.perf_counter() - started:.0f} s)"
            )
        claims = claims_paid_usd(runs)
        venue_runs = [run.finish(started) for run in runs]
    given = pledges(population) if rule_set.linked else []
    column = {a: i for i, a in enumerate(runs[0].traders)}
    liquidated = [
        (liq.update, column[liq.account], v)
        for v, run in enumerate(venue_runs)
        for liq in run.liquidations
    ]
    return VenuesRun(
        rule_set=rule_set,
        venue_runs=venue_runs,
        equity=np.array(recorder.equity, dtype=np.float64) / WAD,
        mm=np.array(recorder.mm, dtype=np.float64) / WAD,
        whole_book_healthy=np.array(recorder.whole_book_healthy),
        certified=np.array(recorder.certified),
        sizes=np.array(recorder.sizes),
        deposits_usd=np.array(
            [
                [p.collateral_usd for p in venue_plans(population, v, linked=rule_set.linked)]
                for v in range(venues)
            ]
        ).T,
        pledged_usd=np.array(
            [sum(p.amount_usd for p in given if p.trader == a) for a in range(len(population))]
        ),
        liquidated=liquidated,
        claims_paid_usd=np.array(claims),
        certificate_lag_ms=driver.lags_ms if driver else [],
        committee_gas=driver.gas if driver else 0,
        wall_s=time.perf_counter() - started,
    )


class _Recorder:
    """Every venue's view of every trader at each decision point, from the venues' mirrors, and
    the whole book's verdict by the global model (`crossvenue.global_view`) at those prices."""

    def __init__(self, runs: list[Run], pledged: Callable[[], WadArray]) -> None:
        self.runs = runs
        self.pledged = pledged
        # The link's common markets, by symbol: market m is the same underlying on every venue.
        self.markets = sorted(runs[0].d.markets, key=lambda m: m.symbol)
        self.params = CrossVenueParams.standard(len(self.markets))
        self.equity: list[WadArray] = []
        self.mm: list[WadArray] = []
        self.whole_book_healthy: list[BoolArray] = []
        self.certified: list[BoolArray] = []
        self.sizes: list[FloatArray] = []

    def record(self, k: int) -> None:
        traders = self.runs[0].traders
        shape = (len(traders), len(self.runs))
        equity, static_im, static_mm, mm = (np.zeros(shape, dtype=object) for _ in range(4))
        sizes = np.zeros((*shape, len(self.markets)))
        certified = np.zeros(shape, dtype=np.bool_)
        for v, run in enumerate(self.runs):
            prices, mirror = run.points[k], run.ledger.mirror
            ids = [run.d.market(m.symbol).id for m in self.markets]
            for a, account in enumerate(traders):
                static = mirror.health(account, prices, now=run.now_s)
                equity[a, v] = static.equity_wad
                static_im[a, v] = static.initial_margin_wad
                static_mm[a, v] = static.maintenance_margin_wad
                mm[a, v] = run.requirement(account, static, prices)[1]
                certified[a, v] = _certified(run, account, prices)
                positions = mirror.accounts[account].positions
                sizes[a, v] = [positions.get(i, 0) / WAD for i in ids]
        prices_usd = np.array(
            [
                [run.points[k][run.d.market(m.symbol).oracle_asset] / WAD for m in self.markets]
                for run in self.runs
            ]
        )
        book = Book(sizes, equity, static_im, static_mm, self.pledged())
        self.whole_book_healthy.append(global_view(book, prices_usd, self.params).healthy)
        self.equity.append(equity)
        self.mm.append(mm)
        self.sizes.append(sizes)
        self.certified.append(certified)


def _certified(run: Run, account: str, prices: dict[int, int]) -> bool:
    """Whether the venue's link certificate for `account` is in force (False: not linked)."""
    mirror = run.ledger.mirror
    link = mirror.link
    if not isinstance(link, LinkMirror):
        return False
    nonce, mask = mirror.accounts[account].nonce, mirror.market_asset_mask(account)
    return link.in_force(account, nonce, mask, prices, run.now_s, link.key_epoch) is not None


# ---------------------------------------------------------------------------- figures
def venues_figures(run: VenuesRun, population: list[VenueTrader]) -> dict[str, Any]:
    """One rule set's figures (definitions: `venues_metrics`)."""
    per_venue = [generation_metrics(r) for r in run.venue_runs]
    open_ = np.abs(run.sizes).sum(axis=3) > 0.0
    decisions = slice(1, None)
    kinds = [t.kind for t in population]
    certified = vm.everywhere_certified(run.certified[decisions], open_[decisions])
    required = vm.collateral_required(
        run.equity - run.deposits_usd[None, :, :], run.mm, linked=run.rule_set.linked
    )
    gas = [m["gas_detail"] for m in per_venue]
    return {
        "label": run.rule_set.label,
        "rules": run.rule_set.rules,
        "bad_debt": round(
            sum(
                max(0.0, m["bad_debt"] - claim)
                for m, claim in zip(per_venue, run.claims_paid_usd, strict=True)
            ),
            2,
        ),
        "bad_debt_detail": {
            "booked_by_venues": vm.summed(per_venue, "bad_debt"),
            "claims_paid": round(float(run.claims_paid_usd.sum()), 2),
            **{
                key: round(sum(m["bad_debt_detail"][key] for m in per_venue), 2)
                for key in ("unpaid_at_resolution", "latent_at_end", "insolvent_accounts")
            },
        },
        "liquidations": int(vm.summed(per_venue, "liquidations")),
        "unnecessary_liquidations": vm.unnecessary_liquidations(
            [(t, a) for t, a, _ in run.liquidated], run.whole_book_healthy
        ),
        "collateral_required": vm.by_kind(required, kinds),
        "collateral_posted": vm.by_kind(run.deposits_usd.sum(axis=1) + run.pledged_usd, kinds),
        "disagreement_ticks": vm.disagreement_ticks(
            run.equity[decisions], run.mm[decisions], open_[decisions]
        ),
        "disagreement_ticks_certified": vm.disagreement_ticks(
            run.equity[decisions], run.mm[decisions], open_[decisions], certified
        ),
        "certified_ticks": int(certified.sum()),
        "certificate_lag_ms": vm.percentiles(run.certificate_lag_ms),
        "gas": {
            "committee": run.committee_gas,
            "keepers": int(sum(g.get("liquidate", 0) for g in gas)),
            "engine": int(sum(g.get("engine_submit", 0) for g in gas)),
        },
        "per_venue": [
            {
                "chain_id": VENUE_CHAIN_IDS[v],
                **{k: m[k] for k in ("bad_debt", "liquidations", "liquidated_accounts")},
            }
            for v, m in enumerate(per_venue)
        ],
        "checks": {
            "onchain_liquidate_events": sum(
                m["checks"]["onchain_liquidate_events"] for m in per_venue
            ),
            "health_mismatches": sum(m["checks"]["health_mismatches"] for m in per_venue),
        },
    }
