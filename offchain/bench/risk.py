"""`marginsync bench risk`: speed, memory and capital efficiency of the vectorised risk library.

Workloads (synthetic, seeded):
  (a) standard + volatility margin, 100,000 accounts × 8 perps, full recompute per tick;
  (b) scenario portfolio margin, 10,000 accounts × 20 positions (perps and options, 4 underlyings);
  (c) Monte-Carlo VaR/ES, 10,000 accounts × 2,000 correlated scenarios;
  (d) (a)-(c) as plain per-account Python loops on a sample of accounts, scaled to the full size,
      checked equal to the vectorised result, so each speedup is a ratio from the same run;
  (e) capital efficiency of portfolio margin against the standard requirement.
Latency is wall time of the library call only (inputs prepared beforehand), with the CPU time
beside it because on a shared 2-core machine other processes inflate wall time (the load average
is printed); goals are judged on the wall median. Peak memory is the tracemalloc peak of one call
(numpy reports its buffers to tracemalloc) and the process's max RSS. Kernels are deliberately
single-threaded (einsum, not BLAS): the engine scales by running account shards as processes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from offchain.risk import (
    Instruments,
    MarketConfig,
    Positions,
    RiskConfig,
    RiskEngine,
    ScenarioMarginConfig,
    VarEs,
    black76_price,
    correlated_normal_returns,
    monte_carlo_var_es,
)
from offchain.risk.checks import FloatArray
from offchain.risk.portfolio import (
    VolMode,
    VolShockLaw,
    build_scenario_grid,
    offset_credit_matrix,
    option_scenario_values,
)

GOALS_MS = {"a_linear": 20.0, "b_portfolio": 200.0, "c_monte_carlo": 500.0}
NOW_S = 1_750_000_000.0
DAY_S = 86_400.0
PM_UNDERLYINGS = ("BTC", "ETH", "SOL", "DOGE")
PM_SPOT_USD = np.array([60_000.0, 3_000.0, 150.0, 0.15])
PM_CORRELATIONS = {"BTC/ETH": 0.8, "BTC/SOL": 0.7, "ETH/SOL": 0.75, "BTC/DOGE": 0.6}
# Daily return vols and correlations for the Monte-Carlo workload (same order as PM_UNDERLYINGS).
MC_SIGMA_DAILY = np.array([0.03, 0.04, 0.055, 0.06])
MC_CORR = np.array(
    [[1.0, 0.8, 0.7, 0.6], [0.8, 1.0, 0.75, 0.6], [0.7, 0.75, 1.0, 0.55], [0.6, 0.6, 0.55, 1.0]]
)


# ---------------------------------------------------------------------------------- workloads


def perp_workload(
    n_accounts: int, n_markets: int = 8, seed: int = 1
) -> tuple[RiskEngine, FloatArray]:
    """Every account holds one perp in each of `n_markets` markets, all on the volatility model
    (the standard requirement is computed alongside as the fallback)."""
    names = [f"A{i}" for i in range(n_markets)]
    instruments = Instruments.build(
        names, [f"{n}-PERP" for n in names], ["perp"] * n_markets, names
    )
    rng = np.random.default_rng(seed)
    prices = np.geomspace(1.0, 60_000.0, n_markets)
    n = n_accounts * n_markets
    # Notionals are lognormal around $20k so a few positions cross the $1M and $5M tiers.
    notional = rng.lognormal(math.log(20_000.0), 1.5, n) * rng.choice([-1.0, 1.0], n)
    market = np.tile(np.arange(n_markets), n_accounts)
    positions = Positions.build(
        n_accounts,
        np.repeat(np.arange(n_accounts), n_markets),
        market,
        notional / prices[market],
        n_markets,
    )
    config = RiskConfig(
        markets=tuple(MarketConfig(underlying=n, model="volatility") for n in names)
    )
    return RiskEngine(config, instruments, positions), prices


def option_instruments() -> Instruments:
    """Per underlying: one perp and 5 expiries × 10 strikes × call/put = 404 instruments."""
    ids, kinds, und, strikes, expiries = [], [], [], [], []
    for name, spot in zip(PM_UNDERLYINGS, PM_SPOT_USD, strict=True):
        ids.append(f"{name}-PERP")
        kinds.append("perp")
        und.append(name)
        strikes.append(math.nan)
        expiries.append(math.nan)
        for days in (1, 7, 30, 90, 180):
            for moneyness in (0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5):
                for kind in ("call", "put"):
                    ids.append(f"{name}-{days}D-{moneyness}-{kind[0].upper()}")
                    kinds.append(kind)
                    und.append(name)
                    strikes.append(float(spot) * moneyness)
                    expiries.append(NOW_S + days * DAY_S)
    return Instruments.build(PM_UNDERLYINGS, ids, kinds, und, strikes, expiries)


def options_workload(
    n_accounts: int, per_account: int = 20, seed: int = 2
) -> tuple[RiskEngine, FloatArray]:
    """Random books of perps and options on 4 underlyings, all on the portfolio model."""
    instruments = option_instruments()
    rng = np.random.default_rng(seed)
    n = n_accounts * per_account
    instrument = rng.integers(0, instruments.n_instruments, n)
    spot = PM_SPOT_USD[instruments.underlying_idx[instrument]]
    size = rng.normal(0.0, 10_000.0, n) / spot  # ~$10k of underlying per position
    positions = Positions.build(
        n_accounts,
        np.repeat(np.arange(n_accounts), per_account),
        instrument,
        size,
        instruments.n_instruments,
    )
    config = RiskConfig(
        markets=tuple(MarketConfig(underlying=u, model="portfolio") for u in PM_UNDERLYINGS),
        scenario=ScenarioMarginConfig(correlations=PM_CORRELATIONS),
    )
    vols = np.where(instruments.is_option, 0.6, np.nan)
    return RiskEngine(config, instruments, positions), vols


# ------------------------------------------------------------------ per-account Python loops


def _positions_by_account(engine: RiskEngine, accounts: int) -> list[list[tuple[int, float]]]:
    book = engine.book
    out: list[list[tuple[int, float]]] = [[] for _ in range(accounts)]
    for a, i, q in zip(
        book.account_idx.tolist(), book.instrument_idx.tolist(), book.size.tolist(), strict=True
    ):
        if a < accounts:
            out[a].append((i, q))
    return out


def loop_linear_margin(
    engine: RiskEngine, prices: FloatArray, accounts: int
) -> tuple[list[float], list[float]]:
    """Volatility MM and standard MM of the first `accounts` accounts, one account at a time."""
    config = engine.config
    inst = engine.instruments
    sigma = engine.ewma_state.sigma_per_sqrt_s.tolist()
    from statistics import NormalDist

    vol_mm_out, std_mm_out = [], []
    for holdings in _positions_by_account(engine, accounts):
        net: dict[int, float] = defaultdict(float)
        std_mm = 0.0
        for i, q in holdings:
            u = int(inst.underlying_idx[i])
            price = float(prices[u])
            market = config.markets[u]
            notional = abs(q) * price
            tiers = market.standard.tiers
            for t, tier in enumerate(tiers):
                upper = tiers[t + 1].notional_floor_usd if t + 1 < len(tiers) else math.inf
                if notional > tier.notional_floor_usd:
                    std_mm += tier.mm_rate * (min(notional, upper) - tier.notional_floor_usd)
            net[u] += q
        vol_mm = 0.0
        for u, q in net.items():
            v = config.markets[u].volatility
            z = NormalDist().inv_cdf(v.confidence)
            rate = min(
                max(z * sigma[u] * math.sqrt(v.liquidation_horizon_s), v.floor_mm_rate),
                v.cap_mm_rate,
            )
            vol_mm += rate * abs(q) * float(prices[u])
        vol_mm_out.append(vol_mm)
        std_mm_out.append(std_mm)
    return vol_mm_out, std_mm_out


def loop_portfolio_mm(
    engine: RiskEngine, prices: FloatArray, vols: FloatArray, accounts: int
) -> list[float]:
    """Portfolio MM of the first `accounts` accounts, one account at a time.

    Per-instrument scenario values are computed once (as any sane loop implementation would);
    everything per account (scenario sums, worst case, contingencies, offsets) is plain Python.
    """
    inst, sc = engine.instruments, engine.config.scenario
    grid = build_scenario_grid(
        sc.spot_step,
        sc.spot_steps_each_side,
        sc.tail_spot_multipliers,
        sc.tail_linear_equivalent,
        sc.skew_scenarios,
    )
    law = VolShockLaw(
        sc.vol_range_up,
        sc.vol_range_down,
        sc.short_term_power,
        sc.long_term_power,
        sc.power_switch_days,
        sc.dte_floor_days,
        sc.min_vol_up_annual,
        sc.skew_cap,
        sc.skew_kstar_per_sqrt_year,
        sc.skew_min_kstar,
    )
    opt = np.flatnonzero(inst.is_option)
    forward = prices[inst.underlying_idx[opt]]
    t_years = (inst.expiry_s[opt] - NOW_S) / (365.0 * DAY_S)
    now_value = black76_price(forward, inst.strike_usd[opt], t_years, vols[opt], inst.is_call[opt])
    scen = option_scenario_values(
        forward, inst.strike_usd[opt], t_years, vols[opt], inst.is_call[opt], grid, law
    )
    unit: dict[int, list[float]] = {}
    for row, i in enumerate(opt.tolist()):
        unit[i] = [
            (scen[row, s] - now_value[row]) * grid.dampening[s] for s in range(grid.n_scenarios)
        ]
    spots, damp = grid.spot_multiplier.tolist(), grid.dampening.tolist()
    skew = [m >= VolMode.SKEW_LINEAR for m in grid.vol_mode.tolist()]
    credit = offset_credit_matrix(inst.underlyings, sc.correlations).tolist()
    out = []
    for holdings in _positions_by_account(engine, accounts):
        groups: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for i, q in holdings:
            groups[int(inst.underlying_idx[i])].append((i, q))
        losses: dict[int, tuple[float, float]] = {}
        for u, members in groups.items():
            price = float(prices[u])
            pnl = [0.0] * grid.n_scenarios
            perp = calls = puts = 0.0
            for i, q in members:
                if inst.is_option[i]:
                    unit_pnl = unit[i]
                    for s in range(grid.n_scenarios):
                        pnl[s] += q * unit_pnl[s]
                    if inst.is_call[i]:
                        calls += q
                    else:
                        puts += q
                else:
                    perp += q
                    for s in range(grid.n_scenarios):
                        pnl[s] += q * price * (spots[s] - 1.0) * damp[s]
            pnl = [-abs(p) if skew[s] else p for s, p in enumerate(pnl)]
            worst = min(range(grid.n_scenarios), key=pnl.__getitem__)
            loss = max(-pnl[worst], 0.0)
            direction = (
                (1.0 if spots[worst] < 1.0 else -1.0 if spots[worst] > 1.0 else 0.0)
                if loss > 0
                else 0.0
            )
            contingency = price * (
                sc.perp_contingency_rate * abs(perp)
                + sc.short_option_contingency_rate * (max(-calls, 0.0) + max(-puts, 0.0))
            )
            losses[u] = (loss + contingency, direction)
        total = sum(v for v, _ in losses.values())
        longs = {u: v for u, (v, d) in losses.items() if d > 0}
        shorts = {u: v for u, (v, d) in losses.items() if d < 0}
        directional = sum(longs.values()) + sum(shorts.values())
        cross = sum(credit[i][j] * li * sj for i, li in longs.items() for j, sj in shorts.items())
        combined = math.sqrt(max(directional**2 - 2.0 * cross, 0.0)) + (total - directional)
        out.append(max(combined, sc.floor_fraction * total))
    return out


def loop_var_es(exposures: FloatArray, returns: FloatArray, accounts: int) -> list[float]:
    """ES 97.5% of the first `accounts` rows, one account and one scenario at a time."""
    r = returns.T.tolist()  # scenarios × underlyings
    out = []
    for e in exposures[:accounts].tolist():
        losses = sorted(
            (-sum(ei * ri for ei, ri in zip(e, row, strict=True)) for row in r), reverse=True
        )
        m = len(losses) * 0.025
        j = math.floor(m + 1e-9)
        out.append((sum(losses[:j]) + (m - j) * losses[j]) / m)
    return out


# ----------------------------------------------------------------------------- measurement


def _time_ms(call: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds per call. CPU time leaves out the time this process waited
    for a core, so it stays meaningful when other work shares the machine."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        call()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return wall, cpu


def _peak_mib(call: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _summary(samples: tuple[list[float], list[float]], goal_ms: float) -> dict[str, Any]:
    wall, cpu = samples
    median = statistics.median(wall)
    return {
        "median_ms": round(median, 3),
        "p99_ms": round(float(np.percentile(wall, 99)), 3),
        "cpu_median_ms": round(statistics.median(cpu), 3),
        "samples": len(wall),
        "goal_ms": goal_ms,
        "goal_met": median <= goal_ms,
    }


def _loop_entry(
    per_account_ms: float, sample: int, full: int, vector_ms: float, max_rel_diff: float
) -> dict[str, Any]:
    scaled = per_account_ms * full
    return {
        "sample_accounts": sample,
        "per_account_ms": round(per_account_ms, 4),
        "scaled_full_ms": round(scaled, 1),
        "vectorised_ms": round(vector_ms, 3),
        "speedup": round(scaled / vector_ms, 1),
        "max_rel_diff_vs_vectorised": max_rel_diff,
    }


def _rel_diff(a: list[float], b: FloatArray) -> float:
    ref = np.asarray(a)
    return float(np.max(np.abs(ref - b[: ref.size]) / np.maximum(np.abs(ref), 1e-9)))


def capital_efficiency() -> dict[str, Any]:
    """Portfolio margin / standard margin for two hedged books (MM and IM)."""
    instruments = option_instruments()
    index = {iid: i for i, iid in enumerate(instruments.ids)}
    config = RiskConfig(
        markets=tuple(MarketConfig(underlying=u, model="portfolio") for u in PM_UNDERLYINGS),
        scenario=ScenarioMarginConfig(correlations=PM_CORRELATIONS),
    )
    vols = np.where(instruments.is_option, 0.6, np.nan)

    def margins(book: dict[str, float]) -> tuple[float, float, float, float, float]:
        positions = Positions.build(
            1,
            [0] * len(book),
            [index[k] for k in book],
            list(book.values()),
            instruments.n_instruments,
        )
        r = RiskEngine(config, instruments, positions).tick(PM_SPOT_USD, NOW_S, vols)
        delta = 0.0 if r.greeks is None else float(r.greeks.delta_units[0, 0])
        return (
            float(r.mm_usd[0]),
            float(r.im_usd[0]),
            float(r.standard_mm_usd[0]),
            float(r.standard_im_usd[0]),
            delta,
        )

    # Short 10 ATM 30-day straddles, long 10 of the ±10% strangle (an iron fly), delta-hedged.
    fly = {
        "BTC-30D-1.0-C": -10.0,
        "BTC-30D-1.0-P": -10.0,
        "BTC-30D-1.1-C": 10.0,
        "BTC-30D-0.9-P": 10.0,
    }
    fly["BTC-PERP"] = -margins(fly)[4]
    pair = {"BTC-PERP": 1e6 / 60_000.0, "ETH-PERP": -1e6 / 3_000.0}
    out: dict[str, Any] = {}
    # A lone perp for context: the ±18% grid plus 3% contingency is 21% of notional, above the
    # 6.5% standard rate, so for perps portfolio margin pays off only through hedges.
    naked = {"BTC-PERP": 1e6 / 60_000.0}
    books = (
        ("delta_hedged_iron_fly", fly),
        ("long_btc_short_eth_1m", pair),
        ("naked_btc_perp_1m", naked),
    )
    for name, book in books:
        mm, im, std_mm, std_im, delta = margins(book)
        out[name] = {
            "portfolio_mm_usd": round(mm, 2),
            "standard_mm_usd": round(std_mm, 2),
            "mm_ratio": round(mm / std_mm, 4),
            "im_ratio": round(im / std_im, 4),
            "btc_delta_units": round(delta, 9),
        }
    return out


def run(json_path: Path | None = None) -> dict[str, Any]:
    """Run all workloads, print a table, optionally write JSON, and return the figures."""
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            # Other processes on a 2-core machine inflate every latency; the load average
            # says how busy it was while we measured.
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
        }
    }
    print("bench risk: (a) building 100,000 accounts × 8 perps…", flush=True)
    perp_engine, prices = perp_workload(100_000)
    rng = np.random.default_rng(3)
    path = prices * np.exp(np.cumsum(rng.normal(0.0, 1e-3, (61, prices.size)), axis=0))
    perp_engine.tick(path[0], NOW_S)
    ticks = iter(range(1, 10**6))

    def next_tick() -> object:
        k = next(ticks)  # one second apart, walking along the seeded price path
        return perp_engine.tick(path[k % path.shape[0]], NOW_S + k)

    samples = _time_ms(next_tick, 50)
    result["a_linear"] = _summary(samples, GOALS_MS["a_linear"])
    result["a_linear"]["peak_mib"] = round(
        _peak_mib(lambda: perp_engine.tick(path[1], NOW_S + 10**6)), 1
    )
    a_result = perp_engine.tick(path[2], NOW_S + 10**6 + 1)
    print(f"    median {result['a_linear']['median_ms']} ms", flush=True)

    print("bench risk: (b) 10,000 accounts × 20 positions, 4 underlyings, options…", flush=True)
    pm_engine, vols = options_workload(10_000)
    pm_engine.tick(PM_SPOT_USD, NOW_S, vols)
    samples = _time_ms(lambda: pm_engine.tick(PM_SPOT_USD, NOW_S, vols), 20)
    result["b_portfolio"] = _summary(samples, GOALS_MS["b_portfolio"])
    result["b_portfolio"]["scenarios"] = pm_engine.n_scenarios
    result["b_portfolio"]["peak_mib"] = round(
        _peak_mib(lambda: pm_engine.tick(PM_SPOT_USD, NOW_S, vols)), 1
    )
    b_result = pm_engine.tick(PM_SPOT_USD, NOW_S, vols)
    print(f"    median {result['b_portfolio']['median_ms']} ms", flush=True)

    print("bench risk: (c) Monte-Carlo ES, 10,000 accounts × 2,000 scenarios…", flush=True)
    assert b_result.greeks is not None
    exposures = b_result.greeks.delta_exposure_usd(PM_SPOT_USD)

    def mc() -> VarEs:
        return monte_carlo_var_es(exposures, MC_SIGMA_DAILY, MC_CORR, n_scenarios=2000, seed=7)

    samples = _time_ms(mc, 10)
    result["c_monte_carlo"] = _summary(samples, GOALS_MS["c_monte_carlo"])
    result["c_monte_carlo"]["peak_mib"] = round(_peak_mib(mc), 1)
    print(f"    median {result['c_monte_carlo']['median_ms']} ms", flush=True)

    print("bench risk: (d) the same workloads as per-account Python loops (sampled)…", flush=True)
    loops: dict[str, Any] = {}
    start = time.perf_counter()
    vol_mm, std_mm = loop_linear_margin(perp_engine, path[2], 2_000)
    per = (time.perf_counter() - start) * 1e3 / 2_000
    diff = max(_rel_diff(vol_mm, a_result.mm_usd), _rel_diff(std_mm, a_result.standard_mm_usd))
    loops["a_linear"] = _loop_entry(per, 2_000, 100_000, result["a_linear"]["median_ms"], diff)
    start = time.perf_counter()
    pm_mm = loop_portfolio_mm(pm_engine, PM_SPOT_USD, vols, 200)
    per = (time.perf_counter() - start) * 1e3 / 200
    loops["b_portfolio"] = _loop_entry(
        per, 200, 10_000, result["b_portfolio"]["median_ms"], _rel_diff(pm_mm, b_result.mm_usd)
    )
    returns = correlated_normal_returns(MC_SIGMA_DAILY, MC_CORR, 2000, seed=7)
    start = time.perf_counter()
    es = loop_var_es(exposures, returns, 100)
    per = (time.perf_counter() - start) * 1e3 / 100
    loops["c_monte_carlo"] = _loop_entry(
        per, 100, 10_000, result["c_monte_carlo"]["median_ms"], _rel_diff(es, mc().es_usd)
    )
    result["d_loops"] = loops

    print("bench risk: (e) capital efficiency…", flush=True)
    result["e_capital_efficiency"] = capital_efficiency()
    result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    _print_table(result)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        print(f"wrote {json_path}")
    return result


def _row(cells: list[str], widths: list[int]) -> str:
    """First cell left-aligned, the rest right-aligned, in fixed-width columns."""
    head = f"{cells[0]:<{widths[0]}}"
    return head + "".join(f"{c:>{w}}" for c, w in zip(cells[1:], widths[1:], strict=True))


def _print_table(result: dict[str, Any]) -> None:
    widths = [44, 11, 10, 9, 9, 5, 10]
    print()
    print(_row(["workload", "median ms", "p99 ms", "cpu ms", "goal ms", "met", "peak MiB"], widths))
    scenarios = result["b_portfolio"]["scenarios"]
    labels = {
        "a_linear": "(a) std + vol margin, 100k acc × 8 perps",
        "b_portfolio": f"(b) portfolio, 10k acc × 20 pos, {scenarios} scen",
        "c_monte_carlo": "(c) MC VaR/ES, 10k acc × 2,000 scen",
    }
    for key, label in labels.items():
        r = result[key]
        cells = [label, f"{r['median_ms']:.2f}", f"{r['p99_ms']:.2f}"]
        cells += [f"{r['cpu_median_ms']:.2f}", f"{r['goal_ms']:.0f}"]
        print(_row([*cells, "yes" if r["goal_met"] else "NO", f"{r['peak_mib']:.1f}"], widths))
    widths = [30, 8, 10, 12, 10, 14]
    print()
    print(
        _row(
            [
                "(d) per-account Python loop",
                "sample",
                "ms/acc",
                "scaled ms",
                "speedup",
                "max rel diff",
            ],
            widths,
        )
    )
    for key, r in result["d_loops"].items():
        print(
            _row(
                [
                    key,
                    str(r["sample_accounts"]),
                    f"{r['per_account_ms']:.4f}",
                    f"{r['scaled_full_ms']:.1f}",
                    f"{r['speedup']:.0f}×",
                    f"{r['max_rel_diff_vs_vectorised']:.1e}",
                ],
                widths,
            )
        )
    widths = [30, 14, 16, 10, 10]
    print()
    print(
        _row(["(e) capital efficiency", "PM MM $", "standard MM $", "MM ratio", "IM ratio"], widths)
    )
    for key, r in result["e_capital_efficiency"].items():
        print(
            _row(
                [
                    key,
                    f"{r['portfolio_mm_usd']:,.0f}",
                    f"{r['standard_mm_usd']:,.0f}",
                    f"{r['mm_ratio']:.3f}",
                    f"{r['im_ratio']:.3f}",
                ],
                widths,
            )
        )
    machine = result["machine"]
    print(
        f"\nmax RSS {result['max_rss_mib']} MiB; numpy {machine['numpy']}, {machine['cpus']} CPUs"
    )
    load = max(machine["load_avg_1m_at_start"], machine["load_avg_1m_at_end"])
    print(f"load average (1 min) during the run: up to {load}")
    if load > 1.0:
        print("note: other processes shared the CPUs; wall times are inflated, see the cpu column")


if __name__ == "__main__":
    run()
