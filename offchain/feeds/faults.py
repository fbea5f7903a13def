"""Several price sources per asset derived from one true path, some of them faulty (seeded).

Each `SourceSpec` turns a scenario's true prices into that source's ticks. The faults are the
ones oracle incidents are made of:

* `spike`: one print at `fault_step` multiplied by `spike_factor` (Compound DAI 2020: one signed
  source printed $1.30).
* `stuck`: from `fault_step` on, the source keeps printing the value it had then, with fresh
  timestamps, so staleness checks cannot see it (LUNA 2022: a feed pinned at its floor).
* `dead`: the source stops printing at `fault_step`.
* `noisy`: every print carries independent relative noise of `noise_bps` (1σ).
* `wide_confidence`: from `fault_step` on the source publishes a confidence interval of
  `wide_confidence_bps` of the price (a Pyth-style feed that is unsure of itself).

`storm_ticks` builds the E02 tick-storm workload: clean multi-source ticks with a share of them
duplicated and a share delivered late (out of order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from offchain.feeds.scenarios import FloatArray, Scenario, gbm
from offchain.feeds.ticks import Tick


class Fault(StrEnum):
    NONE = "none"
    SPIKE = "spike"
    STUCK = "stuck"
    DEAD = "dead"
    NOISY = "noisy"
    WIDE_CONFIDENCE = "wide_confidence"


class SourceSpec(BaseModel):
    """One price source: its name, its fault (if any) and when the fault starts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    fault: Fault = Fault.NONE
    fault_step: int = Field(default=0, ge=0)
    spike_factor: float = Field(default=1000.0, gt=0)
    noise_bps: float = Field(default=10.0, ge=0)
    # The interval a healthy source publishes (None: it publishes none, like Chainlink).
    confidence_bps: float | None = Field(default=None, ge=0)
    wide_confidence_bps: float = Field(default=500.0, ge=0)


def source_ticks(
    symbol: str,
    ts_s: FloatArray,
    true_usd: FloatArray,
    spec: SourceSpec,
    rng: np.random.Generator,
) -> list[Tick]:
    """The ticks `spec` prints for one symbol along its true path (one per grid point)."""
    n = int(ts_s.shape[0])
    price = true_usd.astype(np.float64, copy=True)
    conf: FloatArray | None = None
    if spec.confidence_bps is not None:
        conf = price * spec.confidence_bps / 1e4
    last = n
    k = min(spec.fault_step, n)
    if spec.fault is Fault.SPIKE and k < n:
        price[k] *= spec.spike_factor
    elif spec.fault is Fault.STUCK and k < n:
        price[k:] = price[k]
    elif spec.fault is Fault.DEAD:
        last = k
    elif spec.fault is Fault.NOISY:
        price *= np.exp(rng.standard_normal(n) * spec.noise_bps / 1e4)
    elif spec.fault is Fault.WIDE_CONFIDENCE:
        conf = price * (spec.confidence_bps or 0.0) / 1e4
        conf[k:] = price[k:] * spec.wide_confidence_bps / 1e4
    prices = price.tolist()
    stamps = ts_s.tolist()
    confs: list[float | None] = [None] * n if conf is None else conf.tolist()
    return [Tick(symbol, prices[i], stamps[i], spec.name, confs[i]) for i in range(last)]


def scenario_ticks(
    scenario: Scenario, sources: Sequence[SourceSpec], *, seed: int = 0
) -> list[Tick]:
    """Every source's ticks for every symbol, merged in time order.

    Within one grid time the order is symbol then source, as listed. Each (symbol, source) pair
    draws from its own seeded stream, so adding a source does not change the others' noise.
    """
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"source names must be unique, got {names}")
    per_pair: list[list[Tick]] = []
    for i, sym in enumerate(scenario.symbols):
        for j, spec in enumerate(sources):
            rng = np.random.default_rng([seed, i, j])
            per_pair.append(source_ticks(sym, scenario.ts_s, scenario.prices_usd[sym], spec, rng))
    out: list[Tick] = []
    for step in range(scenario.steps + 1):
        out.extend(ticks[step] for ticks in per_pair if step < len(ticks))
    return out


# ---------------------------------------------------------------------------- tick storm (E02)
@dataclass(frozen=True)
class StormTicks:
    """A tick-storm workload and what was injected into it."""

    ticks: list[Tick]
    truth: Scenario
    n_duplicates: int
    n_out_of_order: int


def storm_ticks(
    n_ticks: int,
    seed: int,
    *,
    n_symbols: int = 4,
    n_sources: int = 5,
    duplicate_share: float = 0.05,
    out_of_order_share: float = 0.05,
    interval_s: float = 1.0,
) -> StormTicks:
    """About `n_ticks` ticks from `n_sources` noisy sources per symbol, where a
    `duplicate_share` of the prints arrive twice and an `out_of_order_share` arrive only after
    the same source's next print (so they are older than what the sanitiser has seen).
    """
    if n_ticks < 1 or n_symbols < 1 or n_sources < 1:
        raise ValueError("storm_ticks needs n_ticks, n_symbols and n_sources ≥ 1")
    per_step = n_symbols * n_sources
    steps = max(2, round(n_ticks / (1.0 + duplicate_share) / per_step))
    starts = {f"SYM{i}": 100.0 * (i + 1) for i in range(n_symbols)}
    truth = gbm(starts, steps - 1, interval_s=interval_s, start_ts_s=1.7e9, seed=seed)
    specs = [SourceSpec(name=f"src{j}", fault=Fault.NOISY, noise_bps=5.0) for j in range(n_sources)]
    base = scenario_ticks(truth, specs, seed=seed)
    rng = np.random.default_rng([seed, 0xE02])
    draws = rng.random(len(base))
    held: dict[tuple[str, str], Tick] = {}
    out: list[Tick] = []
    n_dup = n_ooo = 0
    last_ts = float(truth.ts_s[-1])
    for tick, r in zip(base, draws, strict=True):
        key = (tick.symbol, tick.source)
        late = held.pop(key, None)
        if r < out_of_order_share and late is None and tick.ts_s < last_ts:
            held[key] = tick
            continue
        out.append(tick)
        if late is not None:
            out.append(late)
            n_ooo += 1
        if out_of_order_share <= r < out_of_order_share + duplicate_share:
            out.append(tick)
            n_dup += 1
    return StormTicks(out, truth, n_dup, n_ooo)
