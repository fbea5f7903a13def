"""The funding model (`offchain.risk.funding`): Solidity's rounding, the premium average, and the
engine's provision. The contract side of the same formulas is held equal in tests/test_funding.py
and tests/test_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

from offchain.risk.funding import (
    WAD,
    FundingMarket,
    ceil_div_signed,
    clamped_rate,
    funding_provision_usd,
    owed,
    tdiv,
)


def test_tdiv__truncates_toward_zero_like_solidity() -> None:
    assert (tdiv(7, 2), tdiv(-7, 2), tdiv(7, -2), tdiv(-7, -2)) == (3, -3, -3, 3)


def test_owed__payer_rounds_up_receiver_rounds_down() -> None:
    # I26: one wei of index on a third of a unit: the long pays 1, the short receives 0.
    assert owed(WAD // 3, 1, 0) == 1
    assert owed(-(WAD // 3), 1, 0) == 0
    assert ceil_div_signed(-5, 2) == -2


def test_accrue__premium_counts_by_the_time_it_stood_and_the_rate_is_capped() -> None:
    # I29: a 2% premium held 6 minutes of a one-hour window moves the average by a tenth.
    f = FundingMarket(last_premium_e18=2 * 10**16, max_rate_bps=50)
    f = f.accrue(360, 3_000 * WAD)
    assert f.premium_ema_e18 == 2 * 10**15
    assert f.rate_e18 == 2 * 10**15
    f = f.accrue(360 + 3_600, 3_000 * WAD)
    assert f.premium_ema_e18 == 2 * 10**16
    assert f.rate_e18 == clamped_rate(2 * 10**16, 50) == 5 * 10**15


@pytest.mark.parametrize(
    ("size", "rate", "expected_rate"),
    [
        (10.0, 0.01, 0.01 + 0.02 / 12),  # a payer: the rate in force, plus its possible move
        (10.0, 0.02, 0.02),  # already at the cap: never more
        (-10.0, 0.01, 0.0),  # a receiver the move cannot turn into a payer within the horizon
        (-10.0, 0.001, 0.02 / 12 - 0.001),  # one it can
        (0.0, 0.01, 0.0),
    ],
)
def test_funding_provision__payers_receivers_and_the_cap(
    size: float, rate: float, expected_rate: float
) -> None:
    got = funding_provision_usd(
        np.array([[size]]),
        np.array([3_000.0]),
        np.array([rate]),
        np.array([0.02]),
        np.array([3_600.0]),
        300.0,
    )
    assert got[0] == pytest.approx(abs(size) * 3_000 * expected_rate * 300 / 28_800)
