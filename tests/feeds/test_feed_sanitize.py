"""The sanitiser against the oracle threats it exists for (threats C08, C09, C10, C14, C15,
C17, D13), plus its bookkeeping guards (staleness, outliers, caps) and the fault sources."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from offchain.errors import ConfigError
from offchain.feeds import (
    Accepted,
    Dropped,
    Fault,
    Reason,
    Refused,
    Sanitizer,
    SanitizerConfig,
    SourceSpec,
    Tick,
    check_clock_skew,
    gbm,
    sanitize_all,
    scenario_ticks,
)

T0 = 1_700_000_000.0


def tick(
    source: str, price_usd: float, ts_s: float, *, symbol: str = "ETH", conf: float | None = None
) -> Tick:
    return Tick(symbol, price_usd, T0 + ts_s, source, conf)


def feed(s: Sanitizer, *ticks: Tick) -> list[Accepted | Refused | Dropped]:
    return [s.update(t) for t in ticks]


def five_sources_at(price_usd: float, ts_s: float) -> list[Tick]:
    return [tick(f"s{i}", price_usd, ts_s) for i in range(5)]


# ---------------------------------------------------------------------------- D13 cold start
def test_cold_start__no_ticks__no_price() -> None:
    status = Sanitizer().current("ETH", T0)
    assert isinstance(status, Refused)
    assert status.reason is Reason.TOO_FEW_SOURCES


def test_cold_start__one_source_ticking__never_yields_a_price_until_quorum() -> None:
    s = Sanitizer()
    verdicts = feed(s, *(tick("only", 3000.0 + i, float(i)) for i in range(50)))
    assert all(isinstance(v, Refused) and v.reason is Reason.TOO_FEW_SOURCES for v in verdicts)
    assert isinstance(s.current("ETH", T0 + 49), Refused)
    # Two more independent sources make the quorum of three.
    *_, last = feed(s, tick("b", 3049.0, 49.5), tick("c", 3049.0, 49.6))
    assert isinstance(last, Accepted)
    assert last.price_usd == 3049.0


# ---------------------------------------------------------------------------- C08 one spiking
def test_c08__one_of_five_sources_spikes__median_ignores_it() -> None:
    truth = gbm({"ETH": 3000.0}, 200, interval_s=1.0, start_ts_s=T0, seed=1)
    specs = [SourceSpec(name=f"s{i}") for i in range(4)]
    specs.append(SourceSpec(name="spiky", fault=Fault.SPIKE, fault_step=120, spike_factor=1000.0))
    s = Sanitizer()
    spike_seen = False
    for t in scenario_ticks(truth, specs, seed=1):
        v = s.update(t)
        if isinstance(v, Accepted):
            true_now = truth.prices_usd["ETH"][int(t.ts_s - T0)]
            assert v.price_usd == pytest.approx(true_now, rel=5e-3)
            if ("spiky", Reason.OUTLIER) in v.excluded:
                spike_seen = True
                assert "spiky" not in v.sources_used
    assert spike_seen


# ---------------------------------------------------------------------------- C09 two sources
def test_c09__two_live_sources_one_x1000__refused_not_averaged() -> None:
    s = Sanitizer()
    v = feed(s, tick("a", 3000.0, 0), tick("b", 3_000_000.0, 1))[-1]
    assert isinstance(v, Refused)
    assert v.reason is Reason.TOO_FEW_SOURCES


def test_c09__quorum_of_two_configured__disagreement_refused_never_the_mean() -> None:
    s = Sanitizer(SanitizerConfig(min_sources=2))
    agree = feed(s, tick("a", 3000.0, 0), tick("b", 3001.0, 1))[-1]
    assert isinstance(agree, Accepted)
    assert agree.price_usd == pytest.approx(3000.5)
    v = s.update(tick("b", 3_001_000.0, 2))
    assert isinstance(v, Refused)
    assert v.reason is Reason.DISPERSION
    # D13 fail closed: the last good price is kept for reports but is not the current price.
    assert isinstance(s.current("ETH", T0 + 2), Refused)
    assert s.last_accepted("ETH") == agree


def test_dispersion__no_majority_within_tolerance__refused() -> None:
    s = Sanitizer()
    v = feed(s, tick("a", 100.0, 0), tick("b", 100.0, 0), tick("c", 150.0, 0), tick("d", 150.0, 0))
    assert isinstance(v[-1], Refused)
    assert v[-1].reason is Reason.DISPERSION


# ---------------------------------------------------------------------------- C10 jumps
def test_c10__single_source_jumps_60_percent__untrusted_until_a_second_source_agrees() -> None:
    s = Sanitizer(SanitizerConfig(min_sources=1))
    assert isinstance(s.update(tick("a", 3000.0, 0)), Accepted)
    jumped = s.update(tick("a", 1200.0, 1))
    assert isinstance(jumped, Refused)
    assert jumped.reason is Reason.JUMP_UNCONFIRMED
    # The same source repeating itself is not independent confirmation.
    assert isinstance(s.update(tick("a", 1201.0, 2)), Refused)
    assert isinstance(s.current("ETH", T0 + 2), Refused)
    confirmed = s.update(tick("b", 1200.5, 3))
    assert isinstance(confirmed, Accepted)
    assert confirmed.price_usd == pytest.approx(1200.75)
    assert confirmed.sources_used == ("a", "b")


def test_c10__quorum_moves_more_than_50_percent__needs_one_more_independent_tick() -> None:
    s = Sanitizer()
    assert isinstance(feed(s, *five_sources_at(3000.0, 0))[-1], Accepted)
    verdicts = feed(s, *five_sources_at(1000.0, 1))
    # s0 and s1 are outvoted; s2's tick makes 1000 the majority (pending); s3 confirms it.
    assert [type(v).__name__ for v in verdicts] == [
        "Accepted",
        "Accepted",
        "Refused",
        "Accepted",
        "Accepted",
    ]
    assert [v.price_usd for v in verdicts if isinstance(v, Accepted)] == [
        3000.0,
        3000.0,
        1000.0,
        1000.0,
    ]
    assert isinstance(verdicts[2], Refused)
    assert verdicts[2].reason is Reason.JUMP_UNCONFIRMED


def test_c10__move_below_the_jump_limit__accepted_at_once() -> None:
    s = Sanitizer(SanitizerConfig(min_sources=1))
    s.update(tick("a", 3000.0, 0))
    v = s.update(tick("a", 1800.0, 1))  # −40%
    assert isinstance(v, Accepted)


# ---------------------------------------------------------------------------- C14 order
def test_c14__duplicate_and_out_of_order_ticks__dropped_and_price_unchanged() -> None:
    s = Sanitizer()
    feed(s, *five_sources_at(3000.0, 10))
    before = s.current("ETH", T0 + 10)
    dup = s.update(tick("s0", 3000.0, 10))
    late = s.update(tick("s1", 9999.0, 5))
    assert isinstance(dup, Dropped)
    assert dup.reason is Reason.DUPLICATE
    assert isinstance(late, Dropped)
    assert late.reason is Reason.OUT_OF_ORDER
    assert s.current("ETH", T0 + 10) == before
    assert s.last_accepted("ETH") == before


def test_c14__newest_agreeing_tick_older_than_last_accepted__refused_not_regressed() -> None:
    s = Sanitizer()
    feed(s, *five_sources_at(3000.0, 100))
    newer = s.update(tick("s0", 3001.0, 101))
    assert isinstance(newer, Accepted)
    assert newer.ts_s == T0 + 101
    # s0 now prints an outlier: the agreeing sources are all at t=100, older than what was
    # accepted, so the price would step back in time.
    v = s.update(tick("s0", 4000.0, 102))
    assert isinstance(v, Refused)
    assert v.reason is Reason.TIME_REGRESSION
    ok = s.update(tick("s1", 3000.0, 103))
    assert isinstance(ok, Accepted)
    assert ok.ts_s == T0 + 103


def test_c14__accepted_timestamps__never_decrease_over_a_shuffled_stream() -> None:
    truth = gbm({"ETH": 3000.0}, 300, interval_s=1.0, start_ts_s=T0, seed=4)
    ticks = scenario_ticks(truth, [SourceSpec(name=f"s{i}") for i in range(5)], seed=4)
    rng = np.random.default_rng(4)
    # Local shuffles: each tick moves up to ±7 positions, so some arrive late.
    order = np.argsort(np.arange(len(ticks)) + rng.uniform(-7, 7, len(ticks)))
    accepted = [v for v in sanitize_all([ticks[i] for i in order]) if isinstance(v, Accepted)]
    assert len(accepted) > 200
    assert all(a.ts_s <= b.ts_s for a, b in itertools.pairwise(accepted))


# ---------------------------------------------------------------------------- C15 clock skew
@pytest.mark.parametrize("skew_s", [600.0, -600.0, 3600.0])
def test_c15__engine_clock_ten_minutes_off_chain_time__detected(skew_s: float) -> None:
    result = check_clock_skew(T0 + skew_s, T0)
    assert not result.ok
    assert result.skew_s == skew_s
    assert ("ahead of" if skew_s > 0 else "behind") in result.describe()


def test_c15__skew_within_a_few_blocks__accepted() -> None:
    assert check_clock_skew(T0 + 24.0, T0).ok
    assert check_clock_skew(T0 - 119.0, T0).ok
    assert not check_clock_skew(float("nan"), T0).ok


# ---------------------------------------------------------------------------- C17 confidence
def test_c17__wide_confidence_source__excluded_and_quorum_refused_without_it() -> None:
    s = Sanitizer()
    v = feed(
        s, tick("a", 3000.0, 0, conf=1.5), tick("b", 3000.0, 0, conf=2.0), tick("c", 3000.0, 0)
    )
    assert isinstance(v[-1], Accepted)
    wide = s.update(tick("a", 3000.0, 1, conf=150.0))  # 5% of price > 1% limit
    assert isinstance(wide, Refused)
    assert wide.reason is Reason.TOO_FEW_SOURCES
    assert ("a", Reason.WIDE_CONFIDENCE) in wide.excluded


def test_c17__wide_confidence_fault_source__never_used_while_wide() -> None:
    truth = gbm({"ETH": 3000.0}, 60, interval_s=1.0, start_ts_s=T0, seed=2)
    specs = [SourceSpec(name=f"s{i}", confidence_bps=5.0) for i in range(3)]
    specs.append(
        SourceSpec(name="unsure", fault=Fault.WIDE_CONFIDENCE, fault_step=30, confidence_bps=5.0)
    )
    for t, v in zip(ticks := scenario_ticks(truth, specs), sanitize_all(ticks), strict=True):
        if isinstance(v, Accepted) and t.ts_s >= T0 + 30 and t.source == "unsure":
            assert "unsure" not in v.sources_used
            assert ("unsure", Reason.WIDE_CONFIDENCE) in v.excluded


# ---------------------------------------------------------------------------- staleness, outliers
def test_stale_source__older_than_max_age__does_not_count() -> None:
    s = Sanitizer(SanitizerConfig(max_age_s=60.0))
    feed(s, tick("a", 3000.0, 0), tick("b", 3000.0, 0), tick("c", 3000.0, 0), tick("d", 3000.0, 50))
    fresh = s.current("ETH", T0 + 55)
    assert isinstance(fresh, Accepted)
    assert len(fresh.sources_used) == 4
    later = s.current("ETH", T0 + 61)
    assert isinstance(later, Refused)
    assert later.reason is Reason.TOO_FEW_SOURCES
    assert ("a", Reason.STALE_SOURCE) in later.excluded
    assert ("d", Reason.STALE_SOURCE) not in later.excluded


def test_outlier_guard__source_beyond_max_deviation__excluded_and_nearby_one_kept() -> None:
    s = Sanitizer(SanitizerConfig(max_deviation_bps=200.0))
    v = feed(
        s,
        tick("a", 3000.0, 0),
        tick("b", 3000.0, 0),
        tick("c", 3030.0, 0),  # +1%: kept
        tick("d", 3000.0, 0),
        tick("e", 3100.0, 0),  # +3.3%: out
    )[-1]
    assert isinstance(v, Accepted)
    assert v.sources_used == ("a", "b", "c", "d")
    assert v.excluded == (("e", Reason.OUTLIER),)
    assert v.price_usd == 3000.0


def test_stuck_source__market_moves_away__excluded_as_outlier() -> None:
    truth = gbm(
        {"ETH": 3000.0}, 400, interval_s=1.0, mu_annual=-10_000.0, sigma_annual=0.1, start_ts_s=T0
    )
    assert truth.prices_usd["ETH"][-1] < 0.95 * 3000.0  # the market really moved
    specs = [SourceSpec(name=f"s{i}") for i in range(4)]
    specs.append(SourceSpec(name="stuck", fault=Fault.STUCK, fault_step=10))
    last = sanitize_all(scenario_ticks(truth, specs))[-1]
    assert isinstance(last, Accepted)
    assert ("stuck", Reason.OUTLIER) in last.excluded
    assert last.price_usd == pytest.approx(truth.prices_usd["ETH"][-1])


def test_zero_price_source__marked_invalid_and_not_used() -> None:
    s = Sanitizer()
    v = feed(s, *five_sources_at(3000.0, 0), tick("s4", 0.0, 1))[-1]
    assert isinstance(v, Accepted)
    assert ("s4", Reason.INVALID_PRICE) in v.excluded
    assert "s4" not in v.sources_used


def test_tick_from_the_future__dropped() -> None:
    s = Sanitizer()
    v = s.update(tick("a", 3000.0, 100), now_s=T0)
    assert isinstance(v, Dropped)
    assert v.reason is Reason.FROM_FUTURE


# ---------------------------------------------------------------------------- bounded state
def test_source_cap__junk_source_names__dropped_until_a_slot_goes_stale() -> None:
    s = Sanitizer(SanitizerConfig(max_sources_per_symbol=4, min_sources=3))
    feed(s, *(tick(f"s{i}", 3000.0, 0) for i in range(4)))
    v = s.update(tick("junk", 3000.0, 1))
    assert isinstance(v, Dropped)
    assert v.reason is Reason.SOURCE_LIMIT
    assert s.state_entries == 1 + 4
    feed(s, *(tick(f"s{i}", 3000.0, 100) for i in range(1, 4)))  # s0 is now stale
    assert isinstance(s.update(tick("new", 3000.0, 100)), Accepted)
    assert s.state_entries == 1 + 4


def test_symbol_cap__new_symbol_beyond_it__dropped() -> None:
    s = Sanitizer(SanitizerConfig(max_symbols=2))
    s.update(tick("a", 1.0, 0, symbol="X"))
    s.update(tick("a", 1.0, 0, symbol="Y"))
    v = s.update(tick("a", 1.0, 0, symbol="Z"))
    assert isinstance(v, Dropped)
    assert v.reason is Reason.SYMBOL_LIMIT


# ---------------------------------------------------------------------------- config
def test_config__bad_value__raises_config_error_naming_the_field() -> None:
    with pytest.raises(ConfigError, match="min_sources"):
        SanitizerConfig.from_mapping({"min_sources": 0})
    with pytest.raises(ConfigError, match="max_sources_per_symbol"):
        SanitizerConfig.from_mapping({"min_sources": 5, "max_sources_per_symbol": 4})
    with pytest.raises(ConfigError, match="typo_field"):
        SanitizerConfig.from_mapping({"typo_field": 1})


def test_config__defaults__are_the_documented_ones() -> None:
    c = SanitizerConfig.from_mapping({})
    assert (c.min_sources, c.max_age_s, c.max_deviation_bps) == (3, 60.0, 200.0)
    assert (c.max_jump_bps, c.jump_confirmations, c.max_confidence_bps) == (5000.0, 2, 100.0)
    assert c.max_clock_skew_s == 120.0


# ---------------------------------------------------------------------------- fault sources
def test_fault_sources__each_fault__changes_only_what_it_says() -> None:
    truth = gbm({"ETH": 3000.0}, 20, interval_s=1.0, start_ts_s=T0, seed=9)
    p = truth.prices_usd["ETH"]
    specs = [
        SourceSpec(name="clean"),
        SourceSpec(name="spike", fault=Fault.SPIKE, fault_step=5, spike_factor=3.0),
        SourceSpec(name="stuck", fault=Fault.STUCK, fault_step=5),
        SourceSpec(name="dead", fault=Fault.DEAD, fault_step=5),
        SourceSpec(name="noisy", fault=Fault.NOISY, noise_bps=10.0),
        SourceSpec(
            name="wide", fault=Fault.WIDE_CONFIDENCE, fault_step=5, wide_confidence_bps=500.0
        ),
    ]
    ticks = scenario_ticks(truth, specs, seed=9)
    assert ticks == scenario_ticks(truth, specs, seed=9)
    by = {spec.name: [t for t in ticks if t.source == spec.name] for spec in specs}
    assert [t.price_usd for t in by["clean"]] == p.tolist()
    spiked = np.array([t.price_usd for t in by["spike"]])
    assert spiked[5] == pytest.approx(3 * p[5])
    assert np.array_equal(np.delete(spiked, 5), np.delete(p, 5))
    assert [t.price_usd for t in by["stuck"]][5:] == [p[5]] * 16
    assert [t.ts_s for t in by["stuck"]] == truth.ts_s.tolist()  # fresh stamps, stale value
    assert len(by["dead"]) == 5
    noise = np.log(np.array([t.price_usd for t in by["noisy"]]) / p)
    assert 0 < np.abs(noise).max() < 50e-4
    assert by["wide"][4].confidence_usd == 0.0
    assert by["wide"][5].confidence_usd == pytest.approx(0.05 * p[5])
