"""The lab's seeded trader population: who holds what when the scenario starts.

Every generation replays the same population on its own chain, so any difference in outcome comes
from the margin rules alone. Positions are opened before the first price update under the static
rules (IM 10%), which is why gross leverage stays below 10x: a population that fits every
generation's opening check.

Mix (each trader drawn independently from one seeded generator):
* directional traders (about 88%): one perp, long with probability 0.65 (a scenario may skew
  it: `crowded-long` uses 0.9), gross leverage log-normal
  around 4x clipped to [1.2x, 9.5x]; markets ETH 45% / BTC 35% / SOL 20%;
* hedged pairs (about 12%): long ETH and short BTC of equal notional, 2x to 8x gross in total;
* about 15% post WETH instead of USDC (counted at its 80% haircut, so a long ETH on WETH collateral
  loses twice when ETH falls);
* collateral log-normal around $20k, clipped to [$2k, $250k];
* one market maker, the counterparty of every opening trade, with deep USDC collateral.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LONG_PROBABILITY = 0.65
HEDGED_SHARE = 0.12
WETH_SHARE = 0.15
MARKET_WEIGHTS = {"ETH-PERP": 0.45, "BTC-PERP": 0.35, "SOL-PERP": 0.20}
MAX_GROSS_LEVERAGE = 9.5  # below 1 / IM rate (10%), with room for rounding


@dataclass(frozen=True)
class Leg:
    market: str
    side: int  # +1 long, -1 short
    leverage: float  # this leg's notional / the account's counted equity


@dataclass(frozen=True)
class TraderPlan:
    name: str
    kind: str  # "directional" or "hedged"
    collateral: str  # "USDC" or "WETH"
    collateral_usd: float
    legs: tuple[Leg, ...]

    @property
    def gross_leverage(self) -> float:
        return sum(leg.leverage for leg in self.legs)


def trader_population(
    seed: int, count: int, long_probability: float = LONG_PROBABILITY
) -> list[TraderPlan]:
    """`count` traders drawn from `seed`, directional ones long with `long_probability` (a
    scenario's skew); the same arguments give the same population."""
    rng = np.random.default_rng(seed)
    markets = list(MARKET_WEIGHTS)
    weights = np.array(list(MARKET_WEIGHTS.values()))
    plans: list[TraderPlan] = []
    for i in range(count):
        # Every trader consumes the same draws whatever its kind, so adding traders never
        # changes the ones already drawn.
        u_kind, u_side, u_collateral, u_pair = rng.random(4)
        market = markets[int(rng.choice(len(markets), p=weights))]
        leverage = float(np.clip(rng.lognormal(np.log(4.0), 0.45), 1.2, MAX_GROSS_LEVERAGE))
        collateral_usd = float(np.clip(round(rng.lognormal(np.log(20_000), 0.8), -2), 2e3, 2.5e5))
        collateral = "WETH" if u_collateral < WETH_SHARE else "USDC"
        if u_kind < HEDGED_SHARE:
            gross = 2.0 + 6.0 * float(u_pair)
            legs: tuple[Leg, ...] = (
                Leg("ETH-PERP", +1, round(gross / 2, 2)),
                Leg("BTC-PERP", -1, round(gross / 2, 2)),
            )
            kind = "hedged"
        else:
            side = 1 if u_side < long_probability else -1
            legs = (Leg(market, side, round(leverage, 2)),)
            kind = "directional"
        plans.append(TraderPlan(f"trader-{i}", kind, collateral, collateral_usd, legs))
    return plans


def maker_capital_usd(plans: Sequence[TraderPlan]) -> float:
    """Deep enough that the maker's IM never binds: half the population's gross notional, at
    least $5M."""
    gross = sum(p.collateral_usd * p.gross_leverage for p in plans)
    return float(max(5_000_000.0, round(0.5 * gross, -3)))
