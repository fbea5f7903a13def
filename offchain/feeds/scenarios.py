"""Market scenarios: seeded price paths for one or several correlated underlyings (pure numpy).

Every generator returns a `Scenario`: one timestamp grid (`ts_s`, seconds) and one price array
per symbol on it, the first entry being the start price. The same arguments and seed give the
same scenario bit for bit. Volatilities are annualised over a 365-day year (crypto trades every
day); a step's volatility is `sigma_annual * sqrt(interval_s / YEAR_S)`.

Models:
* `gbm`: geometric Brownian motion, the calm-market baseline.
* `garch`: GARCH(1,1) variance, so large moves cluster as they do in real markets.
* `jump_diffusion`: Merton's model, GBM plus Poisson jumps with normal log sizes.
* `crash_scenario`: a named historical crash (`CRASH_TEMPLATES`) replayed in shape and depth.
* `scenario_from_rows`: recorded prices (e.g. a CSV replay) aligned on one grid.

Correlated underlyings share normal shocks through the Cholesky factor of a correlation matrix
(order = the order of `start_usd`). `random_walk` and `crash` are the original single-path
helpers used by the CLI and the demo; their output is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from offchain.errors import ConfigError

FloatArray = NDArray[np.float64]

YEAR_S = 365.0 * 86_400.0
DAY_S = 86_400.0


@dataclass(frozen=True)
class Scenario:
    """Prices per symbol on one strictly increasing timestamp grid (`ts_s`, Unix seconds)."""

    name: str
    ts_s: FloatArray
    prices_usd: Mapping[str, FloatArray]
    # What generated it (model and parameters), for reports.
    params: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.ts_s.shape
        if len(n) != 1 or n[0] < 1:
            raise ConfigError(f"scenario {self.name!r} has no timestamps", "give at least one")
        if n[0] > 1 and not bool(np.all(np.diff(self.ts_s) > 0)):
            raise ConfigError(
                f"scenario {self.name!r} timestamps are not strictly increasing",
                "sort the rows and remove duplicate timestamps",
            )
        if not self.prices_usd:
            raise ConfigError(f"scenario {self.name!r} has no symbols", "give at least one")
        for sym, prices in self.prices_usd.items():
            if prices.shape != n:
                raise ConfigError(
                    f"scenario {self.name!r}: {sym} has {prices.shape} prices for {n} timestamps",
                    "give one price per timestamp",
                )
            if not bool(np.all(np.isfinite(prices) & (prices > 0))):
                raise ConfigError(
                    f"scenario {self.name!r}: {sym} has a non-positive or non-finite price",
                    "check the inputs; prices must be > 0",
                )

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self.prices_usd)

    @property
    def steps(self) -> int:
        """Number of moves (the grid has `steps + 1` points)."""
        return int(self.ts_s.shape[0]) - 1

    def matrix(self) -> FloatArray:
        """Prices as a (steps + 1) × symbols array, columns in `symbols` order."""
        return np.column_stack([self.prices_usd[s] for s in self.symbols])

    def log_returns(self) -> FloatArray:
        """Per-step log returns, steps × symbols."""
        return np.diff(np.log(self.matrix()), axis=0)


# ---------------------------------------------------------------------------- shared machinery
def _symbols(start_usd: Mapping[str, float]) -> list[str]:
    if not start_usd:
        raise ConfigError("no underlyings given", "pass start_usd={'ETH': 3000.0, ...}")
    for sym, p in start_usd.items():
        if not (math.isfinite(p) and p > 0):
            raise ConfigError(f"start price of {sym} is {p}", "start prices must be > 0")
    return list(start_usd)


def _per_symbol(
    value: float | Mapping[str, float], symbols: list[str], name: str, *, minimum: float = 0.0
) -> FloatArray:
    """A parameter given once for all symbols or per symbol, as an array in symbol order."""
    if isinstance(value, Mapping):
        missing = [s for s in symbols if s not in value]
        if missing:
            raise ConfigError(f"{name} is missing {missing}", f"give {name} for every symbol")
        out = np.array([float(value[s]) for s in symbols])
    else:
        out = np.full(len(symbols), float(value))
    if not bool(np.all(np.isfinite(out) & (out >= minimum))):
        raise ConfigError(f"{name} = {value} is out of range", f"{name} must be ≥ {minimum}")
    return out


def _check_grid(steps: int, interval_s: float) -> None:
    if steps < 1:
        raise ConfigError(f"steps = {steps}", "a scenario needs at least one step")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ConfigError(f"interval_s = {interval_s}", "the step interval must be > 0 seconds")


def cholesky_factor(correlation: ArrayLike, n_symbols: int) -> FloatArray:
    """The lower Cholesky factor L (L Lᵀ = correlation) of a valid correlation matrix.

    Raises ConfigError unless the matrix is n × n, symmetric, has a unit diagonal and is positive
    definite (perfectly correlated pairs are not: use 0.999 instead of 1).
    """
    c = np.asarray(correlation, dtype=np.float64)
    if c.shape != (n_symbols, n_symbols):
        raise ConfigError(
            f"correlation matrix is {c.shape}, expected ({n_symbols}, {n_symbols})",
            "give one row and column per symbol, in the order of start_usd",
        )
    if not np.allclose(c, c.T, atol=1e-12) or not np.allclose(np.diag(c), 1.0, atol=1e-12):
        raise ConfigError("correlation matrix is not symmetric with a unit diagonal", "fix it")
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError as exc:
        raise ConfigError(
            "correlation matrix is not positive definite",
            "use a consistent matrix (e.g. estimated from data) and avoid exact ±1",
        ) from exc


def _shocks(
    rng: np.random.Generator, steps: int, n_symbols: int, correlation: ArrayLike | None
) -> FloatArray:
    """steps × symbols standard normal shocks with the given cross-correlation."""
    z = rng.standard_normal((steps, n_symbols))
    if correlation is None:
        return z
    return z @ cholesky_factor(correlation, n_symbols).T


def _gbm_log_increments(
    z: FloatArray, vol_per_step: float | FloatArray, drift_per_step: float | FloatArray
) -> FloatArray:
    # −σ²/2 (Itô) makes `drift_per_step` the drift of the price itself, not of its log.
    return z * vol_per_step + drift_per_step - 0.5 * np.square(vol_per_step)


def _build(
    name: str,
    symbols: list[str],
    start_usd: Mapping[str, float],
    log_increments: FloatArray,
    interval_s: float,
    start_ts_s: float,
    params: Mapping[str, object],
) -> Scenario:
    steps = log_increments.shape[0]
    log_paths = np.vstack([np.zeros(len(symbols)), np.cumsum(log_increments, axis=0)])
    prices = np.array([start_usd[s] for s in symbols]) * np.exp(log_paths)
    ts = start_ts_s + interval_s * np.arange(steps + 1, dtype=np.float64)
    return Scenario(name, ts, {s: prices[:, i].copy() for i, s in enumerate(symbols)}, params)


# ---------------------------------------------------------------------------- models
def gbm(
    start_usd: Mapping[str, float],
    steps: int,
    *,
    interval_s: float = 60.0,
    sigma_annual: float | Mapping[str, float] = 0.8,
    mu_annual: float | Mapping[str, float] = 0.0,
    correlation: ArrayLike | None = None,
    start_ts_s: float = 0.0,
    seed: int = 0,
) -> Scenario:
    """Geometric Brownian motion: log returns ~ N((μ − σ²/2)·dt, σ²·dt), dt = interval_s/YEAR_S."""
    symbols = _symbols(start_usd)
    _check_grid(steps, interval_s)
    dt = interval_s / YEAR_S
    sigma = _per_symbol(sigma_annual, symbols, "sigma_annual")
    mu = _per_symbol(mu_annual, symbols, "mu_annual", minimum=-math.inf)
    z = _shocks(np.random.default_rng(seed), steps, len(symbols), correlation)
    inc = _gbm_log_increments(z, sigma * math.sqrt(dt), mu * dt)
    params = {"model": "gbm", "sigma_annual": sigma.tolist(), "mu_annual": mu.tolist()}
    return _build("gbm", symbols, start_usd, inc, interval_s, start_ts_s, params)


def garch(
    start_usd: Mapping[str, float],
    steps: int,
    *,
    interval_s: float = 60.0,
    sigma_annual: float | Mapping[str, float] = 0.8,
    alpha: float = 0.1,
    beta: float = 0.85,
    mu_annual: float | Mapping[str, float] = 0.0,
    correlation: ArrayLike | None = None,
    start_ts_s: float = 0.0,
    seed: int = 0,
) -> Scenario:
    """Volatility clustering: per-step variance h_t = ω + α·ε²_{t−1} + β·h_{t−1}.

    ω is set so the long-run variance is `sigma_annual`² per year; α + β < 1 keeps it finite.
    Each symbol has its own variance process; the shocks driving them are correlated.
    """
    symbols = _symbols(start_usd)
    _check_grid(steps, interval_s)
    if not (alpha >= 0 and beta >= 0 and alpha + beta < 1):
        raise ConfigError(
            f"alpha={alpha}, beta={beta}", "need alpha, beta ≥ 0 and alpha + beta < 1"
        )
    dt = interval_s / YEAR_S
    sigma = _per_symbol(sigma_annual, symbols, "sigma_annual")
    mu = _per_symbol(mu_annual, symbols, "mu_annual", minimum=-math.inf)
    z = _shocks(np.random.default_rng(seed), steps, len(symbols), correlation)
    long_run_var = sigma**2 * dt
    omega = long_run_var * (1.0 - alpha - beta)
    variance = np.empty_like(z)
    h = long_run_var.copy()
    eps = np.zeros(len(symbols))
    # The recursion is sequential in time; it is vectorised over symbols only.
    for t in range(steps):
        h = omega + alpha * eps * eps + beta * h
        eps = np.sqrt(h) * z[t]
        variance[t] = h
    inc = mu * dt - 0.5 * variance + np.sqrt(variance) * z
    params = {"model": "garch", "sigma_annual": sigma.tolist(), "alpha": alpha, "beta": beta}
    return _build("garch", symbols, start_usd, inc, interval_s, start_ts_s, params)


def jump_diffusion(
    start_usd: Mapping[str, float],
    steps: int,
    *,
    interval_s: float = 60.0,
    sigma_annual: float | Mapping[str, float] = 0.6,
    jumps_per_year: float = 12.0,
    jump_mean_log: float = -0.05,
    jump_std_log: float = 0.04,
    mu_annual: float | Mapping[str, float] = 0.0,
    correlation: ArrayLike | None = None,
    start_ts_s: float = 0.0,
    seed: int = 0,
) -> Scenario:
    """Merton jump diffusion: GBM plus Poisson(`jumps_per_year`) jumps of log size
    N(`jump_mean_log`, `jump_std_log`²), drawn independently per symbol.

    The drift is compensated (−λ·κ, κ = E[e^J] − 1) so `mu_annual` stays the expected growth of
    the price; with the negative default mean, jumps are crashes offset by a slight upward drift.
    """
    symbols = _symbols(start_usd)
    _check_grid(steps, interval_s)
    if not (jumps_per_year >= 0 and jump_std_log >= 0 and math.isfinite(jump_mean_log)):
        raise ConfigError("jump parameters out of range", "need jumps_per_year, jump_std_log ≥ 0")
    dt = interval_s / YEAR_S
    sigma = _per_symbol(sigma_annual, symbols, "sigma_annual")
    mu = _per_symbol(mu_annual, symbols, "mu_annual", minimum=-math.inf)
    rng = np.random.default_rng(seed)
    z = _shocks(rng, steps, len(symbols), correlation)
    n_jumps = rng.poisson(jumps_per_year * dt, size=z.shape)
    # The sum of n normal jump sizes is N(n·m, n·s²): one draw per cell, whatever n is.
    jumps = n_jumps * jump_mean_log + np.sqrt(n_jumps) * jump_std_log * rng.standard_normal(z.shape)
    kappa = math.expm1(jump_mean_log + 0.5 * jump_std_log**2)
    inc = _gbm_log_increments(z, sigma * math.sqrt(dt), (mu - jumps_per_year * kappa) * dt) + jumps
    params = {
        "model": "jump_diffusion",
        "sigma_annual": sigma.tolist(),
        "jumps_per_year": jumps_per_year,
        "jump_mean_log": jump_mean_log,
        "jump_std_log": jump_std_log,
        "n_jumps": int(n_jumps.sum()),
    }
    return _build("jump_diffusion", symbols, start_usd, inc, interval_s, start_ts_s, params)


# ---------------------------------------------------------------------------- crash templates
@dataclass(frozen=True)
class CrashTemplate:
    """A historical crash reduced to its shape and depth.

    `shape` is a list of (fraction of `duration_s`, fraction of the log-drop reached) keypoints,
    linear in between; the keypoint at 1.0 of the drop is the trough, where the price is exactly
    start × (1 − `drop`). The figures are stylised from public daily/hourly charts: the depth is
    the one this project tests against, the timing only its rough rhythm.
    """

    name: str
    description: str
    drop: float
    duration_s: float
    shape: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        times = [t for t, _ in self.shape]
        ok = (
            0 < self.drop < 1
            and self.duration_s > 0
            and self.shape[:1] == ((0.0, 0.0),)
            and times[-1] == 1.0
            and all(a < b for a, b in pairwise(times))
            and sum(f == 1.0 for _, f in self.shape) == 1
            and all(0.0 <= f <= 1.0 for _, f in self.shape)
        )
        if not ok:
            raise ConfigError(
                f"crash template {self.name!r} is malformed",
                "need 0 < drop < 1, duration_s > 0 and keypoints from (0, 0) to time 1.0, "
                "increasing in time, with exactly one trough at 1.0 of the drop",
            )

    @property
    def trough_fraction(self) -> float:
        return next(t for t, f in self.shape if f == 1.0)

    def keypoints(self, steps: int) -> tuple[FloatArray, FloatArray]:
        """(grid index, fraction of the drop) of each keypoint on a grid of `steps` moves.

        On a coarse grid several keypoints can round to one index: the start and the trough
        win (so every path starts at its start price and reaches the full drop), then the
        earlier keypoint.
        """
        trough_idx = min(max(round(self.trough_fraction * steps), 1), steps)
        points = {0: 0.0, trough_idx: 1.0}
        for frac, value in self.shape:
            points.setdefault(round(frac * steps), value)
        idx = sorted(points)
        return np.array(idx, dtype=np.float64), np.array([points[i] for i in idx])


CRASH_TEMPLATES: dict[str, CrashTemplate] = {
    t.name: t
    for t in (
        CrashTemplate(
            "2020-03-12",
            "Black Thursday: ETH ≈ −43% in one day in two legs (a morning slide, a pause, then a "
            "US-session collapse into the late-evening low) with a small bounce off the low. "
            "Gas ×6 and stalled keepers made MakerDAO auctions clear at 0 DAI.",
            0.43,
            DAY_S,
            ((0.0, 0.0), (0.30, 0.35), (0.45, 0.30), (0.75, 0.80), (0.90, 1.0), (1.0, 0.93)),
        ),
        CrashTemplate(
            "2022-11",
            "FTX collapse: a four-day grind of ≈ −25%: drift lower on the first rumours, a break "
            "on day two, a relief bounce, then capitulation when withdrawals halted, and a partial "
            "recovery.",
            0.25,
            4 * DAY_S,
            ((0.0, 0.0), (0.25, 0.15), (0.50, 0.55), (0.60, 0.40), (0.85, 1.0), (1.0, 0.80)),
        ),
        CrashTemplate(
            "2025-10-10",
            "The largest liquidation cascade on record (with auto-deleveraging): ≈ −30% within "
            "about an hour of a six-hour window, a wick to the low and a rebound of half the fall. "
            "Depth is this project's stylised figure between the majors' and the alts' moves.",
            0.30,
            6 * 3_600.0,
            ((0.0, 0.0), (0.05, 0.10), (0.15, 1.0), (0.30, 0.55), (1.0, 0.50)),
        ),
    )
}

# Peak-to-trough moves by crash name (ETH fell ≈ 43% on 2020-03-12).
CRASH_DROPS: dict[str, float] = {name: t.drop for name, t in CRASH_TEMPLATES.items()}


def crash_scenario(
    template: str | CrashTemplate,
    start_usd: Mapping[str, float],
    *,
    interval_s: float = 60.0,
    depth_scale: float | Mapping[str, float] = 1.0,
    noise_sigma_annual: float = 0.5,
    correlation: ArrayLike | None = None,
    start_ts_s: float = 0.0,
    seed: int = 0,
) -> Scenario:
    """`template`'s crash for every symbol, its drop scaled by `depth_scale` (capped at 95%).

    On top of the template's shape rides noise of `noise_sigma_annual` (annualised, correlated
    across symbols), shaped as a Brownian bridge pinned to zero at every keypoint and floored at
    the trough, so the path touches start × (1 − drop) exactly and never goes below it.
    """
    t = CRASH_TEMPLATES.get(template) if isinstance(template, str) else template
    if t is None:
        raise ConfigError(
            f"unknown crash template {template!r}", f"use one of {list(CRASH_TEMPLATES)}"
        )
    symbols = _symbols(start_usd)
    steps = round(t.duration_s / interval_s)
    _check_grid(steps, interval_s)
    if not noise_sigma_annual >= 0:
        raise ConfigError(f"noise_sigma_annual = {noise_sigma_annual}", "noise must be ≥ 0")
    drops = np.minimum(_per_symbol(depth_scale, symbols, "depth_scale") * t.drop, 0.95)
    key_idx, key_val = t.keypoints(steps)
    grid = np.arange(steps + 1, dtype=np.float64)
    progress = np.interp(grid, key_idx, key_val)  # 0 → 1 at the trough
    trough_log = np.log1p(-drops)
    noise_per_step = noise_sigma_annual * math.sqrt(interval_s / YEAR_S)
    z = _shocks(np.random.default_rng(seed), steps, len(symbols), correlation) * noise_per_step
    walk = np.vstack([np.zeros(len(symbols)), np.cumsum(z, axis=0)])
    # Subtracting the walk's own values interpolated between keypoints pins it to 0 there.
    pinned = np.column_stack(
        [
            walk[:, i] - np.interp(grid, key_idx, walk[key_idx.astype(int), i])
            for i in range(len(symbols))
        ]
    )
    log_paths = np.maximum(progress[:, None] * trough_log + pinned, trough_log)
    start = np.array([start_usd[s] for s in symbols])
    prices = start * np.exp(log_paths)
    ts = start_ts_s + interval_s * grid
    params = {"model": "crash", "template": t.name, "drop": drops.tolist()}
    return Scenario(t.name, ts, {s: prices[:, i].copy() for i, s in enumerate(symbols)}, params)


# ---------------------------------------------------------------------------- recorded prices
def scenario_from_rows(
    rows: Iterable[tuple[float, str, float]], *, name: str = "replay"
) -> Scenario:
    """Recorded (ts_s, symbol, price_usd) prints aligned on the union of their timestamps.

    Each symbol's price at a grid time is its last print at or before it (as-of semantics, what
    an oracle would have shown). The grid starts at the first time every symbol has printed;
    earlier prints only seed that first value. Rows need not be sorted; at equal timestamps the
    later row wins.
    """
    by_symbol: dict[str, list[tuple[float, float]]] = {}
    for ts_s, symbol, price_usd in rows:
        by_symbol.setdefault(symbol, []).append((float(ts_s), float(price_usd)))
    if not by_symbol:
        raise ConfigError(f"{name}: no price rows", "give rows of ts_s,symbol,price_usd")
    series: dict[str, tuple[FloatArray, FloatArray]] = {}
    for sym, pts in by_symbol.items():
        arr = np.array(pts)
        order = np.argsort(arr[:, 0], kind="stable")
        ts, px = arr[order, 0], arr[order, 1]
        # Keep the last row of each run of equal timestamps.
        last_of_run = np.append(ts[1:] != ts[:-1], True)
        series[sym] = (ts[last_of_run], px[last_of_run])
    start_ts = max(ts[0] for ts, _ in series.values())
    grid = np.unique(np.concatenate([ts for ts, _ in series.values()]))
    grid = grid[grid >= start_ts]
    prices = {}
    for sym, (ts, px) in series.items():
        prices[sym] = px[np.searchsorted(ts, grid, side="right") - 1]
    return Scenario(
        name, grid, prices, {"model": "replay", "rows": sum(map(len, by_symbol.values()))}
    )


# ---------------------------------------------------------------------------- legacy helpers
def random_walk(
    start_usd: float,
    steps: int,
    *,
    vol_per_step: float = 0.01,
    drift_per_step: float = 0.0,
    seed: int = 0,
) -> FloatArray:
    """Geometric Brownian motion: `steps` prices after `start_usd` (which is not included)."""
    if start_usd <= 0 or steps < 1 or vol_per_step < 0:
        raise ValueError("random_walk needs start_usd > 0, steps ≥ 1 and vol_per_step ≥ 0")
    rng = np.random.default_rng(seed)
    shocks = _gbm_log_increments(rng.standard_normal(steps), vol_per_step, drift_per_step)
    return start_usd * np.exp(np.cumsum(shocks))


def crash(
    start_usd: float,
    steps: int,
    *,
    drop: float = CRASH_DROPS["2020-03-12"],
    shape: Literal["linear", "front"] = "front",
    noise: float = 0.003,
    seed: int = 0,
) -> FloatArray:
    """A fall of `drop` (0.43 = −43%) over `steps` prices, ending exactly at the trough.

    `front` loads the fall early (most of a crash day's move came in hours), `linear` spreads it.
    For a named historical shape on a timestamp grid use `crash_scenario`.
    """
    if not 0 < drop < 1 or steps < 1 or start_usd <= 0:
        raise ValueError("crash needs 0 < drop < 1, steps ≥ 1 and start_usd > 0")
    t = np.arange(1, steps + 1) / steps
    progress = np.sqrt(t) if shape == "front" else t
    log_path = np.log1p(-drop) * progress
    rng = np.random.default_rng(seed)
    log_path[:-1] += rng.standard_normal(steps - 1) * noise
    path: FloatArray = start_usd * np.exp(log_path)
    return path
