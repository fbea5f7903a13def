"""The venues lab's figures, per rule set, from arrays over points × traders × venues (pure numpy).

A *decision point* is update k after every venue's market moved and every engine (Gen 3's per
venue; the link's, when linked) acted, just before the keepers: what a keeper on each venue sees
when it decides. Point 0 is the opening. "Open" means the trader holds a position on that venue.
All money is USD.

* `bad_debt`, `liquidations`: the per-venue figures of `metrics.generation_metrics` summed over
  venues (each venue's `Liquidate` events; bad debt unpaid at resolution plus latent at the end),
  bad debt net of what pledges paid each venue's insurance fund for the losses it booked (X4
  claims, linked only): Σ_v max(0, bad debt_v − claims paid to v). `bad_debt_detail` has the
  venues' gross figure, the claims and the parts.
* `unnecessary_liquidations`: `Liquidate` events (legs) at a decision point where the trader's
  whole book was healthy by the global model (X1, `offchain.risk.crossvenue.global_view`, the
  link engine's model): Σ venue equity + pledges ≥ the global MM, at the decision point's prices.
* `disagreement_ticks`: (decision point, trader) pairs where the trader is open on two or more
  venues and they disagree on whether it is healthy (equity ≥ MM in force on one, < on another).
  `disagreement_ticks_certified`: those of them at which a link certificate was in force on every
  venue where the trader is open (linked only; 0 when isolated), and `certified_ticks` how many
  (decision point, trader) pairs had one.
* `collateral_required`: the least collateral with which, along this run's path and books, no
  venue's maintenance requirement in force would have been breached at any decision point. With
  pnl_v = equity_v − deposit_v, isolated venues count only their own deposit, so a trader needs
  Σ_v max(0, max_t (MM_v − pnl_v)); linked venues count collateral pledged to them and the
  committee moves pledges within the cap (X3, X5), so a trader needs it once:
  max(0, max_t Σ_v (MM_v − pnl_v)). The linked figure is the bound perfect rebalancing reaches.
  Reported in total and by kind of book.
* `certificate_lag_ms` {p50, p99}: from the update's last venue event (every venue's oracle
  update and Gen 3 attestations mined) to the end of the link engine's step that applied the
  certificate on every venue (wall clock; `venues_link.LinkDriver.step`); null when isolated.
* `gas` {committee, keepers, engine}: Σ gas of certificate submissions and committee orders;
  of liquidations on every venue; of Gen 3's attestations on every venue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


def disagreement_ticks(
    equity: FloatArray, mm: FloatArray, open_: BoolArray, where: BoolArray | None = None
) -> int:
    """(point, trader) pairs, over arrays [point, trader, venue], where the trader is open on
    two or more venues and some say healthy (equity ≥ MM) while others do not; only where
    `where` [point, trader] holds, when given."""
    # Some open venue says healthy and some does not (which needs two open venues).
    healthy_open = (equity >= mm) & open_
    disagree = healthy_open.any(axis=2) & (open_ & ~healthy_open).any(axis=2)
    if where is not None:
        disagree &= where
    return int(disagree.sum())


def everywhere_certified(certified: BoolArray, open_: BoolArray) -> BoolArray:
    """[point, trader]: a link certificate is in force on every venue where the trader is open
    (and it is open somewhere), over arrays [point, trader, venue]."""
    return (certified | ~open_).all(axis=2) & open_.any(axis=2)


def unnecessary_liquidations(
    liquidated: Sequence[tuple[int, int]], whole_book_healthy: BoolArray
) -> int:
    """`Liquidate` events, each (decision point, trader), at which the trader's whole book met
    the global maintenance requirement ([point, trader])."""
    return sum(1 for t, a in liquidated if whole_book_healthy[t, a])


def collateral_required(pnl: FloatArray, mm: FloatArray, *, linked: bool) -> FloatArray:
    """Per trader, the least collateral that keeps every venue at or above its MM in force at
    every point, over arrays [point, trader, venue] (see the module's definition)."""
    shortfall = mm - pnl
    if linked:
        return np.maximum(shortfall.sum(axis=2).max(axis=0), 0.0)
    return np.maximum(shortfall.max(axis=0), 0.0).sum(axis=1)


def by_kind(per_trader: FloatArray, kinds: Sequence[str]) -> dict[str, float]:
    """Σ per trader, in total and by kind of book."""
    out = {"total": round(float(per_trader.sum()), 2)}
    for kind in sorted(set(kinds)):
        mask = np.array([k == kind for k in kinds])
        out[kind] = round(float(per_trader[mask].sum()), 2)
    return out


def percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """{p50, p99} of `values`; None when there are none (no certificates: isolated)."""
    if not values:
        return None
    return {
        "p50": round(float(np.percentile(values, 50)), 1),
        "p99": round(float(np.percentile(values, 99)), 1),
    }


def summed(per_venue: Sequence[Mapping[str, object]], key: str) -> float:
    """Σ over venues of a per-venue figure."""
    return round(sum(float(str(m[key])) for m in per_venue), 2)
