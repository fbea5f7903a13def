"""The simulation lab: small runs on real Anvil chains whose reports must hold together, repeat
exactly, and agree with the chains they came from; and the pure parts (population, paths, Gen 3's
risk configuration)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from offchain.errors import ConfigError
from offchain.lab import SCENARIOS, run_lab
from offchain.lab.generations import risk_config
from offchain.lab.population import MAX_GROSS_LEVERAGE, trader_population
from offchain.lab.scenarios import CALM_SIGMA_ANNUAL, lab_path
from offchain.settings import Settings

START_USD = {"ETH": 3_000.0, "BTC": 60_000.0, "SOL": 150.0}
GEN_KEYS = {
    "bad_debt",
    "liquidations",
    "liquidated_notional",
    "unnecessary_liquidations",
    "im_to_notional_mean",
    "sync_lag_ms",
    "gas",
    "insurance_fund_end",
}
# Wall-clock figures: the only ones allowed to differ between two runs with the same seed.
TIMING_KEYS = {"run_id", "timings", "sync_lag_ms", "keeper_lag_ms"}


def _lab(runs_dir: Path, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "scenario": "crash",
        "seed": 3,
        "traders": 12,
        "sweep": None,
        "steps": 10,
    }
    args.update(overrides)
    path = run_lab(settings=Settings(runs_dir=runs_dir), console=Console(quiet=True), **args)
    report: dict[str, Any] = json.loads(path.read_text())
    report["_path"] = str(path)
    return report


@pytest.fixture(scope="module")
def crash_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _lab(tmp_path_factory.mktemp("lab-runs"))


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


# ---------------------------------------------------------------------------- end to end
def test_lab__small_crash__report_has_the_stable_keys_and_files(
    crash_report: dict[str, Any],
) -> None:
    assert {"scenario", "seed", "accounts", "generations", "plots"} <= crash_report.keys()
    assert (crash_report["scenario"], crash_report["seed"], crash_report["accounts"]) == (
        "crash",
        3,
        12,
    )
    assert set(crash_report["generations"]) == {"gen1", "gen2", "gen3"}
    for figures in crash_report["generations"].values():
        assert figures.keys() >= GEN_KEYS
        assert set(figures["sync_lag_ms"]) == {"p50", "p99"}
        assert set(figures["gas"]) == {"engine", "keepers"}
    run_dir = Path(crash_report["_path"]).parent
    for name in crash_report["plots"].values():
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(crash_report["plots"])
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()


def test_lab__small_crash__figures_agree_with_each_other_and_with_the_chain(
    crash_report: dict[str, Any],
) -> None:
    for key, g in crash_report["generations"].items():
        checks = g["checks"]
        assert g["liquidations"] == checks["onchain_liquidate_events"], key
        assert checks["health_mismatches"] == 0, key  # the lab's S1 replica equals the contract
        assert g["bad_debt_detail"]["deficit"] == checks["onchain_deficit"], key
        assert g["liquidations"] >= g["liquidated_accounts"] >= g["unnecessary_liquidations"] >= 0
        assert g["bad_debt"] >= 0.0
        assert 0.0 < g["im_to_notional_mean"] <= 1.0
        assert 0.0 < g["im_to_notional_median"] <= 1.0
        assert g["sync_lag_ms"]["p99"] >= g["sync_lag_ms"]["p50"] >= 0.0
        detail = g["bad_debt_detail"]
        assert detail["debt_absorbed"] == pytest.approx(
            detail["covered_by_insurance"] + detail["deficit_at_resolution"], abs=0.02
        )
        assert detail["deficit"] >= detail["deficit_at_resolution"]
        assert (g["liquidated_notional"] > 0) == (g["liquidations"] > 0)
    gens = crash_report["generations"]
    # Static generations enforce exactly the static IM rate; only Gen 3 posts attestations.
    assert gens["gen1"]["im_to_notional_mean"] == pytest.approx(0.10, abs=1e-6)
    assert gens["gen2"]["im_to_notional_mean"] == pytest.approx(0.10, abs=1e-6)
    assert gens["gen1"]["gas"]["engine"] == gens["gen2"]["gas"]["engine"] == 0
    assert gens["gen3"]["gas"]["engine"] > 0
    assert gens["gen3"]["attestations"]["accounts_updated"] > 0
    # A 43% crash liquidates someone under every rule set.
    assert all(g["liquidations"] > 0 for g in gens.values())
    # Gen 1's keeper checks every 10th update, so updates wait 0 to 9 intervals for it.
    interval_ms = crash_report["interval_s"] * 1000
    assert gens["gen1"]["sync_lag_ms"]["p50"] >= 4 * interval_ms
    assert gens["gen1"]["sync_lag_ms"]["p99"] >= 8.5 * interval_ms
    assert gens["gen2"]["sync_lag_ms"]["p99"] < interval_ms


def test_lab__same_seed_twice__same_report_except_wall_clock_timings(
    crash_report: dict[str, Any], tmp_path: Path
) -> None:
    again = _lab(tmp_path)
    first = {k: v for k, v in crash_report.items() if k != "_path"}
    second = {k: v for k, v in again.items() if k != "_path"}
    assert _without_timings(first) == _without_timings(second)


def test_lab__keeper_latency_sweep__reuses_generations_and_reports_every_point(
    tmp_path: Path,
) -> None:
    report = _lab(tmp_path, traders=6, steps=6, seed=5, sweep="keeper-latency")
    sweep = report["sweep"]
    assert [p["value"] for p in sweep["points"]] == [1, 2, 5, 10, 20]
    by_value = {p["value"]: p for p in sweep["points"]}
    assert by_value[1]["run"] == "gen2"
    assert by_value[10]["run"] == "gen1"
    assert by_value[1]["bad_debt"] == report["generations"]["gen2"]["bad_debt"]
    # A keeper that never checks within the path liquidates nobody.
    assert by_value[20]["liquidations"] == 0
    assert "sweep" in report["plots"]


def test_lab__crowded_long__funding_accrues_and_the_lab_agrees_with_the_chain(
    tmp_path: Path,
) -> None:
    """The venue prints over the index, so a premium stands and longs pay (I26): every generation
    pays funding, paid covers received (the protocol keeps the dust), and the lab's health view,
    funding due counted, equals `accountHealth` to the wei."""
    report = _lab(tmp_path, scenario="crowded-long", traders=8, steps=4, seed=3)
    for key, g in report["generations"].items():
        funding = g["funding"]
        assert funding["paid"] > 0.0, key
        assert funding["received"] > 0.0, key
        assert funding["paid"] >= funding["received"], key
        assert 0 <= funding["liquidations_from_funding"] <= g["liquidations"], key
        assert g["checks"]["health_mismatches"] == 0, key
        assert g["liquidations"] == g["checks"]["onchain_liquidate_events"], key
        assert g["gas_detail"]["venue_trade"] > 0, key


def test_run_lab__unknown_scenario__raises_config_error_naming_the_choices(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match="calm"):
        _lab(tmp_path, scenario="tulips")


# ---------------------------------------------------------------------------- pure parts
def test_trader_population__same_seed__same_traders_within_the_static_leverage_cap() -> None:
    plans = trader_population(11, 300)
    assert plans == trader_population(11, 300)
    assert trader_population(11, 20) == plans[:20]  # more traders never redraw the first ones
    assert all(p.gross_leverage <= MAX_GROSS_LEVERAGE for p in plans)
    kinds = {p.kind for p in plans}
    assert kinds == {"directional", "hedged"}
    assert any(p.collateral == "WETH" for p in plans)
    assert {leg.side for p in plans for leg in p.legs} == {1, -1}


def test_lab_path__funding_scenarios__skew_the_population_and_print_inside_the_band() -> None:
    crowded = lab_path("crowded-long", seed=1, steps=8, start_usd=START_USD)
    blowout = lab_path("basis-blowout", seed=1, steps=8, start_usd=START_USD)
    assert crowded.basis_bps[0] == blowout.basis_bps[0] == 0  # positions open at the index
    assert min(crowded.basis_bps[1:]) > 0  # longs pay all along
    assert min(blowout.basis_bps) < 0 == blowout.basis_bps[-1]  # shorts pay, then it closes
    assert max(abs(b) for b in crowded.basis_bps + blowout.basis_bps) < 200  # the 2% band
    longs = [p.legs[0].side > 0 for p in trader_population(4, 200, crowded.long_probability)]
    assert sum(longs) > 0.8 * len(longs)
    assert lab_path("calm", seed=1, steps=8, start_usd=START_USD).basis_bps == (0,) * 9


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_lab_path__every_named_scenario__has_the_steps_asked_and_a_warmup_ending_at_start(
    name: str,
) -> None:
    lp = lab_path(name, seed=1, steps=12, start_usd=START_USD)
    assert lp.steps == 12
    for symbol, start in START_USD.items():
        assert lp.path.prices_usd[symbol][0] == pytest.approx(start)
        assert lp.warmup.prices_usd[symbol][-1] == pytest.approx(start)
    assert lp.warmup.ts_s[-1] == pytest.approx(0.0)


@pytest.mark.parametrize(("name", "horizon_s"), [("calm", 3_600.0), ("crash", 2 * 2_160.0)])
def test_risk_config__gen3_engine__volatility_margin_calibrated_to_the_warmup(
    name: str, horizon_s: float
) -> None:
    lp = lab_path(name, seed=2, steps=40, start_usd=START_USD)
    config = risk_config(list(START_USD), lp.interval_s, lp.warmup)
    for market in config.markets:
        assert market.model == "volatility"
        # At least two updates to get out (close factor 50%), never under the default hour.
        assert market.volatility.liquidation_horizon_s == pytest.approx(horizon_s)
        # 60 calm updates estimate the warm-up's σ within sampling error (≈ 1/√120 ≈ 9%).
        sigma = CALM_SIGMA_ANNUAL[market.underlying]
        assert market.volatility.initial_sigma_annual == pytest.approx(sigma, rel=0.35)
