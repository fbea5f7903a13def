"""Standard (tiered) margin: per-market IM/MM rates on notional, higher rates for larger slices.

Tiers are progressive, like tax brackets: the rate of tier t applies to the part of a position's
notional between floor t and floor t+1. Written as a sum of hinges,
    requirement(n) = r₀·n + Σ_{t≥1} (r_t − r_{t−1})·max(0, n − floor_t),
it is continuous, convex, increasing, and needs no per-position tier search, which keeps the
full recompute over 10⁶ positions a handful of array passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from offchain.risk.checks import FloatArray, IntArray, RiskInputError


@dataclass(frozen=True)
class TierSchedule:
    """Hinge form of every market's tiers, padded to a common tier count.

    Arrays are (underlyings, tiers); padding tiers have an infinite floor and zero increments,
    so they never contribute.
    """

    floor_usd: FloatArray
    im_rate_increment: FloatArray
    mm_rate_increment: FloatArray

    @classmethod
    def build(
        cls,
        floors_usd: Sequence[Sequence[float]],
        im_rates: Sequence[Sequence[float]],
        mm_rates: Sequence[Sequence[float]],
    ) -> TierSchedule:
        """One row per underlying: tier floors (first must be 0) and the rates of each tier."""
        n_und = len(floors_usd)
        width = max((len(f) for f in floors_usd), default=1)
        floor = np.full((n_und, width), np.inf)
        im_inc = np.zeros((n_und, width))
        mm_inc = np.zeros((n_und, width))
        for u, (f, im, mm) in enumerate(zip(floors_usd, im_rates, mm_rates, strict=True)):
            if not (len(f) == len(im) == len(mm)) or not f or f[0] != 0.0:
                raise RiskInputError(
                    f"tiers of underlying {u}: floors, im and mm rates need equal, non-zero "
                    "length and the first floor must be 0"
                )
            floor[u, : len(f)] = f
            im_inc[u, : len(f)] = np.diff(np.asarray(im, dtype=np.float64), prepend=0.0)
            mm_inc[u, : len(f)] = np.diff(np.asarray(mm, dtype=np.float64), prepend=0.0)
        return cls(floor, im_inc, mm_inc)

    @property
    def n_tiers(self) -> int:
        return int(self.floor_usd.shape[1])


def tiered_margin(
    notional_usd: FloatArray, underlying_idx: IntArray, schedule: TierSchedule
) -> tuple[FloatArray, FloatArray]:
    """IM and MM (USD) of each position, given its notional and its market's tiers."""
    im = schedule.im_rate_increment[underlying_idx, 0] * notional_usd
    mm = schedule.mm_rate_increment[underlying_idx, 0] * notional_usd
    for t in range(1, schedule.n_tiers):
        # Gathering a (U,) row per tier is cheap; a padded tier has floor inf, so the hinge is 0.
        hinge = np.maximum(notional_usd - schedule.floor_usd[underlying_idx, t], 0.0)
        im += schedule.im_rate_increment[underlying_idx, t] * hinge
        mm += schedule.mm_rate_increment[underlying_idx, t] * hinge
    return im, mm
