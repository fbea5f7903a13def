"""The risk library's one error type and the input checks every entry point shares.

Checks run once at the boundary (construction, `tick`), never inside inner loops, so the hot
path stays plain numpy. Every message names the offending field and says how to fix it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


class RiskInputError(ValueError):
    """A risk input is malformed (shape, NaN/inf, sign, unknown id, expired option).

    The message names the field and the fix; callers may show it to an operator as is.
    """


def as_float_array(name: str, value: Any, *, ndim: int | None = None) -> FloatArray:
    """Return `value` as a float64 array, rejecting NaN/inf and wrong dimensionality."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RiskInputError(f"{name} must be numeric (float64-convertible): {exc}") from exc
    if ndim is not None and array.ndim != ndim:
        raise RiskInputError(
            f"{name} must be {ndim}-dimensional, got shape {array.shape}; reshape it"
        )
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array.ravel()))[:5].tolist()
        raise RiskInputError(f"{name} contains NaN or inf at flat index {bad}; pass finite values")
    return array


def require_shape(name: str, array: NDArray[Any], shape: tuple[int, ...]) -> None:
    if array.shape != shape:
        raise RiskInputError(f"{name} must have shape {shape}, got {array.shape}")


def require_positive(name: str, array: FloatArray) -> None:
    if not np.all(array > 0.0):
        bad = np.flatnonzero(~(array.ravel() > 0.0))[:5].tolist()
        raise RiskInputError(f"{name} must be > 0 everywhere; non-positive at flat index {bad}")


def require_probability(name: str, value: float) -> float:
    """Confidence levels live strictly inside (0, 1); 0.5 and above is the only useful range."""
    if not (0.5 <= value < 1.0):
        raise RiskInputError(f"{name} must be in [0.5, 1), got {value!r}; e.g. 0.99 for 99%")
    return float(value)


def as_index_array(name: str, value: Any, *, upper: int) -> IntArray:
    """Return integer indices in [0, upper); reject non-integer dtypes and out-of-range ids."""
    array = np.asarray(value)
    if array.ndim != 1:
        raise RiskInputError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise RiskInputError(f"{name} must hold integers, got dtype {array.dtype}")
    indices = array.astype(np.intp, copy=False)
    if indices.size and (indices.min() < 0 or indices.max() >= upper):
        bad = indices[(indices < 0) | (indices >= upper)][:5].tolist()
        raise RiskInputError(f"{name} holds indices {bad} outside [0, {upper}); check the ids")
    return indices


def bincount_sum(index: IntArray, weights: FloatArray, minlength: int) -> FloatArray:
    """Sum `weights` into `minlength` bins by `index` (np.bincount, typed as the float64 it is)."""
    return np.asarray(np.bincount(index, weights=weights, minlength=minlength), dtype=np.float64)
