"""Scenario portfolio margin: the grid, the vol-shock law, revaluation, offsets, properties."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.risk import RiskEngine, VolShockLaw, black76_price, build_scenario_grid
from offchain.risk.portfolio import VolMode, vol_shock_multipliers

EngineFactory = Callable[..., RiskEngine]
NOW_S = 1_750_000_000.0
OPTION_IDS = [f"BTC-30D-{k}-{cp}" for k in (54000, 60000, 66000) for cp in ("C", "P")]


def test_default_grid__derive_v2_layout__has_33_scenarios() -> None:
    grid = build_scenario_grid()
    core = grid.dampening == 1.0
    assert grid.n_scenarios == 33
    assert np.sum(grid.is_skew) == 2
    assert np.sum(~core) == 8
    core_spots = np.unique(np.round(grid.spot_multiplier[core & ~grid.is_skew], 6))
    assert core_spots == pytest.approx(1.0 + 0.045 * np.arange(-4, 5))
    extremes = np.isin(np.round(grid.spot_multiplier, 6), [0.82, 1.18])
    assert np.all(grid.vol_mode[extremes] == VolMode.UP)
    # Dampened tails cost a linear position 15% of notional: less than the ±18% core.
    tails = ~core
    assert np.abs(grid.spot_multiplier[tails] - 1.0) * grid.dampening[tails] == pytest.approx(0.15)


def test_vol_shock_law__reference_tenors__match_the_published_formula() -> None:
    days = np.array([0.5, 1.0, 30.0, 365.0])
    up, down = vol_shock_multipliers(days / 365.0, VolShockLaw())
    expected_scale = np.array([30.0**0.3, 30.0**0.3, 1.0, (30.0 / 365.0) ** 0.13])
    assert up == pytest.approx(1.0 + 0.6 * expected_scale)
    assert down == pytest.approx(1.0 - 0.3 * expected_scale)


def test_portfolio_margin__long_perp__is_18pct_move_plus_3pct_contingency(
    make_engine: EngineFactory, spot_usd: np.ndarray
) -> None:
    result = make_engine({0: {"BTC-PERP": 2.0}}).tick(spot_usd, NOW_S)
    notional = 2.0 * 60_000.0
    assert result.mm_usd[0] == pytest.approx(0.21 * notional)
    assert result.im_usd[0] == pytest.approx(1.25 * 0.21 * notional)


def _naive_option_mm(size: float, strike: float, is_call: bool, vol: float) -> float:
    """The same law, one scenario at a time with scalar Black-76: the test's own reference."""
    grid, law = build_scenario_grid(), VolShockLaw()
    t = 30.0 / 365.0
    up, down = (float(x[0]) for x in vol_shock_multipliers(np.array([t]), law))
    now = float(black76_price(60_000.0, strike, t, vol, is_call))
    worst = 0.0
    for spot_mult, mode, damp in zip(
        grid.spot_multiplier, grid.vol_mode, grid.dampening, strict=True
    ):
        if mode >= VolMode.SKEW_LINEAR:
            k = math.log(strike / 60_000.0)
            k = abs(k) if mode == VolMode.SKEW_ABS else k
            k_star = max(law.skew_kstar_per_sqrt_year * math.sqrt(t), law.skew_min_kstar)
            mult = 1.0 + max(-law.skew_cap, min(law.skew_cap, k * law.skew_cap / k_star))
            pnl = -abs(
                size * (float(black76_price(60_000.0, strike, t, vol * mult, is_call)) - now)
            )
        else:
            shocked = {VolMode.UP: max(vol * up, 0.4), VolMode.NONE: vol, VolMode.DOWN: vol * down}
            value = float(black76_price(60_000.0 * spot_mult, strike, t, shocked[mode], is_call))
            pnl = size * (value - now) * damp
        worst = min(worst, pnl)
    return -worst + (0.02 * 60_000.0 * -size if size < 0 else 0.0)


@pytest.mark.parametrize(
    ("iid", "size"),
    [("BTC-30D-54000-P", -3.0), ("BTC-30D-66000-C", -1.5), ("BTC-30D-60000-C", 4.0)],
)
def test_portfolio_margin__single_option__equals_a_scenario_by_scenario_reference(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray, iid: str, size: float
) -> None:
    strike = float(iid.split("-")[2])
    result = make_engine({0: {iid: size}}).tick(spot_usd, NOW_S, option_vols)
    expected = _naive_option_mm(size, strike, iid.endswith("C"), 0.6)
    assert result.mm_usd[0] == pytest.approx(expected, rel=1e-10)


def test_portfolio_margin__long_btc_short_eth__needs_less_than_alone_but_at_least_the_floor(
    make_engine: EngineFactory, spot_usd: np.ndarray
) -> None:
    book = {
        0: {"BTC-PERP": 10.0, "ETH-PERP": -200.0},
        1: {"BTC-PERP": 10.0},
        2: {"ETH-PERP": -200.0},
    }
    mm = make_engine(book).tick(spot_usd, NOW_S).mm_usd
    standalone = mm[1] + mm[2]
    # ρ = 0.8: sqrt((L+L)² − 2·1.8·L²) = L·sqrt(0.4) ≈ 0.632·L < 2L, floored at 0.3 × 2L.
    assert mm[0] == pytest.approx(max(math.sqrt(0.4) * mm[1], 0.3 * standalone))
    assert 0.3 * standalone <= mm[0] < standalone


