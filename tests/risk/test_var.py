"""VaR and expected shortfall: closed forms, hand examples, coherence, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from offchain.risk import (
    RiskInputError,
    correlated_normal_returns,
    estimate_correlation,
    historical_var_es,
    monte_carlo_var_es,
    nearest_correlation_psd,
    norm_pdf,
    norm_ppf,
    scenario_var_es,
)


def test_historical_var_es__losses_1_to_100__match_hand_computed_quantiles() -> None:
    # One long $1 exposure; returns -1…-100 are losses 1…100. VaR 99% is the 99th smallest
    # loss; ES 97.5% averages the worst 2.5 scenarios: (100 + 99 + 0.5·98) / 2.5 = 99.2.
    returns = -np.arange(1.0, 101.0)[None, :]
    result = historical_var_es([[1.0]], returns, 0.99, 0.975)
    assert result.var_usd[0] == pytest.approx(99.0)
    assert result.es_usd[0] == pytest.approx(99.2)


def test_monte_carlo_var_es__normal_portfolio__matches_closed_form() -> None:
    # P&L ~ N(0, σ_p²) with σ_p² = eᵀΣe: VaR = z₀.₉₉·σ_p, ES = σ_p·φ(z₀.₉₇₅)/0.025.
    sigma = np.array([0.03, 0.05])
    corr = np.array([[1.0, 0.6], [0.6, 1.0]])
    exposures = np.array([[1e6, -4e5], [2e5, 3e5]])
    cov = np.outer(sigma, sigma) * corr
    sigma_p = np.sqrt(np.einsum("ai,ij,aj->a", exposures, cov, exposures))
    result = monte_carlo_var_es(exposures, sigma, corr, n_scenarios=400_000, seed=7)
    assert result.var_usd == pytest.approx(norm_ppf(0.99) * sigma_p, rel=0.015)
    z = norm_ppf(0.975)
    assert result.es_usd == pytest.approx(sigma_p * float(norm_pdf(z)) / 0.025, rel=0.015)


def test_monte_carlo_var_es__same_seed__reproduces_exactly_and_other_seed_differs() -> None:
    args = (np.array([[1e6, 5e5]]), np.array([0.03, 0.04]), np.array([[1.0, 0.5], [0.5, 1.0]]))
    first = monte_carlo_var_es(*args, n_scenarios=2000, seed=42)
    again = monte_carlo_var_es(*args, n_scenarios=2000, seed=42)
    other = monte_carlo_var_es(*args, n_scenarios=2000, seed=43)
    assert np.array_equal(first.es_usd, again.es_usd)
    assert np.array_equal(first.var_usd, again.var_usd)
    assert first.es_usd[0] != other.es_usd[0]


@settings(max_examples=50, deadline=None)
@given(
    returns=hnp.arrays(np.float64, (3, 200), elements=st.floats(-0.5, 0.5)),
    a=hnp.arrays(np.float64, 3, elements=st.floats(-1e6, 1e6)),
    b=hnp.arrays(np.float64, 3, elements=st.floats(-1e6, 1e6)),
)
def test_expected_shortfall__hedged_portfolio__never_exceeds_sum_of_parts(
    returns: np.ndarray, a: np.ndarray, b: np.ndarray
) -> None:
    result = scenario_var_es(np.stack([a, b, a + b]), returns)
    es_a, es_b, es_ab = result.es_usd
    assert es_ab <= es_a + es_b + 1e-6 * (abs(es_a) + abs(es_b) + 1.0)


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1.0, 5.0), exposure=st.floats(1.0, 1e7))
def test_monte_carlo_var_es__higher_volatility_or_size__raises_it_proportionally(
    scale: float, exposure: float
) -> None:
    corr = np.eye(2)
    base = monte_carlo_var_es([[exposure, exposure]], [0.02, 0.03], corr, 1000, seed=1)
    more_vol = monte_carlo_var_es(
        [[exposure, exposure]], [0.02 * scale, 0.03 * scale], corr, 1000, 1
    )
    more_size = monte_carlo_var_es([[exposure * scale] * 2], [0.02, 0.03], corr, 1000, seed=1)
    assert more_vol.es_usd[0] == pytest.approx(scale * base.es_usd[0], rel=1e-9)
    assert more_size.var_usd[0] == pytest.approx(scale * base.var_usd[0], rel=1e-9)
    assert more_vol.es_usd[0] >= base.es_usd[0]


def test_nearest_correlation_psd__indefinite_matrix__becomes_a_valid_correlation() -> None:
    # Pairwise-plausible but jointly impossible: A~B and B~C strongly, A and C opposite.
    bad = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
    assert np.linalg.eigvalsh(bad).min() < 0
    fixed = nearest_correlation_psd(bad)
    assert np.allclose(np.diag(fixed), 1.0)
    assert np.allclose(fixed, fixed.T)
    assert np.linalg.eigvalsh(fixed).min() > 0
    np.linalg.cholesky(fixed)
    returns = correlated_normal_returns([0.01, 0.02, 0.03], bad, 50_000, seed=3)
    assert np.corrcoef(returns) == pytest.approx(fixed, abs=0.02)


def test_nearest_correlation_psd__valid_matrix__is_returned_unchanged() -> None:
    good = np.array([[1.0, 0.3], [0.3, 1.0]])
    assert np.array_equal(nearest_correlation_psd(good), good)


def test_estimate_correlation__simulated_window__recovers_parameters() -> None:
    truth = np.array([[1.0, -0.4], [-0.4, 1.0]])
    window = correlated_normal_returns([0.02, 0.05], truth, 100_000, seed=11)
    sigma, corr = estimate_correlation(window)
    assert sigma == pytest.approx([0.02, 0.05], rel=0.01)
    assert corr == pytest.approx(truth, abs=0.01)


def test_scenario_var_es__returns_with_wrong_orientation__names_returns() -> None:
    with pytest.raises(RiskInputError, match="returns"):
        scenario_var_es(np.ones((4, 3)), np.ones((500, 3)))


def test_scenario_var_es__too_few_scenarios__says_how_many_are_needed() -> None:
    with pytest.raises(RiskInputError, match="at least 100"):
        scenario_var_es(np.ones((1, 1)), np.ones((1, 20)))


def test_scenario_var_es__nan_in_exposures__names_the_field() -> None:
    with pytest.raises(RiskInputError, match="exposures_usd"):
        scenario_var_es([[math.nan]], np.ones((1, 500)))
