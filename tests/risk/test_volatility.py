"""EWMA volatility and the volatility margin model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.risk import (
    EwmaState,
    Instruments,
    MarketConfig,
    Positions,
    RiskConfig,
    RiskEngine,
    RiskInputError,
    VolatilityMarginConfig,
    ewma_update,
    volatility_mm_rate,
)

DAY_S = 86_400.0
YEAR_S = 365.0 * DAY_S
NO_FAST = np.array([math.inf])


def test_ewma__daily_ticks__matches_hand_computed_riskmetrics_series() -> None:
    # σ²ₙ = 0.94 σ²ₙ₋₁ + 0.06 rₙ², by hand from σ₀ = 2% per day and prices 100, 102, 99, 99.
    daily_var = 0.02**2
    state = EwmaState.initial(np.array([0.02 * math.sqrt(365.0)]), np.array([False]))
    expected = daily_var
    for day, (prev, price) in enumerate(
        [(None, 100.0), (100.0, 102.0), (102.0, 99.0), (99.0, 99.0)]
    ):
        state = ewma_update(state, np.array([price]), day * DAY_S, np.array([0.94]), NO_FAST)
        if prev is not None:
            expected = 0.94 * expected + 0.06 * math.log(price / prev) ** 2
        assert state.var_slow_per_s[0] * DAY_S == pytest.approx(expected, rel=1e-12)
    # The same series worked by hand (r₁² = 3.9214e-4, r₂² = 8.9120e-4, r₃ = 0):
    # 4.0000e-4 → 3.9953e-4 → 4.2903e-4 → 4.0329e-4.
    assert state.var_slow_per_s[0] * DAY_S == pytest.approx(4.0329e-4, rel=1e-4)


@pytest.mark.parametrize("ticks_per_day", [1, 24, 1440])
def test_ewma__any_tick_interval__decays_by_lambda_per_day(ticks_per_day: int) -> None:
    state = EwmaState.initial(np.array([0.8]), np.array([False]))
    start = state.var_slow_per_s[0]
    for k in range(ticks_per_day + 1):
        t = k * DAY_S / ticks_per_day
        state = ewma_update(state, np.array([100.0]), t, np.array([0.94]), NO_FAST)
    assert state.var_slow_per_s[0] == pytest.approx(0.94 * start, rel=1e-12)


def test_ewma__tick_earlier_than_the_last__is_rejected_naming_now_s() -> None:
    state = EwmaState.initial(np.array([0.8]))
    state = ewma_update(state, np.array([100.0]), 10.0, np.array([0.94]), np.array([300.0]))
    with pytest.raises(RiskInputError, match="now_s"):
        ewma_update(state, np.array([100.0]), 5.0, np.array([0.94]), np.array([300.0]))


def _perp_engine(vol_config: VolatilityMarginConfig, size: float = 1.0) -> RiskEngine:
    instruments = Instruments.build(["BTC"], ["BTC-PERP"], ["perp"], ["BTC"])
    positions = Positions.build(1, [0], [0], [size], 1)
    config = RiskConfig(
        markets=(MarketConfig(underlying="BTC", model="volatility", volatility=vol_config),)
    )
    return RiskEngine(config, instruments, positions)


def test_volatility_margin__after_a_volatility_jump__more_than_doubles_within_12_ticks() -> None:
    # 5-second ticks; annual vol 50% for an hour, then 300% (a crash regime). Returns alternate
    # ±σ√Δt so the test is deterministic.
    engine = _perp_engine(VolatilityMarginConfig(initial_sigma_annual=0.5))
    dt, price, t = 5.0, 60_000.0, 0.0

    def run(sigma_annual: float, n: int) -> list[float]:
        nonlocal price, t
        out = []
        for k in range(n):
            price *= math.exp((1 if k % 2 else -1) * sigma_annual * math.sqrt(dt / YEAR_S))
            t += dt
            result = engine.tick([price], t)
            out.append(float(result.mm_usd[0]) / price)
        return out

    calm = run(0.5, 720)[-1]
    assert calm == pytest.approx(2.3263 * 0.5 * math.sqrt(3600 / YEAR_S), rel=0.02)
    stressed = run(3.0, 12)
    assert stressed[-1] > 2.0 * calm
    assert all(b >= a for a, b in itertools.pairwise(stressed))


def test_volatility_margin__rate__is_clipped_to_floor_and_cap() -> None:
    sigma = np.array([0.0, 1e-9, 1.0])
    rate = volatility_mm_rate(
        sigma, np.full(3, 2.33), np.full(3, 3600.0), np.full(3, 0.01), np.full(3, 0.5)
    )
    assert rate == pytest.approx([0.01, 0.01, 0.5])


@settings(max_examples=100, deadline=None)
@given(sigma_lo=st.floats(1e-6, 1e-2), bump=st.floats(0.0, 1e-2))
def test_volatility_margin__higher_volatility__never_lowers_the_rate(
    sigma_lo: float, bump: float
) -> None:
    args = (np.array([2.33]), np.array([3600.0]), np.array([0.01]), np.array([0.5]))
    low = volatility_mm_rate(np.array([sigma_lo]), *args)
    high = volatility_mm_rate(np.array([sigma_lo + bump]), *args)
    assert high[0] >= low[0]


@settings(max_examples=40, deadline=None)
@given(size=st.floats(-100.0, 100.0).filter(lambda s: s != 0.0), k=st.floats(0.0, 50.0))
def test_volatility_margin__scaled_position__scales_the_requirement(size: float, k: float) -> None:
    base = _perp_engine(VolatilityMarginConfig(), size).tick([60_000.0], 0.0)
    scaled = _perp_engine(VolatilityMarginConfig(), size * k).tick([60_000.0], 0.0)
    assert scaled.mm_usd[0] == pytest.approx(k * base.mm_usd[0], rel=1e-12, abs=1e-9)
    assert scaled.im_usd[0] == pytest.approx(1.5 * scaled.mm_usd[0], rel=1e-12)
