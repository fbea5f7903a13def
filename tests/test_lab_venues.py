"""The venues lab: a small population split across three venues runs every rule set end to end on
real Anvil chains (one per venue, distinct chain ids) and its report holds together and agrees
with the chains; each metric on a hand-made case; the population's split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from offchain.errors import ConfigError
from offchain.lab.population import MAX_GROSS_LEVERAGE
from offchain.lab.venues import RULE_SETS, VENUE_CHAIN_IDS, run_venues
from offchain.lab.venues_metrics import (
    by_kind,
    collateral_required,
    disagreement_ticks,
    everywhere_certified,
    percentiles,
    unnecessary_liquidations,
)
from offchain.lab.venues_population import (
    PLEDGED_SHARE,
    pledges,
    venue_plans,
    venue_population,
)
from offchain.settings import Settings

FIGURE_KEYS = {
    "bad_debt",
    "liquidations",
    "unnecessary_liquidations",
    "collateral_required",
    "disagreement_ticks",
    "certificate_lag_ms",
    "gas",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = run_venues(
        "crash",
        None,
        3,
        seed=3,
        traders=8,
        steps=6,
        settings=Settings(runs_dir=tmp_path_factory.mktemp("venues-runs")),
        console=Console(quiet=True),
    )
    out: dict[str, Any] = json.loads(path.read_text())
    out["_path"] = str(path)
    return out


# ---------------------------------------------------------------------------- end to end
def test_venues_lab__small_crash__every_rule_set_reports_every_key(report: dict[str, Any]) -> None:
    assert set(report["venues"]) == {r.key for r in RULE_SETS}
    assert report["chain_ids"] == list(VENUE_CHAIN_IDS[:3])
    assert len(set(report["chain_ids"])) == 3
    for figures in report["venues"].values():
        assert figures.keys() >= FIGURE_KEYS
        assert set(figures["gas"]) >= {"committee", "keepers"}
        assert set(figures["collateral_required"]) >= {"total", "hedged", "concentrated", "single"}
    run_dir = Path(report["_path"]).parent
    assert (run_dir / report["plots"]["venues"]).stat().st_size > 0
    assert "Across venues" in (run_dir / "report.html").read_text()


def test_venues_lab__small_crash__figures_agree_with_the_chains(report: dict[str, Any]) -> None:
    for figures in report["venues"].values():
        # Liquidations counted as they happened == Liquidate events read afresh from every chain.
        assert figures["liquidations"] == figures["checks"]["onchain_liquidate_events"]
        assert figures["liquidations"] == sum(v["liquidations"] for v in figures["per_venue"])
        assert figures["checks"]["health_mismatches"] == 0
        assert 0 <= figures["unnecessary_liquidations"] <= figures["liquidations"]
        required = figures["collateral_required"]
        assert required["total"] == pytest.approx(
            required["hedged"] + required["concentrated"] + required["single"], abs=0.05
        )
        assert (figures["gas"]["keepers"] > 0) == (figures["liquidations"] > 0)
        detail = figures["bad_debt_detail"]
        assert detail["booked_by_venues"] == pytest.approx(
            detail["unpaid_at_resolution"] + detail["latent_at_end"], abs=0.05
        )
        # Net of claims (per venue, to the cent), never below zero, never above what was booked.
        booked, claims = detail["booked_by_venues"], detail["claims_paid"]
        assert max(0.0, booked - claims) - 0.01 <= figures["bad_debt"] <= booked


def test_venues_lab__isolated__has_no_certificates(report: dict[str, Any]) -> None:
    isolated = report["venues"]["isolated"]
    assert isolated["certificate_lag_ms"] is None
    assert isolated["gas"]["committee"] == 0
    assert isolated["certified_ticks"] == isolated["disagreement_ticks_certified"] == 0


def test_venues_lab__linked__certificates_in_force_and_the_same_collateral(
    report: dict[str, Any],
) -> None:
    isolated, linked = report["venues"]["isolated"], report["venues"]["linked"]
    # X3: the same total collateral per trader, part of it pledged instead of deposited.
    assert linked["collateral_posted"] == isolated["collateral_posted"]
    assert linked["certified_ticks"] > 0
    assert linked["gas"]["committee"] > 0
    assert set(linked["certificate_lag_ms"]) == {"p50", "p99"}
    assert linked["certificate_lag_ms"]["p50"] <= linked["certificate_lag_ms"]["p99"]
    assert linked["disagreement_ticks_certified"] <= linked["disagreement_ticks"]
    # X4: this crash books losses on a venue that pledges to it cover in part, paid once.
    assert linked["bad_debt_detail"]["claims_paid"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("crash", "sync-interval", 3), "--sweep sync-interval with --venues"),
        (("crash", None, 1), "1 venues"),
        (("nowhere", None, 3), "unknown scenario 'nowhere'"),
    ],
)
def test_venues_lab__bad_input__one_line_error_before_any_chain(
    args: tuple[str, str | None, int], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=message):
        run_venues(
            *args,
            seed=1,
            traders=4,
            steps=4,
            settings=Settings(runs_dir=tmp_path),
            console=Console(quiet=True),
        )


# ---------------------------------------------------------------------------- metrics
def test_disagreement__one_venue_under_its_mm_while_the_other_is_healthy__one_tick() -> None:
    # [point, trader, venue]: trader 0 open on both venues, under MM on venue 1 at point 1 only;
    # trader 1 under on its only open venue (nothing to disagree with).
    equity = np.array([[[10.0, 10.0], [1.0, 50.0]], [[10.0, 4.0], [1.0, 50.0]]])
    mm = np.full_like(equity, 5.0)
    open_ = np.array([[[True, True], [True, False]], [[True, True], [True, False]]])
    assert disagreement_ticks(equity, mm, open_) == 1
    # Both venues under: they agree.
    assert disagreement_ticks(np.full_like(equity, 1.0), mm, open_) == 0
    # Counted only where a certificate is in force on every open venue, when asked.
    certified = np.array([[[True, True], [True, False]], [[True, False], [True, False]]])
    where = everywhere_certified(certified, open_)
    assert where.tolist() == [[True, True], [False, True]]
    assert disagreement_ticks(equity, mm, open_, where) == 0


def test_unnecessary__a_leg_liquidated_while_the_whole_book_is_healthy__counts() -> None:
    # X1: "healthy" is the whole book's verdict, not the venue's.
    # [point, trader]: trader 0 is healthy as a whole at point 1, trader 1 is not.
    healthy = np.array([[True, True], [True, False]])
    assert unnecessary_liquidations([(1, 0), (1, 1)], healthy) == 1
    assert unnecessary_liquidations([], healthy) == 0


def test_collateral_required__hedged_book__isolated_funds_each_leg_linked_the_net() -> None:
    # One trader, long on venue 0 and short on venue 1: at point 1 venue 0 lost 30, venue 1 won
    # 30; MM 5 on each venue throughout.
    pnl = np.array([[[0.0, 0.0]], [[-30.0, 30.0]]])
    mm = np.full_like(pnl, 5.0)
    # Isolated: venue 0 needs 35 at point 1, venue 1 needs 5 at point 0.
    assert collateral_required(pnl, mm, linked=False).tolist() == [40.0]
    # Linked: the sum needs 10 at every point.
    assert collateral_required(pnl, mm, linked=True).tolist() == [10.0]
    # Surplus everywhere: nothing required, never negative.
    assert collateral_required(pnl + 100.0, mm, linked=True).tolist() == [0.0]


def test_by_kind_and_percentiles() -> None:
    assert by_kind(np.array([1.0, 2.0, 4.0]), ["a", "b", "a"]) == {
        "total": 7.0,
        "a": 5.0,
        "b": 2.0,
    }
    assert percentiles([]) is None
    assert percentiles([1.0, 3.0]) == {"p50": 2.0, "p99": 3.0}


# ---------------------------------------------------------------------------- population
def test_population__books_split_across_venues__same_total_in_both_rule_sets() -> None:
    traders = venue_population(11, 60, 3)
    assert {t.kind for t in traders} == {"hedged", "concentrated", "single"}
    for t in traders:
        if t.kind == "hedged":
            (a, b) = t.legs
            assert a.venue != b.venue
            assert (a.market, a.side) == (b.market, -b.side)
        if t.kind == "concentrated":
            assert len(t.venues) >= 2
            assert len({(leg.market, leg.side) for leg in t.legs}) == 1
    given = {i: sum(p.amount_usd for p in pledges(traders) if p.trader == i) for i in range(60)}
    for v in range(3):
        isolated = venue_plans(traders, v, linked=False)
        linked = venue_plans(traders, v, linked=True)
        for t, i_plan, l_plan in zip(traders, isolated, linked, strict=True):
            # The same notional on the venue, opened under the static IM in both rule sets.
            for i_leg, l_leg in zip(i_plan.legs, l_plan.legs, strict=True):
                assert i_leg.leverage * i_plan.collateral_usd == pytest.approx(
                    l_leg.leverage * l_plan.collateral_usd
                )
                assert l_leg.leverage <= MAX_GROSS_LEVERAGE
            if len(t.venues) < 2:
                assert l_plan == i_plan
    for i, t in enumerate(traders):
        linked_total = sum(venue_plans(traders, v, linked=True)[i].collateral_usd for v in range(3))
        assert linked_total + given[i] == pytest.approx(sum(t.collateral_usd))
        if len(t.venues) > 1:
            assert given[i] == pytest.approx(PLEDGED_SHARE * sum(t.collateral_usd))
    assert all(p.from_venue != p.to_venue for p in pledges(traders))
