"""The sanitiser: raw ticks from several sources in, one trusted price per symbol out, or a refusal.

Pure and deterministic (time is always an argument). Per tick the work is bounded by the number
of sources per symbol, itself capped, so a tick costs O(1) and state never grows with traffic.

Guards, in the order a tick meets them (defaults in `SanitizerConfig`):
1. Arrival (the tick is `Dropped` and changes nothing): a tick whose timestamp is not newer than
   its source's last one is a duplicate (equal) or out of order (older) (C14); a tick from the
   future beyond `max_future_s`; a new source or symbol beyond the caps.
2. Source quality (the source stays in the book but does not count): a non-positive or
   non-finite price; a confidence interval wider than `max_confidence_bps` of the price (C17);
   a last tick older than `max_age_s` (staleness).
3. Aggregation (the symbol gets `Refused`): fewer than `min_sources` usable sources (D13, C09);
   sources further than `max_deviation_bps` from the median are outliers and left out (C08), and
   if the rest are fewer than `min_sources` or not a strict majority, the sources disagree and
   nothing is averaged (C09); the accepted price is the median of the agreeing sources.
4. Jump (C10): a price more than `max_jump_bps` away from the last accepted one is held until
   ticks from `jump_confirmations` distinct agreeing sources have confirmed it.
5. Time: an accepted price's timestamp (its newest agreeing tick) never goes backwards (C14).

`check_clock_skew` compares the engine's clock with chain time (C15). The engine must treat
anything but `Accepted` as "no price" and stop attesting (fail closed, D13).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offchain.errors import ConfigError
from offchain.feeds.ticks import Tick


class Reason(StrEnum):
    """Why a tick was dropped, a source left out, or a price refused."""

    # A tick dropped on arrival.
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    FROM_FUTURE = "from_future"
    INVALID_TIMESTAMP = "invalid_timestamp"
    SOURCE_LIMIT = "source_limit"
    SYMBOL_LIMIT = "symbol_limit"
    # A source left out of the median.
    INVALID_PRICE = "invalid_price"
    WIDE_CONFIDENCE = "wide_confidence"
    STALE_SOURCE = "stale_source"
    OUTLIER = "outlier"
    # No price for the symbol.
    TOO_FEW_SOURCES = "too_few_sources"
    DISPERSION = "dispersion"
    JUMP_UNCONFIRMED = "jump_unconfirmed"
    TIME_REGRESSION = "time_regression"


# Ten Ethereum blocks: block timestamps lag the wall clock by up to a block, so the limit must
# exceed that, yet sit well inside the ±10 min a misconfigured clock produces (C15).
DEFAULT_MAX_CLOCK_SKEW_S = 120.0


class SanitizerConfig(BaseModel):
    """Sanitiser thresholds. Basis points (bps) are relative to the price: 100 bps = 1%."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_sources: int = Field(default=3, ge=1)
    # Synthetix uses 60 s for liquidations; a tick older than this does not count.
    max_age_s: float = Field(default=60.0, gt=0)
    max_future_s: float = Field(default=5.0, ge=0)
    max_deviation_bps: float = Field(default=200.0, gt=0)
    max_jump_bps: float = Field(default=5_000.0, gt=0)
    jump_confirmations: int = Field(default=2, ge=1)
    max_confidence_bps: float = Field(default=100.0, gt=0)
    max_sources_per_symbol: int = Field(default=16, ge=1)
    max_symbols: int = Field(default=1_024, ge=1)
    max_clock_skew_s: float = Field(default=DEFAULT_MAX_CLOCK_SKEW_S, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> SanitizerConfig:
        if self.min_sources > self.max_sources_per_symbol:
            raise ValueError("min_sources cannot exceed max_sources_per_symbol")
        if self.jump_confirmations > self.max_sources_per_symbol:
            raise ValueError("jump_confirmations cannot exceed max_sources_per_symbol")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SanitizerConfig:
        """Validated config from user input; raises ConfigError naming the bad field."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "sanitizer config"
            raise ConfigError(
                f"sanitizer config: {where}: {first['msg']}",
                f"fix it or leave it out for the default ({_defaults_hint()})",
            ) from exc


def _defaults_hint() -> str:
    return ", ".join(f"{k}={v}" for k, v in SanitizerConfig().model_dump().items())


@dataclass(frozen=True, slots=True)
class Accepted:
    """A trusted price: the median of `sources_used`, as of `ts_s` (their newest tick)."""

    symbol: str
    price_usd: float
    ts_s: float
    sources_used: tuple[str, ...]
    excluded: tuple[tuple[str, Reason], ...] = ()


@dataclass(frozen=True, slots=True)
class Refused:
    """No price for `symbol` now. The engine must not attest anything that depends on it."""

    symbol: str
    reason: Reason
    detail: str
    excluded: tuple[tuple[str, Reason], ...] = ()


@dataclass(frozen=True, slots=True)
class Dropped:
    """`tick` was discarded on arrival and changed nothing."""

    tick: Tick
    reason: Reason


PriceStatus = Accepted | Refused
Verdict = Accepted | Refused | Dropped


@dataclass(slots=True)
class _Source:
    ts_s: float
    price_usd: float
    unusable: Reason | None


@dataclass(slots=True)
class _Symbol:
    sources: dict[str, _Source] = field(default_factory=dict)
    clock_s: float = -math.inf  # newest tick time seen: the data clock when no time is given
    last: Accepted | None = None
    pending_jump_usd: float | None = None
    jump_confirmers: set[str] = field(default_factory=set)


class Sanitizer:
    """Per-symbol source book and last accepted price: feed it with `update`, read `current`."""

    def __init__(self, config: SanitizerConfig | None = None) -> None:
        self.config = config or SanitizerConfig()
        self._symbols: dict[str, _Symbol] = {}
        self._entries = 0
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ API
    def update(self, tick: Tick, now_s: float | None = None) -> Verdict:
        """Take one tick; return the symbol's price after it, a refusal, or why it was dropped.

        `now_s` is the engine's clock; without it the newest tick time seen for the symbol is
        used, which keeps replays independent of the wall clock but cannot catch ticks from the
        future: a live engine passes its clock.
        """
        cfg = self.config
        if not math.isfinite(tick.ts_s):
            return self._drop(tick, Reason.INVALID_TIMESTAMP)
        state = self._symbols.get(tick.symbol)
        if state is None:
            if len(self._symbols) >= cfg.max_symbols:
                return self._drop(tick, Reason.SYMBOL_LIMIT)
            state = self._symbols[tick.symbol] = _Symbol()
            self._entries += 1
        now = max(state.clock_s, tick.ts_s) if now_s is None else now_s
        if tick.ts_s > now + cfg.max_future_s:
            return self._drop(tick, Reason.FROM_FUTURE)
        src = state.sources.get(tick.source)
        if src is not None:
            if tick.ts_s == src.ts_s:
                return self._drop(tick, Reason.DUPLICATE)
            if tick.ts_s < src.ts_s:
                return self._drop(tick, Reason.OUT_OF_ORDER)
        elif len(state.sources) >= cfg.max_sources_per_symbol and not self._evict_stale(state, now):
            return self._drop(tick, Reason.SOURCE_LIMIT)
        state.clock_s = max(state.clock_s, tick.ts_s)
        unusable = self._quality(tick)
        if src is None:
            state.sources[tick.source] = _Source(tick.ts_s, tick.price_usd, unusable)
            self._entries += 1
        else:
            src.ts_s, src.price_usd, src.unusable = tick.ts_s, tick.price_usd, unusable
        status = self._evaluate(tick.symbol, state, now, trigger=tick.source)
        if isinstance(status, Accepted):
            state.last = status
        self.counts["accepted" if isinstance(status, Accepted) else status.reason] += 1
        return status

    def current(self, symbol: str, now_s: float) -> PriceStatus:
        """The symbol's price as of `now_s`, re-checking freshness; changes no state."""
        state = self._symbols.get(symbol)
        if state is None or not state.sources:
            return Refused(symbol, Reason.TOO_FEW_SOURCES, "no ticks received yet")
        # Sources that have gone stale since the last tick drop out here, so a feed that stops
        # turns into a refusal without waiting for another tick.
        return self._evaluate(symbol, state, now_s, trigger=None)

    def last_accepted(self, symbol: str) -> Accepted | None:
        """The last good price, whatever has happened since (for reports; not for attesting)."""
        state = self._symbols.get(symbol)
        return None if state is None else state.last

    @property
    def state_entries(self) -> int:
        """Symbols plus (symbol, source) entries held: the sanitiser's memory, capped by config."""
        return self._entries

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(self._symbols)

    # ------------------------------------------------------------------ internals
    def _drop(self, tick: Tick, reason: Reason) -> Dropped:
        self.counts[reason] += 1
        return Dropped(tick, reason)

    def _quality(self, tick: Tick) -> Reason | None:
        p = tick.price_usd
        if not (math.isfinite(p) and p > 0):
            return Reason.INVALID_PRICE
        c = tick.confidence_usd
        if c is not None and not (
            math.isfinite(c) and 0 <= c <= p * self.config.max_confidence_bps / 1e4
        ):
            return Reason.WIDE_CONFIDENCE
        return None

    def _evict_stale(self, state: _Symbol, now_s: float) -> bool:
        """Free a slot held by a source that has gone stale (so junk names cannot lock out a
        real new source for good). O(sources), paid only at the cap."""
        oldest = min(state.sources, key=lambda name: state.sources[name].ts_s)
        if now_s - state.sources[oldest].ts_s <= self.config.max_age_s:
            return False
        del state.sources[oldest]
        self._entries -= 1
        return True

    def _evaluate(
        self, symbol: str, state: _Symbol, now_s: float, trigger: str | None
    ) -> PriceStatus:
        cfg = self.config
        excluded: list[tuple[str, Reason]] = []
        fresh: list[tuple[float, str, float]] = []  # (price, source, ts)
        for name, s in state.sources.items():
            if now_s - s.ts_s > cfg.max_age_s:
                excluded.append((name, Reason.STALE_SOURCE))
            elif s.unusable is not None:
                excluded.append((name, s.unusable))
            else:
                fresh.append((s.price_usd, name, s.ts_s))
        if len(fresh) < cfg.min_sources:
            return Refused(
                symbol,
                Reason.TOO_FEW_SOURCES,
                f"{len(fresh)} fresh usable source(s), {cfg.min_sources} required",
                tuple(excluded),
            )
        fresh.sort()
        mid = _median([p for p, _, _ in fresh])
        tolerance = mid * cfg.max_deviation_bps / 1e4
        agreeing = [f for f in fresh if abs(f[0] - mid) <= tolerance]
        excluded.extend((name, Reason.OUTLIER) for p, name, _ in fresh if abs(p - mid) > tolerance)
        if len(agreeing) < cfg.min_sources or 2 * len(agreeing) <= len(fresh):
            return Refused(
                symbol,
                Reason.DISPERSION,
                f"only {len(agreeing)} of {len(fresh)} sources within "
                f"{cfg.max_deviation_bps:g} bps of the median {mid:.6g}",
                tuple(excluded),
            )
        price = _median([p for p, _, _ in agreeing])
        ts = max(t for _, _, t in agreeing)
        used = tuple(sorted(name for _, name, _ in agreeing))
        last = state.last
        if last is not None and ts < last.ts_s:
            return Refused(
                symbol,
                Reason.TIME_REGRESSION,
                f"agreeing sources are older ({ts}) than the last accepted price ({last.ts_s})",
                tuple(excluded),
            )
        if last is not None and abs(price / last.price_usd - 1.0) * 1e4 > cfg.max_jump_bps:
            confirmers = self._confirm_jump(state, price, trigger, used)
            if len(confirmers) < cfg.jump_confirmations:
                return Refused(
                    symbol,
                    Reason.JUMP_UNCONFIRMED,
                    f"{price:.6g} is {abs(price / last.price_usd - 1.0):.0%} from the last "
                    f"accepted {last.price_usd:.6g}; confirmed by {len(confirmers)} of "
                    f"{cfg.jump_confirmations} independent sources",
                    tuple(excluded),
                )
        if trigger is not None:
            state.pending_jump_usd = None
            state.jump_confirmers = set()
        return Accepted(symbol, price, ts, used, tuple(excluded))

    def _confirm_jump(
        self, state: _Symbol, price: float, trigger: str | None, used: tuple[str, ...]
    ) -> set[str]:
        """The sources that have confirmed the pending jump, counting `trigger` when it agrees.

        A confirmation is a tick, not a standing quote: the source whose tick completed the
        quorum counts once, and a second independent source must print the new level again.
        Reads (`trigger` None) only look.
        """
        pending = state.pending_jump_usd
        same = (
            pending is not None
            and abs(price / pending - 1.0) * 1e4 <= self.config.max_deviation_bps
        )
        if trigger is None:
            return state.jump_confirmers if same else set()
        if not same:
            state.jump_confirmers = set()
        state.pending_jump_usd = price
        if trigger in used:
            state.jump_confirmers.add(trigger)
        return state.jump_confirmers


def _median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    half = n // 2
    return sorted_values[half] if n % 2 else 0.5 * (sorted_values[half - 1] + sorted_values[half])


# ---------------------------------------------------------------------------- clock skew (C15)
@dataclass(frozen=True, slots=True)
class ClockSkew:
    """Engine clock minus chain time; `ok` when within ±`max_skew_s`."""

    skew_s: float
    max_skew_s: float
    ok: bool

    def describe(self) -> str:
        side = "ahead of" if self.skew_s > 0 else "behind"
        return (
            f"engine clock is {abs(self.skew_s):.0f} s {side} chain time "
            f"(limit ±{self.max_skew_s:g} s)"
        )


def check_clock_skew(
    engine_now_s: float, chain_now_s: float, *, max_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S
) -> ClockSkew:
    """Compare the engine clock with chain time (the latest block's timestamp).

    On-chain checks use block.timestamp only; this tells the engine that its own notion of "fresh"
    and of attestation expiry has drifted, so it should stop attesting until fixed.
    """
    skew = engine_now_s - chain_now_s
    return ClockSkew(skew, max_skew_s, math.isfinite(skew) and abs(skew) <= max_skew_s)


# ---------------------------------------------------------------------------- benchmark helper
def tick_storm(n_ticks: int, seed: int, config: SanitizerConfig | None = None) -> dict[str, float]:
    """Run an E02 tick storm (5% duplicates, 5% out of order) through a fresh sanitiser.

    Returns throughput (`ticks_per_s`), per-tick latency percentiles in microseconds and the peak
    state size, plus the verdict counts so a benchmark can check it did real work.
    """
    from offchain.feeds.faults import storm_ticks

    storm = storm_ticks(n_ticks, seed)
    sanitizer = Sanitizer(config)
    latencies_ns = np.empty(len(storm.ticks), dtype=np.int64)
    peak = 0
    clock = time.perf_counter_ns
    started = clock()
    for i, tick in enumerate(storm.ticks):
        t0 = clock()
        sanitizer.update(tick)
        latencies_ns[i] = clock() - t0
        peak = max(peak, sanitizer.state_entries)
    elapsed_s = (clock() - started) / 1e9
    counts = sanitizer.counts
    return {
        "ticks": float(len(storm.ticks)),
        "ticks_per_s": len(storm.ticks) / elapsed_s if elapsed_s > 0 else math.inf,
        "p50_latency_us": float(np.percentile(latencies_ns, 50)) / 1e3,
        "p99_latency_us": float(np.percentile(latencies_ns, 99)) / 1e3,
        "max_latency_us": float(latencies_ns.max()) / 1e3,
        "peak_state_entries": float(peak),
        "accepted": float(counts["accepted"]),
        "refused": float(
            sum(v for k, v in counts.items() if k not in _DROP_KEYS and k != "accepted")
        ),
        "dropped_duplicate": float(counts[Reason.DUPLICATE]),
        "dropped_out_of_order": float(counts[Reason.OUT_OF_ORDER]),
        "injected_duplicates": float(storm.n_duplicates),
        "injected_out_of_order": float(storm.n_out_of_order),
    }


_DROP_KEYS = frozenset(
    {
        Reason.DUPLICATE,
        Reason.OUT_OF_ORDER,
        Reason.FROM_FUTURE,
        Reason.INVALID_TIMESTAMP,
        Reason.SOURCE_LIMIT,
        Reason.SYMBOL_LIMIT,
    }
)


def sanitize_all(ticks: Iterable[Tick], config: SanitizerConfig | None = None) -> list[Verdict]:
    """Every verdict for a finite stream of ticks (replays and tests)."""
    s = Sanitizer(config)
    return [s.update(t) for t in ticks]