def test_portfolio_margin__long_btc_long_eth__gets_no_diversification_credit(
    make_engine: EngineFactory, spot_usd: np.ndarray
) -> None:
    book = {0: {"BTC-PERP": 10.0, "ETH-PERP": 200.0}, 1: {"BTC-PERP": 10.0}, 2: {"ETH-PERP": 200.0}}
    mm = make_engine(book).tick(spot_usd, NOW_S).mm_usd
    assert mm[0] == pytest.approx(mm[1] + mm[2])


def test_portfolio_margin__delta_hedged_straddle__needs_less_than_standard_margin(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    straddle = {"BTC-30D-60000-C": -10.0, "BTC-30D-60000-P": -10.0}
    unhedged = make_engine({0: straddle}).tick(spot_usd, NOW_S, option_vols).greeks
    assert unhedged is not None
    hedged_book = {**straddle, "BTC-PERP": -float(unhedged.delta_units[0, 0])}
    result = make_engine({0: hedged_book}).tick(spot_usd, NOW_S, option_vols)
    assert result.greeks is not None
    assert result.greeks.delta_units[0, 0] == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < result.mm_usd[0] < result.standard_mm_usd[0]


def test_greeks__per_account_and_underlying__sum_black76_greeks_of_positions(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    from offchain.risk import black76_greeks

    book = {0: {"BTC-PERP": -2.0, "BTC-30D-66000-C": 3.0, "BTC-30D-54000-P": -1.0, "ETH-PERP": 7.0}}
    greeks = make_engine(book).tick(spot_usd, NOW_S, option_vols).greeks
    assert greeks is not None
    t = 30.0 / 365.0
    g = black76_greeks(60_000.0, [66_000.0, 54_000.0], t, 0.6, [True, False])
    sizes = np.array([3.0, -1.0])
    assert greeks.delta_units[0] == pytest.approx([-2.0 + sizes @ g.delta, 7.0])
    assert greeks.gamma_per_usd[0] == pytest.approx([sizes @ g.gamma, 0.0])
    assert greeks.vega_usd_per_vol[0] == pytest.approx([sizes @ g.vega, 0.0])
    assert greeks.theta_usd_per_day[0] == pytest.approx([sizes @ g.theta_per_year / 365.0, 0.0])
    assert greeks.delta_exposure_usd(spot_usd)[0, 1] == pytest.approx(7.0 * 3_000.0)


_sizes = st.floats(-20.0, 20.0).map(lambda x: round(x, 3))
_book = st.dictionaries(st.sampled_from(["BTC-PERP", "ETH-PERP", *OPTION_IDS]), _sizes, max_size=6)


def _mm(engine: RiskEngine, spot: np.ndarray, vols: np.ndarray) -> np.ndarray:
    return engine.tick(spot, NOW_S, vols).mm_usd


@settings(max_examples=60, deadline=None)
@given(a=_book, b=_book)
def test_portfolio_margin__hedged_portfolio__never_needs_more_than_the_sum_of_its_parts(
    make_engine: EngineFactory,
    spot_usd: np.ndarray,
    option_vols: np.ndarray,
    a: dict[str, float],
    b: dict[str, float],
) -> None:
    # Within one underlying (BTC) the scenario loss is subadditive; across underlyings the
    # combined requirement never exceeds the sum of the per-underlying requirements.
    a_btc = {k: v for k, v in a.items() if k != "ETH-PERP"}
    b_btc = {k: v for k, v in b.items() if k != "ETH-PERP"}
    both = {k: a_btc.get(k, 0.0) + b_btc.get(k, 0.0) for k in a_btc | b_btc}
    eth_only = {"ETH-PERP": a.get("ETH-PERP", 0.0)}
    book = {0: a_btc, 1: b_btc, 2: both, 3: a, 4: eth_only}
    mm = _mm(make_engine(book, n_accounts=5), spot_usd, option_vols)
    assert mm[2] <= mm[0] + mm[1] + 1e-7 * (mm[0] + mm[1] + 1.0)
    assert mm[3] <= mm[0] + mm[4] + 1e-7 * (mm[0] + mm[4] + 1.0)


@settings(max_examples=40, deadline=None)
@given(book=_book, k=st.floats(0.0, 10.0))
def test_portfolio_margin__scaled_book__scales_the_requirement(
    make_engine: EngineFactory,
    spot_usd: np.ndarray,
    option_vols: np.ndarray,
    book: dict[str, float],
    k: float,
) -> None:
    scaled = {iid: k * size for iid, size in book.items()}
    mm = _mm(make_engine({0: book, 1: scaled}), spot_usd, option_vols)
    assert mm[1] == pytest.approx(k * mm[0], rel=1e-9, abs=1e-6)
    if k >= 1.0:
        assert mm[1] >= mm[0] - 1e-9
