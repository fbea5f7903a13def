"""Black-76 and the normal CDF against published values, parity and finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.risk import black76_greeks, black76_price, norm_cdf, norm_pdf, norm_ppf


def test_norm_cdf__dense_grid__matches_math_erfc_to_1e_15() -> None:
    x = np.linspace(-38.0, 38.0, 200_001)
    reference = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    assert np.max(np.abs(norm_cdf(x) - reference)) < 1e-15


def test_norm_cdf__textbook_table_values__match() -> None:
    # Standard normal table: Φ(1.96) = 0.9750021048517795, Φ(-3) = 0.0013498980316301.
    got = norm_cdf([1.96, -3.0, 0.0])
    assert got == pytest.approx([0.9750021048517795, 0.0013498980316301, 0.5], abs=1e-15)


def test_norm_pdf_and_ppf__known_points__match() -> None:
    assert norm_pdf(0.0) == pytest.approx(1.0 / math.sqrt(2.0 * math.pi), abs=1e-16)
    assert norm_ppf(0.99) == pytest.approx(2.3263478740408408, abs=1e-12)
    assert norm_ppf(0.975) == pytest.approx(1.959963984540054, abs=1e-12)


def test_black76_put__hull_futures_option_example__matches_published_price() -> None:
    # Hull, Options Futures and Other Derivatives, Black's model example: futures 20, strike 20,
    # 4 months, r 9%, σ 25% → European put 1.12.
    t = 4.0 / 12.0
    put = black76_price(20.0, 20.0, t, 0.25, False, math.exp(-0.09 * t))
    assert float(put) == pytest.approx(1.12, abs=0.005)


def test_black76_call_and_put__hull_black_scholes_example__matches_published_prices() -> None:
    # Hull, Black-Scholes example: S 42, K 40, r 10%, σ 20%, T 0.5 → c 4.76, p 0.81. Black-76 on
    # the forward F = S·e^{rT} with discount e^{-rT} is Black-Scholes.
    forward, discount = 42.0 * math.exp(0.05), math.exp(-0.05)
    call, put = black76_price(forward, 40.0, 0.5, 0.2, [True, False], discount)
    assert call == pytest.approx(4.76, abs=0.005)
    assert put == pytest.approx(0.81, abs=0.005)


def test_black76_greeks__hull_greek_letters_example__match_published_values() -> None:
    # Hull, "The Greek Letters": S 49, K 50, r 5%, σ 20%, T 20 weeks (0.3846): call 2.40,
    # Δ 0.522, Γ 0.066, vega 12.1, Θ -4.31 per year. Spot greeks follow from forward greeks by
    # dF/dS = e^{rT}; Black-Scholes theta holds S (not F) fixed, so it adds ∂V/∂F · dF/dt.
    r, t = 0.05, 0.3846
    forward, discount = 49.0 * math.exp(r * t), math.exp(-r * t)
    greeks = black76_greeks(forward, 50.0, t, 0.2, True, discount)
    assert float(black76_price(forward, 50.0, t, 0.2, True, discount)) == pytest.approx(
        2.40, abs=0.005
    )
    assert float(greeks.delta) * math.exp(r * t) == pytest.approx(0.522, abs=0.0005)
    assert float(greeks.gamma) * math.exp(2 * r * t) == pytest.approx(0.066, abs=0.0005)
    assert float(greeks.vega) == pytest.approx(12.1, abs=0.05)
    spot_theta = float(greeks.theta_per_year) - r * forward * float(greeks.delta)
    assert spot_theta == pytest.approx(-4.31, abs=0.005)


@settings(max_examples=200, deadline=None)
@given(
    forward=st.floats(10.0, 1e5),
    moneyness=st.floats(0.3, 3.0),
    t_years=st.floats(1e-3, 3.0),
    sigma=st.floats(0.05, 3.0),
    rate=st.floats(0.0, 0.1),
)
def test_black76__any_inputs__satisfies_put_call_parity(
    forward: float, moneyness: float, t_years: float, sigma: float, rate: float
) -> None:
    strike, discount = forward * moneyness, math.exp(-rate * t_years)
    call, put = black76_price(forward, strike, t_years, sigma, [True, False], discount)
    assert call - put == pytest.approx(discount * (forward - strike), abs=1e-9 * forward)


@pytest.mark.parametrize("is_call", [True, False])
def test_black76_greeks__finite_differences__agree(is_call: bool) -> None:
    f, k, t, s, d = 3000.0, 3300.0, 0.25, 0.7, math.exp(-0.03 * 0.25)

    def price(f_: float = f, t_: float = t, s_: float = s) -> float:
        return float(black76_price(f_, k, t_, s_, is_call, math.exp(math.log(d) / t * t_)))

    g = black76_greeks(f, k, t, s, is_call, d)
    h = 1e-2
    assert float(g.delta) == pytest.approx((price(f + h) - price(f - h)) / (2 * h), rel=1e-7)
    assert float(g.gamma) == pytest.approx(
        (price(f + 1.0) - 2 * price() + price(f - 1.0)), rel=1e-4
    )
    assert float(g.vega) == pytest.approx(
        (price(s_=s + 1e-5) - price(s_=s - 1e-5)) / 2e-5, rel=1e-6
    )
    # Theta is the change as calendar time passes, i.e. as time to expiry shrinks.
    dt = 1e-5
    assert float(g.theta_per_year) == pytest.approx(
        -(price(t_=t + dt) - price(t_=t - dt)) / (2 * dt), rel=1e-5
    )


def test_black76__zero_volatility__is_discounted_intrinsic_value() -> None:
    value = black76_price([120.0, 80.0], 100.0, 0.5, 0.0, [True, False], 0.9)
    assert value == pytest.approx([18.0, 18.0])
