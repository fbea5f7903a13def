"""E02-like tick storm (small): 20k ticks with 5% duplicates and 5% out of order through the
sanitiser. Correctness and bounded state only; timing is the benchmark's job (`tick_storm`)."""

from __future__ import annotations

import numpy as np
import pytest

from offchain.feeds import Accepted, Dropped, Reason, Sanitizer, storm_ticks, tick_storm

N_TICKS = 20_000


def test_tick_storm__duplicates_and_late_ticks__all_dropped_and_prices_track_the_truth() -> None:
    storm = storm_ticks(N_TICKS, seed=1)
    assert abs(len(storm.ticks) - N_TICKS) < 0.01 * N_TICKS
    assert storm.n_duplicates == pytest.approx(0.05 * N_TICKS, rel=0.15)
    assert storm.n_out_of_order == pytest.approx(0.05 * N_TICKS, rel=0.15)
    s = Sanitizer()
    peak = 0
    last_ts: dict[str, float] = {}
    dropped = {Reason.DUPLICATE: 0, Reason.OUT_OF_ORDER: 0}
    accepted = 0
    t0 = float(storm.truth.ts_s[0])
    for tick in storm.ticks:
        v = s.update(tick)
        peak = max(peak, s.state_entries)
        if isinstance(v, Dropped):
            dropped[v.reason] += 1
        elif isinstance(v, Accepted):
            accepted += 1
            assert v.ts_s >= last_ts.get(v.symbol, -np.inf)
            last_ts[v.symbol] = v.ts_s
            true_usd = storm.truth.prices_usd[v.symbol][round(v.ts_s - t0)]
            assert v.price_usd == pytest.approx(true_usd, rel=2e-3)
    assert dropped == {
        Reason.DUPLICATE: storm.n_duplicates,
        Reason.OUT_OF_ORDER: storm.n_out_of_order,
    }
    assert accepted > 0.85 * (len(storm.ticks) - storm.n_duplicates - storm.n_out_of_order)
    # 4 symbols × 5 sources plus one entry per symbol, whatever the tick count.
    assert peak == 4 + 4 * 5


def test_tick_storm__benchmark_helper__reports_throughput_latency_and_state() -> None:
    report = tick_storm(2_000, seed=3)
    assert report["ticks"] > 1_900
    assert report["ticks_per_s"] > 0
    assert 0 < report["p50_latency_us"] <= report["p99_latency_us"] <= report["max_latency_us"]
    assert report["peak_state_entries"] == 24
    assert report["dropped_duplicate"] == report["injected_duplicates"] > 0
    assert report["dropped_out_of_order"] == report["injected_out_of_order"] > 0
