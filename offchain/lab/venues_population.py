"""The venues lab's seeded population: one trader, one address, a book split across venues.

Mix (each trader drawn independently from one seeded generator; same draws whatever its kind):
* **hedged across venues** (30%): long one market on one venue, short the same market for the
  same notional on another; each venue alone sees a naked position, the whole book is flat;
* **concentrated across venues** (30%): the same market and direction on two or more venues,
  each under the tier a venue alone would apply to the whole (X1: split leverage is still
  leverage);
* **single-venue** (40%): one position on one venue, the control group (no other venue to agree
  or disagree with, nothing pledged).

Sides, markets and leverage are drawn as in `population` (long with the scenario's probability;
ETH 45% / BTC 35% / SOL 20%; log-normal leverage around 4x). Collateral is USDC only, because
pledges are in the quote token (a VenueLink counts nothing else), split equally between the
trader's venues. Leverage is capped at `MAX_VENUE_LEVERAGE` so that a linked trader, who deposits
only `1 − PLEDGED_SHARE` of a venue's collateral there and pledges the rest to it from another
venue, still opens the SAME positions under the static IM (10%) before any certificate exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from offchain.lab.population import LONG_PROBABILITY, MARKET_WEIGHTS, Leg, TraderPlan

KIND_SHARES = {"hedged": 0.3, "concentrated": 0.3, "single": 0.4}
# Linked: the share of a multi-venue trader's collateral for a venue that is pledged to it from
# another of its venues instead of deposited. 1 / (1 − 0.2) = 1.25 keeps the linked plan's
# leverage (on the deposit) exact to 4 decimals, so both rule sets open identical sizes.
PLEDGED_SHARE = 0.2
MAX_VENUE_LEVERAGE = 7.5  # × 1.25 = 9.375, under 1 / IM rate (10%) with room for rounding
COLLATERAL_STEP_USD = 10.0  # per-venue collateral in whole $10, so 80% of it is exact in USDC


@dataclass(frozen=True)
class VenueLeg:
    venue: int
    market: str
    side: int  # +1 long, -1 short
    leverage: float  # this leg's notional / the trader's collateral for that venue


@dataclass(frozen=True)
class VenueTrader:
    name: str
    kind: str  # "hedged", "concentrated" or "single"
    collateral_usd: tuple[float, ...]  # per venue (0 where it does not trade)
    legs: tuple[VenueLeg, ...]

    @property
    def venues(self) -> tuple[int, ...]:
        return tuple(sorted({leg.venue for leg in self.legs}))


@dataclass(frozen=True)
class Pledge:
    """Linked only: `amount_usd` of USDC pledged on `from_venue` to `to_venue` (X3)."""

    trader: int  # index in the population
    from_venue: int
    to_venue: int
    amount_usd: float


def venue_population(
    seed: int, count: int, venues: int, long_probability: float = LONG_PROBABILITY
) -> list[VenueTrader]:
    """`count` traders over `venues` venues drawn from `seed`; same arguments, same traders."""
    rng = np.random.default_rng(seed)
    markets = list(MARKET_WEIGHTS)
    weights = np.array(list(MARKET_WEIGHTS.values()))
    kinds = list(KIND_SHARES)
    cumulative = np.cumsum(list(KIND_SHARES.values()))
    out: list[VenueTrader] = []
    for i in range(count):
        u_kind, u_side, u_spread = rng.random(3)
        market = markets[int(rng.choice(len(markets), p=weights))]
        leverage = round(
            float(np.clip(rng.lognormal(np.log(4.0), 0.45), 1.2, MAX_VENUE_LEVERAGE)), 2
        )
        collateral = float(np.clip(rng.lognormal(np.log(20_000), 0.8), 2e3, 2.5e5))
        order = [int(v) for v in rng.permutation(venues)]
        kind = kinds[int(np.searchsorted(cumulative, u_kind, side="right"))]
        side = 1 if u_side < long_probability else -1
        legs: tuple[VenueLeg, ...]
        if kind == "hedged":
            legs = (
                VenueLeg(order[0], market, side, leverage),
                VenueLeg(order[1], market, -side, leverage),
            )
        elif kind == "concentrated":
            spread = 2 + int(u_spread * (venues - 1))  # 2..venues venues
            legs = tuple(VenueLeg(v, market, side, leverage) for v in order[:spread])
        else:
            legs = (VenueLeg(order[0], market, side, leverage),)
        share = collateral / len(legs)
        per_venue = round(share / COLLATERAL_STEP_USD) * COLLATERAL_STEP_USD
        amounts = tuple(
            per_venue if any(leg.venue == v for leg in legs) else 0.0 for v in range(venues)
        )
        out.append(VenueTrader(f"trader-{i}", kind, amounts, legs))
    return out


def venue_plans(traders: list[VenueTrader], venue: int, *, linked: bool) -> list[TraderPlan]:
    """The runner's plans for one venue's chain: every trader in population order (so a trader
    has the same address on every chain), with its deposit and legs there (none elsewhere).
    Linked multi-venue traders deposit `1 − PLEDGED_SHARE` of it at the leverage that opens the
    same notional."""
    plans = []
    for t in traders:
        keep = 1.0 - PLEDGED_SHARE if linked and len(t.venues) > 1 else 1.0
        legs = tuple(
            Leg(leg.market, leg.side, round(leg.leverage / keep, 4))
            for leg in t.legs
            if leg.venue == venue
        )
        plans.append(
            TraderPlan(t.name, t.kind, "USDC", round(t.collateral_usd[venue] * keep, 2), legs)
        )
    return plans


def pledges(traders: list[VenueTrader]) -> list[Pledge]:
    """Linked: every multi-venue trader pledges `PLEDGED_SHARE` of each of its venues'
    collateral to that venue from the next of its venues (in venue order, wrapping), so the
    total collateral is the isolated trader's and no pledge targets its own venue."""
    out = []
    for i, t in enumerate(traders):
        venues = t.venues
        if len(venues) < 2:
            continue
        for j, to_venue in enumerate(venues):
            amount = round(t.collateral_usd[to_venue] * PLEDGED_SHARE, 2)
            out.append(Pledge(i, venues[(j + 1) % len(venues)], to_venue, amount))
    return out
