"""The lab's market paths by name, built from `offchain.feeds` (nothing here invents a model).

* `crash` is the 2020-03-12 template (ETH −43% in a day, in two legs with a pause between, so
  volatility builds before the collapse); `2020-03-12`, `2022-11` and `2025-10-10` are the feeds'
  crash templates by name. ETH takes the template's depth; BTC and SOL fall in the proportions of
  2020-03-12 (−35% and −50% when ETH fell 43%), with correlated noise on top.
* `calm` is low-volatility correlated GBM at one-minute updates.
* `crowded-long` and `basis-blowout` are the funding scenarios: calm GBM over two days, with a
  venue whose trades print off the index (`basis_bps`, per update), so a premium stands and the
  clearinghouse's funding accrues (IFunding). In `crowded-long` the population is 90% long and
  every print is 1.5% over the index, so longs pay near the cap all along; in `basis-blowout` the
  prints fall to 1.8% under the index for the middle half of the path (shorts pay), at the
  index before and after. Both premiums sit inside the markets' 2% price band.

Every path comes with a warm-up: the same market's calm history before the scenario starts, from
which Gen 3's risk configuration takes its starting volatility, as an operator calibrates a new
engine (`generations.risk_config`). It is never pushed on chain. The path's `steps` updates are
spread over the template's duration, so fewer steps mean bigger moves per update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from offchain.errors import ConfigError
from offchain.feeds import CRASH_TEMPLATES, Scenario, crash_scenario, gbm
from offchain.lab.population import LONG_PROBABILITY

SYMBOLS = ("ETH", "BTC", "SOL")
# Daily-return correlations of the majors, rounded; order = SYMBOLS.
CORRELATION = np.array([[1.0, 0.8, 0.75], [0.8, 1.0, 0.7], [0.75, 0.7, 1.0]])
# 2020-03-12 peak-to-trough moves relative to ETH's (the demo's figures).
DEPTH_RELATIVE_TO_ETH = {"ETH": 1.0, "BTC": 0.35 / 0.43, "SOL": 0.50 / 0.43}
CALM_SIGMA_ANNUAL = {"ETH": 0.45, "BTC": 0.35, "SOL": 0.65}
CALM_INTERVAL_S = 60.0
WARMUP_STEPS = 60
# The funding scenarios span two days (six 8-hour funding intervals) whatever the step count.
FUNDING_DURATION_S = 48 * 3600.0
CROWDED_LONG_PROBABILITY = 0.9
CROWDED_PREMIUM_BPS = 150
BLOWOUT_DISCOUNT_BPS = 180

SCENARIOS: dict[str, str] = {
    "crash": "2020-03-12 crash (ETH −43% in a day; BTC −35%, SOL −50%)",
    "calm": "calm market: correlated GBM, σ ETH 45% / BTC 35% / SOL 65% a year, 1-minute updates",
    **{name: t.description for name, t in CRASH_TEMPLATES.items()},
    "crowded-long": "crowded long squeezed: 90% of traders long, the venue prints 1.5% over the "
    "index for two days (longs pay funding), calm prices",
    "basis-blowout": "basis blow-out: the venue prints 1.8% under the index for the middle day "
    "of two (shorts pay funding), calm prices",
}
FUNDING_SCENARIOS = ("crowded-long", "basis-blowout")


@dataclass(frozen=True)
class LabPath:
    name: str
    description: str
    path: Scenario  # steps + 1 points; point 0 is the opening state, ts from 0
    warmup: Scenario  # history ending at the opening prices, ts ≤ 0
    interval_s: float
    # Per point, how far the venue's trades print from the index (bps; 0: no venue trades).
    basis_bps: tuple[int, ...]
    long_probability: float = LONG_PROBABILITY  # the population's directional skew

    @property
    def steps(self) -> int:
        return self.path.steps


def lab_path(name: str, *, seed: int, steps: int, start_usd: Mapping[str, float]) -> LabPath:
    """The named scenario on `steps` updates for the given start prices."""
    if name not in SCENARIOS:
        raise ConfigError(f"unknown lab scenario {name!r}", f"use one of {', '.join(SCENARIOS)}")
    if steps < 2:
        raise ConfigError(f"steps = {steps}", "the lab needs at least 2 price updates")
    start = {s: float(start_usd[s]) for s in SYMBOLS}
    basis_bps = (0,) * (steps + 1)
    long_probability = LONG_PROBABILITY
    if name in FUNDING_SCENARIOS or name == "calm":
        # Calm prices; the funding scenarios stretch them over six funding intervals.
        interval_s = CALM_INTERVAL_S if name == "calm" else FUNDING_DURATION_S / steps
        path = gbm(
            start,
            steps,
            interval_s=interval_s,
            sigma_annual=CALM_SIGMA_ANNUAL,
            correlation=CORRELATION,
            seed=seed,
        )
        if name == "crowded-long":
            long_probability = CROWDED_LONG_PROBABILITY
            basis_bps = (0,) + (CROWDED_PREMIUM_BPS,) * steps
        elif name == "basis-blowout":
            basis_bps = tuple(
                -BLOWOUT_DISCOUNT_BPS if steps / 4 <= k < 3 * steps / 4 else 0
                for k in range(steps + 1)
            )
    else:
        template = CRASH_TEMPLATES["2020-03-12" if name == "crash" else name]
        interval_s = template.duration_s / steps
        path = crash_scenario(
            template,
            start,
            interval_s=interval_s,
            depth_scale=DEPTH_RELATIVE_TO_ETH,
            correlation=CORRELATION,
            seed=seed,
        )
    return LabPath(
        name=name,
        description=SCENARIOS[name],
        path=path,
        warmup=_warmup(start, interval_s, seed),
        interval_s=interval_s,
        basis_bps=basis_bps,
        long_probability=long_probability,
    )


def _warmup(start: Mapping[str, float], interval_s: float, seed: int) -> Scenario:
    """Calm history at the path's update interval, rescaled to end exactly at the start prices."""
    history = gbm(
        start,
        WARMUP_STEPS,
        interval_s=interval_s,
        sigma_annual=CALM_SIGMA_ANNUAL,
        correlation=CORRELATION,
        start_ts_s=-WARMUP_STEPS * interval_s,
        # A different stream from the path's, so warm-up and path are independent draws.
        seed=seed + 1_000_003,
    )
    prices = {s: p * (start[s] / p[-1]) for s, p in history.prices_usd.items()}
    return Scenario("warmup", history.ts_s, prices, history.params)
