"""Standard (tiered) margin: tier arithmetic, the engine's fast path, properties."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.risk import RiskEngine, TierSchedule, black76_price, tiered_margin

EngineFactory = Callable[..., RiskEngine]

# Default tiers: IM 10% / MM 6.5% below $1M, 15% / 9.75% to $5M, 25% / 16.25% above.
DEFAULT = TierSchedule.build([[0.0, 1e6, 5e6]], [[0.10, 0.15, 0.25]], [[0.065, 0.0975, 0.1625]])


def test_tiered_margin__notional_in_each_tier__charges_each_slice_its_rate() -> None:
    notional = np.array([500_000.0, 2_000_000.0, 8_000_000.0])
    im, mm = tiered_margin(notional, np.zeros(3, dtype=np.intp), DEFAULT)
    assert im == pytest.approx([50_000.0, 100_000 + 150_000.0, 100_000 + 600_000 + 750_000.0])
    assert mm == pytest.approx([32_500.0, 65_000 + 97_500.0, 65_000 + 390_000 + 487_500.0])


def test_tiered_margin__across_a_floor__is_continuous() -> None:
    below, above = tiered_margin(
        np.array([1e6 - 1e-3, 1e6 + 1e-3]), np.zeros(2, dtype=np.intp), DEFAULT
    )[0]
    assert above - below == pytest.approx(0.0, abs=1e-3)


def test_engine_standard__mixed_sizes__equals_per_position_tiers(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    book = {
        0: {"BTC-PERP": 10.0, "ETH-PERP": -5.0},
        1: {"BTC-PERP": -40.0},  # $2.4M: crosses the $1M floor
        2: {"ETH-PERP": 2_000.0, "BTC-30D-60000-C": -100.0},  # $6M ETH and $6M of options
        3: {},
    }
    engine = make_engine(book, models=("standard", "standard"), n_accounts=4)
    result = engine.tick(spot_usd, 1_750_000_000.0, option_vols)
    im, mm = tiered_margin(
        np.array([600_000, 15_000, 2_400_000, 6_000_000, 6_000_000.0]),
        np.zeros(5, dtype=np.intp),
        DEFAULT,
    )
    # The short call also owes its mark value (the cost to buy it back).
    mark = 100.0 * float(black76_price(60_000.0, 60_000.0, 30.0 / 365.0, 0.6, True))
    assert result.mm_usd == pytest.approx([mm[0] + mm[1], mm[2], mm[3] + mm[4] + mark, 0.0])
    assert result.im_usd == pytest.approx([im[0] + im[1], im[2], im[3] + im[4] + mark, 0.0])
    assert result.standard_im_usd == pytest.approx(result.im_usd)


def test_engine_standard__long_option__never_needs_more_than_its_mark_value(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    # A far out-of-the-money long call: 10% of its notional would exceed what it can lose.
    result = make_engine({0: {"BTC-30D-66000-C": 5.0}}, ("standard", "standard")).tick(
        spot_usd, 1_750_000_000.0, option_vols
    )
    mark = 5.0 * float(black76_price(60_000.0, 66_000.0, 30.0 / 365.0, 0.6, True))
    assert mark < 0.065 * 5.0 * 60_000.0
    assert result.mm_usd[0] == pytest.approx(mark)


def _standard_mm(engine: RiskEngine, spot: np.ndarray, vols: np.ndarray) -> float:
    return float(engine.tick(spot, 1_750_000_000.0, vols).standard_mm_usd[0])


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.floats(-200.0, 200.0), min_size=2, max_size=2),
    extra=st.floats(0.0, 300.0),
    instrument=st.sampled_from(["BTC-PERP", "ETH-PERP", "BTC-30D-66000-P"]),
)
def test_standard_margin__adding_a_position__never_lowers_the_requirement(
    make_engine: EngineFactory,
    spot_usd: np.ndarray,
    option_vols: np.ndarray,
    sizes: list[float],
    extra: float,
    instrument: str,
) -> None:
    # "Adding" means a new instrument or more of the same side: netting against an existing
    # position is a reduction, not an addition.
    base = {"BTC-PERP": sizes[0], "ETH-PERP": sizes[1] * 20}
    current = base.get(instrument, 0.0)
    added = dict(base)
    added[instrument] = current + (extra if current >= 0 else -extra)
    before = _standard_mm(make_engine({0: base}, ("standard", "standard")), spot_usd, option_vols)
    after = _standard_mm(make_engine({0: added}, ("standard", "standard")), spot_usd, option_vols)
    assert after >= before - 1e-9 * max(before, 1.0)


@settings(max_examples=60, deadline=None)
@given(size=st.floats(0.0, 500.0), factor=st.floats(1.0, 10.0))
def test_standard_margin__larger_position__needs_proportionally_at_least_as_much(
    size: float, factor: float
) -> None:
    # Convex tiers: scaling a position by k ≥ 1 scales the requirement by at least k.
    notional = np.array([size * 60_000.0, size * factor * 60_000.0])
    _, mm = tiered_margin(notional, np.zeros(2, dtype=np.intp), DEFAULT)
    assert mm[1] >= factor * mm[0] * (1 - 1e-12) - 1e-9
