"""Black-76 prices and greeks for European options, vectorised by broadcasting.

Conventions: `forward_usd` is the forward (for crypto options on a perp feed the engine passes the
index price with zero carry), `t_years` is ACT/365 time to expiry, `sigma_annual` the implied
volatility per √year, `discount` the factor e^{-rT} (1.0 for no discounting). Greeks are
sensitivities of one option on one unit of underlying:
delta = ∂V/∂F, gamma = ∂²V/∂F², vega = ∂V/∂σ (per 1.00 of volatility, i.e. per 100 vol points),
theta = ∂V/∂t per year of calendar time with F held fixed (negative for a long option when r = 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from offchain.risk.checks import BoolArray, FloatArray
from offchain.risk.normal import norm_cdf, norm_pdf

# Floor on σ√T: keeps d1 finite (it goes to ±inf, and Φ to 0/1, i.e. intrinsic value) when a
# scenario shocks the volatility to zero or an option is seconds from expiry.
_MIN_STD_DEV = 1e-12


@dataclass(frozen=True)
class OptionGreeks:
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta_per_year: FloatArray


def _d1_d2(
    forward: FloatArray, strike: FloatArray, t_years: FloatArray, sigma: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    std_dev = np.maximum(sigma * np.sqrt(t_years), _MIN_STD_DEV)
    d1 = (np.log(forward / strike) + 0.5 * std_dev * std_dev) / std_dev
    return d1, d1 - std_dev, std_dev


def black76_price(
    forward_usd: ArrayLike,
    strike_usd: ArrayLike,
    t_years: ArrayLike,
    sigma_annual: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Black-76 value: D·[F Φ(d1) − K Φ(d2)] for calls, D·[K Φ(−d2) − F Φ(−d1)] for puts.

    Inputs broadcast against each other; validation is the caller's job (the engine checks once
    per tick) so this stays cheap inside scenario loops.
    """
    f = np.asarray(forward_usd, dtype=np.float64)
    k = np.asarray(strike_usd, dtype=np.float64)
    d1, d2, _ = _d1_d2(f, k, np.asarray(t_years, np.float64), np.asarray(sigma_annual, np.float64))
    call = np.asarray(is_call, dtype=bool)
    # The sign trick prices puts and calls in one pass: put = D[K Φ(-d2) - F Φ(-d1)].
    sign = np.where(call, 1.0, -1.0)
    value = sign * (f * norm_cdf(sign * d1) - k * norm_cdf(sign * d2))
    return np.asarray(np.asarray(discount, dtype=np.float64) * value, dtype=np.float64)


def black76_greeks(
    forward_usd: ArrayLike,
    strike_usd: ArrayLike,
    t_years: ArrayLike,
    sigma_annual: ArrayLike,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> OptionGreeks:
    """Delta, gamma, vega and theta (per year) of Black-76, same broadcasting as the price."""
    f = np.asarray(forward_usd, dtype=np.float64)
    k = np.asarray(strike_usd, dtype=np.float64)
    t = np.asarray(t_years, dtype=np.float64)
    sigma = np.asarray(sigma_annual, dtype=np.float64)
    disc = np.asarray(discount, dtype=np.float64)
    call: BoolArray = np.asarray(is_call, dtype=bool)
    d1, d2, std_dev = _d1_d2(f, k, t, sigma)
    pdf_d1 = norm_pdf(d1)
    sign = np.where(call, 1.0, -1.0)
    delta = disc * sign * norm_cdf(sign * d1)
    gamma = disc * pdf_d1 / (f * std_dev)
    sqrt_t = np.sqrt(t)
    vega = disc * f * pdf_d1 * sqrt_t
    # V = D(T)·B(F, T) with D = e^{-rT}: dV/dt = -dV/dT = rV - D·∂B/∂T, and ∂B/∂T = F φ(d1) σ/(2√T)
    # for calls and puts alike. r is recovered from D and T so callers pass one discount factor.
    value = sign * (f * norm_cdf(sign * d1) - k * norm_cdf(sign * d2))
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(t > 0.0, -np.log(disc) / np.where(t > 0.0, t, 1.0), 0.0)
        decay = np.where(sqrt_t > 0.0, f * pdf_d1 * sigma / (2.0 * sqrt_t), 0.0)
    theta = rate * disc * value - disc * decay
    return OptionGreeks(
        delta=np.asarray(delta, dtype=np.float64),
        gamma=np.asarray(gamma, dtype=np.float64),
        vega=np.asarray(vega, dtype=np.float64),
        theta_per_year=np.asarray(theta, dtype=np.float64),
    )
