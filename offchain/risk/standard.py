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


@dataclass(frozen=True)
class SortedSizes:
    """Per underlying, the positions' |size| in descending order with their account.

    At price S a position's notional |q|·S crosses floor f exactly when |q| > f/S, so the
    positions above a tier floor are a prefix of this order: one binary search per tier and
    market finds them, and only they need the hinge terms. Everything below the second floor is
    the base rate times notional, which the engine sums per account with one matrix product.
    """

    neg_abs_size: tuple[FloatArray, ...]  # ascending, i.e. |size| descending
    account: tuple[IntArray, ...]

    @classmethod
    def build(
        cls,
        abs_size: FloatArray,
        underlying_idx: IntArray,
        account_idx: IntArray,
        n_underlyings: int,
    ) -> SortedSizes:
        neg: list[FloatArray] = []
        acc: list[IntArray] = []
        for u in range(n_underlyings):
            in_u = np.flatnonzero(underlying_idx == u)
            order = in_u[np.argsort(-abs_size[in_u], kind="stable")]
            neg.append(-abs_size[order])
            acc.append(account_idx[order])
        return cls(tuple(neg), tuple(acc))


def tier_excess_entries(
    sizes: SortedSizes, prices_usd: FloatArray, schedule: TierSchedule
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """(account, underlying, IM excess, MM excess) of every position above a tier-1+ floor.

    The excess is the requirement beyond base rate × notional; summing it per account and
    adding the base gives exactly `tiered_margin` summed per account.
    """
    accounts: list[IntArray] = []
    underlyings: list[IntArray] = []
    im: list[FloatArray] = []
    mm: list[FloatArray] = []
    for u, neg in enumerate(sizes.neg_abs_size):
        for t in range(1, schedule.n_tiers):
            floor = schedule.floor_usd[u, t]
            count = int(np.searchsorted(neg, -floor / prices_usd[u], side="left"))
            if count == 0:
                continue
            hinge = -neg[:count] * prices_usd[u] - floor
            accounts.append(sizes.account[u][:count])
            underlyings.append(np.full(count, u, dtype=np.intp))
            im.append(schedule.im_rate_increment[u, t] * hinge)
            mm.append(schedule.mm_rate_increment[u, t] * hinge)
    if not accounts:
        empty_i = np.zeros(0, dtype=np.intp)
        return empty_i, empty_i, np.zeros(0), np.zeros(0)
    return (
        np.concatenate(accounts),
        np.concatenate(underlyings),
        np.concatenate(im),
        np.concatenate(mm),
    )
