"""Scenario generators: statistics of long seeded paths, crash magnitudes, correlation,
determinism, CSV alignment, and the legacy `random_walk`/`crash` helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from offchain.errors import ConfigError
from offchain.feeds import (
    CRASH_DROPS,
    CRASH_TEMPLATES,
    YEAR_S,
    CrashTemplate,
    crash,
    crash_scenario,
    garch,
    gbm,
    jump_diffusion,
    random_walk,
    scenario_from_rows,
)
from offchain.feeds.scenarios import FloatArray

DAY_S = 86_400.0
TARGET_CORRELATION = [[1.0, 0.7, 0.3], [0.7, 1.0, 0.5], [0.3, 0.5, 1.0]]


def _lag1_autocorrelation(x: FloatArray) -> float:
    d = x - x.mean()
    return float((d[1:] * d[:-1]).sum() / (d * d).sum())


def test_gbm__long_daily_path__log_return_mean_and_vol_match_parameters() -> None:
    # 100k daily steps ≈ 274 years: the mean's standard error is σ/√T ≈ 0.036 a year.
    s = gbm({"ETH": 3000.0}, 100_000, interval_s=DAY_S, sigma_annual=0.6, mu_annual=0.2, seed=7)
    r = s.log_returns()[:, 0]
    dt = DAY_S / YEAR_S
    assert r.std(ddof=1) / math.sqrt(dt) == pytest.approx(0.6, rel=0.01)
    assert r.mean() / dt == pytest.approx(0.2 - 0.5 * 0.6**2, abs=0.12)


def test_gbm__correlation_matrix__returns_reproduce_it() -> None:
    s = gbm(
        {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0},
        40_000,
        sigma_annual={"BTC": 0.6, "ETH": 0.8, "SOL": 1.1},
        correlation=TARGET_CORRELATION,
        seed=11,
    )
    realised = np.corrcoef(s.log_returns().T)
    assert np.abs(realised - np.array(TARGET_CORRELATION)).max() < 0.02
    sigma_realised = s.log_returns().std(axis=0) / math.sqrt(60.0 / YEAR_S)
    assert sigma_realised == pytest.approx([0.6, 0.8, 1.1], rel=0.02)


def test_scenarios__same_seed__same_path_and_other_seed__different_path() -> None:
    args = ({"BTC": 60_000.0, "ETH": 3_000.0}, 500)
    for model in (gbm, garch, jump_diffusion):
        a, b, c = model(*args, seed=3), model(*args, seed=3), model(*args, seed=4)
        assert np.array_equal(a.matrix(), b.matrix()), model.__name__
        assert np.array_equal(a.ts_s, b.ts_s)
        assert not np.array_equal(a.matrix(), c.matrix()), model.__name__
    crash_a = crash_scenario("2020-03-12", {"ETH": 3000.0}, seed=5)
    crash_b = crash_scenario("2020-03-12", {"ETH": 3000.0}, seed=5)
    assert np.array_equal(crash_a.matrix(), crash_b.matrix())


def test_scenario__grid__starts_at_start_price_and_time_with_fixed_interval() -> None:
    s = gbm({"ETH": 3000.0}, 10, interval_s=15.0, start_ts_s=1_700_000_000.0)
    assert s.steps == 10
    assert s.prices_usd["ETH"][0] == 3000.0
    assert s.ts_s[0] == 1_700_000_000.0
    assert np.all(np.diff(s.ts_s) == 15.0)


def test_garch__long_path__clusters_volatility_around_the_long_run_level() -> None:
    g = garch({"ETH": 3000.0}, 30_000, sigma_annual=0.8, alpha=0.1, beta=0.85, seed=2)
    calm = gbm({"ETH": 3000.0}, 30_000, sigma_annual=0.8, seed=2)
    rg, rc = g.log_returns()[:, 0], calm.log_returns()[:, 0]
    assert rg.std() / math.sqrt(60.0 / YEAR_S) == pytest.approx(0.8, rel=0.1)
    # Squared returns are autocorrelated under GARCH (big moves follow big moves), not under GBM.
    assert _lag1_autocorrelation(rg**2) > 0.08
    assert abs(_lag1_autocorrelation(rc**2)) < 0.02


def test_garch__explosive_parameters__raise_config_error() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        garch({"ETH": 3000.0}, 10, alpha=0.2, beta=0.85)


def test_jump_diffusion__jumps__show_as_fat_tails_at_the_poisson_rate() -> None:
    # 10-minute steps for ~95 days at 50 jumps a year: ≈ 13 expected jumps of ≈ −10% each,
    # far outside the diffusion's 0.3·√(600 s / year) ≈ 0.13% per step.
    steps = 5 * 2**12
    s = jump_diffusion(
        {"ETH": 3000.0},
        steps,
        interval_s=600.0,
        sigma_annual=0.3,
        jumps_per_year=50.0,
        jump_mean_log=-0.10,
        jump_std_log=0.01,
        seed=3,
    )
    r = s.log_returns()[:, 0]
    expected = 50.0 * steps * 600.0 / YEAR_S
    big_drops = int((r < -0.05).sum())
    assert big_drops == s.params["n_jumps"]
    assert abs(big_drops - expected) < 4 * math.sqrt(expected)
    excess_kurtosis = ((r - r.mean()) ** 4).mean() / r.var() ** 2 - 3.0
    assert excess_kurtosis > 10


@pytest.mark.parametrize("name", sorted(CRASH_TEMPLATES))
def test_crash_template__any_seed__trough_is_exactly_the_stated_drop(name: str) -> None:
    template = CRASH_TEMPLATES[name]
    for seed in range(3):
        s = crash_scenario(name, {"ETH": 3000.0, "BTC": 60_000.0}, seed=seed)
        for sym in s.symbols:
            p = s.prices_usd[sym]
            assert p.min() / p[0] - 1.0 == pytest.approx(-template.drop, abs=1e-12)
            trough_at = float(np.argmin(p)) / s.steps
            assert abs(trough_at - template.trough_fraction) < 0.05
        assert s.ts_s[-1] - s.ts_s[0] == pytest.approx(template.duration_s)


def test_crash_templates__magnitudes__are_the_referenced_historical_moves() -> None:
    # ETH ≈ −43% on 2020-03-12; the other two are this project's stylised depths.
    assert CRASH_DROPS == {"2020-03-12": 0.43, "2022-11": 0.25, "2025-10-10": 0.30}
    assert CRASH_TEMPLATES["2020-03-12"].duration_s == DAY_S


def test_crash_scenario__depth_scale__scales_each_symbols_drop() -> None:
    s = crash_scenario(
        "2020-03-12", {"ETH": 3000.0, "BTC": 60_000.0}, depth_scale={"ETH": 1.0, "BTC": 0.5}
    )
    assert s.prices_usd["BTC"].min() / 60_000.0 == pytest.approx(1 - 0.215, abs=1e-12)
    assert s.prices_usd["ETH"].min() / 3000.0 == pytest.approx(1 - 0.43, abs=1e-12)


def test_crash_scenario__unknown_name__raises_config_error_listing_templates() -> None:
    with pytest.raises(ConfigError, match="2020-03-12"):
        crash_scenario("1929-10-29", {"ETH": 3000.0})


@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 0.5], [0.4, 1.0]],  # not symmetric
        [[1.0, 1.2], [1.2, 1.0]],  # not positive definite
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],  # wrong size
    ],
)
def test_gbm__invalid_correlation__raises_config_error(matrix: list[list[float]]) -> None:
    with pytest.raises(ConfigError, match="correlation"):
        gbm({"BTC": 1.0, "ETH": 1.0}, 10, correlation=matrix)


def test_scenario_from_rows__unsorted_mixed_symbols__aligned_as_of_each_time() -> None:
    rows = [
        (10.0, "ETH", 3000.0),
        (5.0, "ETH", 2990.0),  # before BTC's first print: seeds ETH's first value only
        (12.0, "BTC", 60_000.0),
        (15.0, "ETH", 3010.0),
        (15.0, "ETH", 3011.0),  # same time: the later row wins
        (20.0, "BTC", 60_500.0),
    ]
    s = scenario_from_rows(rows, name="rec")
    assert s.ts_s.tolist() == [12.0, 15.0, 20.0]
    assert s.prices_usd["ETH"].tolist() == [3000.0, 3011.0, 3011.0]
    assert s.prices_usd["BTC"].tolist() == [60_000.0, 60_000.0, 60_500.0]


def test_random_walk_and_crash__legacy_helpers__keep_their_contract() -> None:
    walk = random_walk(3000.0, 50, seed=3)
    assert walk.shape == (50,)
    assert np.array_equal(walk, random_walk(3000.0, 50, seed=3))
    path = crash(3000.0, 3, drop=0.2, seed=0)
    assert path[-1] == pytest.approx(2400.0, abs=1e-9)  # ends exactly at the trough
    with pytest.raises(ValueError, match="drop"):
        crash(3000.0, 3, drop=1.5)


@pytest.mark.parametrize("name", sorted(CRASH_TEMPLATES))
@pytest.mark.parametrize("steps", [1, 2, 3, 4, 6])
def test_crash_template__coarse_grid__still_starts_at_start_and_reaches_the_trough(
    name: str, steps: int
) -> None:
    template = CRASH_TEMPLATES[name]
    s = crash_scenario(name, {"ETH": 3000.0}, interval_s=template.duration_s / steps)
    p = s.prices_usd["ETH"]
    assert s.steps == steps
    assert p[0] == 3000.0
    assert p.min() / 3000.0 == pytest.approx(1.0 - template.drop, abs=1e-12)


def test_crash_template__malformed_shape__raises_config_error() -> None:
    with pytest.raises(ConfigError, match="malformed"):
        CrashTemplate("bad", "no trough", 0.3, 3600.0, ((0.0, 0.0), (1.0, 0.5)))
    custom = CrashTemplate("v", "a V", 0.5, 3600.0, ((0.0, 0.0), (0.5, 1.0), (1.0, 0.0)))
    p = crash_scenario(custom, {"ETH": 100.0}, noise_sigma_annual=0.0).prices_usd["ETH"]
    assert p.min() == pytest.approx(50.0)
    assert p[-1] == pytest.approx(100.0)
