"""Standard normal PDF, CDF and quantile in numpy (no scipy in library code).

The CDF is W. J. Cody's rational Chebyshev approximation (Math. Comp. 23, 1969), the algorithm
behind R's `pnorm`: three ranges of |x|, each a ratio of polynomials, accurate to about 1e-16
absolute. It is evaluated on masked sub-arrays so every element takes the branch it belongs to.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from offchain.risk.checks import FloatArray, RiskInputError

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_32 = math.sqrt(32.0)
_SPLIT_CENTRAL = 0.67448975  # ≈ Φ⁻¹(3/4): Cody's first range boundary

_A = (
    2.2352520354606839287,
    161.02823106855587881,
    1067.6894854603709582,
    18154.981253343561249,
    0.065682337918207449113,
)
_B = (47.20258190468824187, 976.09855173777669322, 10260.932208618978205, 45507.789335026729956)
_C = (
    0.39894151208813466764,
    8.8831497943883759412,
    93.506656132177855979,
    597.27027639480026226,
    2494.5375852903726711,
    6848.1904505362823326,
    11602.651437647350124,
    9842.7148383839780218,
    1.0765576773720192317e-8,
)
_D = (
    22.266688044328115691,
    235.38790178262499861,
    1519.377599407554805,
    6485.558298266760755,
    18615.571640885098091,
    34900.952721145977266,
    38912.003286093271411,
    19685.429676859990727,
)
_P = (
    0.21589853405795699,
    0.1274011611602473639,
    0.022235277870649807,
    0.001421619193227893466,
    2.9112874951168792e-5,
    0.02307344176494017303,
)
_Q = (
    1.28426009614491121,
    0.468238212480865118,
    0.0659881378689285515,
    0.00378239633202758244,
    7.29751555083966205e-5,
)


def norm_pdf(x: ArrayLike) -> FloatArray:
    """φ(x) = exp(-x²/2)/√(2π), elementwise."""
    x_arr = np.asarray(x, dtype=np.float64)
    return np.asarray(_INV_SQRT_2PI * np.exp(-0.5 * x_arr * x_arr), dtype=np.float64)


def _gauss_tail(y: FloatArray, ratio: FloatArray) -> FloatArray:
    # Splitting y² as ysq² + del keeps exp(-y²/2) accurate far in the tail (Cody's trick).
    ysq = np.trunc(y * 16.0) / 16.0
    delta = (y - ysq) * (y + ysq)
    return np.asarray(np.exp(-0.5 * ysq * ysq) * np.exp(-0.5 * delta) * ratio, dtype=np.float64)


def norm_cdf(x: ArrayLike) -> FloatArray:
    """Φ(x), elementwise, absolute error below 1e-15 over the whole real line."""
    x_arr = np.asarray(x, dtype=np.float64)
    flat = x_arr.ravel()
    y = np.abs(flat)
    out = np.empty_like(flat)

    central = y <= _SPLIT_CENTRAL
    if np.any(central):
        xc = flat[central]
        xsq = xc * xc
        num = _A[4] * xsq
        den = xsq.copy()
        for i in range(3):
            num = (num + _A[i]) * xsq
            den = (den + _B[i]) * xsq
        out[central] = 0.5 + xc * (num + _A[3]) / (den + _B[3])

    # Both tail ranges compute the lower tail Φ(-|x|) and mirror it for x > 0, which keeps the
    # small tail probability exact instead of losing it to cancellation in 1 - Φ.
    middle = (~central) & (y <= _SQRT_32)
    if np.any(middle):
        ym = y[middle]
        num = _C[8] * ym
        den = ym.copy()
        for i in range(7):
            num = (num + _C[i]) * ym
            den = (den + _D[i]) * ym
        lower = _gauss_tail(ym, (num + _C[7]) / (den + _D[7]))
        out[middle] = np.where(flat[middle] > 0.0, 1.0 - lower, lower)

    far = y > _SQRT_32
    if np.any(far):
        yf = y[far]
        xsq = 1.0 / (yf * yf)
        num = _P[5] * xsq
        den = xsq.copy()
        for i in range(4):
            num = (num + _P[i]) * xsq
            den = (den + _Q[i]) * xsq
        ratio = (_INV_SQRT_2PI - xsq * (num + _P[4]) / (den + _Q[4])) / yf
        lower = _gauss_tail(yf, ratio)
        out[far] = np.where(flat[far] > 0.0, 1.0 - lower, lower)

    return out.reshape(x_arr.shape)


def norm_ppf(probability: float) -> float:
    """Φ⁻¹(p) for a scalar p in (0, 1): the z of a confidence level."""
    if not (0.0 < probability < 1.0):
        raise RiskInputError(f"probability must be in (0, 1), got {probability!r}")
    return NormalDist().inv_cdf(probability)
