"""One trader's whole book across linked venues (ARCHITECTURE X1, X2, X5): pure numpy, no I/O.

Shapes: A accounts × V venues (link order) × M markets (the link's common markets: market m is the
same underlying on every venue, whatever its id there).

* **X1, the global view.** Per account and market, the sizes of every venue are summed: the net
  exposure is what the whole book risks, the gross exposure what it holds. The requirement is
  the product's tier rule (`standard.tiered_margin`) on the *gross* notional, so leverage split
  across venues reaches the same tiers as if it were held on one; it is then scaled by the
  exposure left after the hedge offset,

      exposure = |net| + hedge_haircut × (gross − |net|),

  so a hedged pair (long on one venue, short on another) keeps `hedge_haircut` (default 0.2) of
  its requirement: the offset is bounded by the lesser leg (gross − |net| is twice the lesser
  leg) and never exceeds 80% of the pair, CME–FICC's bound. With no hedge the factor is 1.
  Global equity is the venues' equities plus the account's active pledges (they left every
  venue's equity when they were pledged, X3).
* **Allocation.** Venue v is allocated `equity_v − share_v × surplus`, with the global surplus
  `equity − requirement` split in proportion to the venues' standalone requirements. Every venue
  then has the whole book's sign of surplus (`equity_v − allocated_v = share_v × surplus`): no
  venue liquidates a healthy book, none spares an unhealthy one, as long as the clamp does not
  bind. The split is exact integer arithmetic, rounded against the account.
* **X2, the clamp**, exactly as `VenueLink.requirementInForce` computes it:
  `im = max(alloc_im, static_im − min(static_im, pledged))`, the same for mm, then
  `im = max(im, mm)`. A certificate may always tighten; it loosens only by what pledges cover.
* **X5, rebalancing.** Where the clamp makes a venue liquidate a healthy book, pledges of the
  same account are moved (whole, as `executeOrder` MOVE requires) from venues whose own floor
  has room to spare, within the trader's allowance on the venue that holds each pledge.

Money is in wad (1e18 = $1) as Python ints in object arrays: exact like the contract and wide
enough for 256-bit values. Only the tiered requirement is computed in float64 USD, rounded up to
the wad once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from offchain.risk.checks import FloatArray, IntArray, RiskInputError, as_float_array
from offchain.risk.config import StandardMarginConfig
from offchain.risk.standard import TierSchedule, tiered_margin

WadArray = NDArray[Any]  # object arrays of Python ints (wad); exact, like the contract
WAD = 10**18
DEFAULT_HEDGE_HAIRCUT = 0.2


def wad_array(values: Any) -> WadArray:
    """Python ints in an object array (from ints, int arrays or nested sequences of ints)."""
    array = np.asarray(values, dtype=object)
    return np.vectorize(int, otypes=[object])(array) if array.size else array


def usd_to_wad_up(usd: FloatArray) -> WadArray:
    """float64 USD → wad ints, rounded up (a requirement rounds against the account)."""
    return wad_array(np.ceil(np.asarray(usd, dtype=np.float64) * WAD))


@dataclass(frozen=True)
class CrossVenueParams:
    """The X1 model: the tiers of each common market and the hedge offset's haircut."""

    tiers: TierSchedule  # one row per common market
    hedge_haircut: float = DEFAULT_HEDGE_HAIRCUT

    @classmethod
    def standard(
        cls,
        n_markets: int,
        config: StandardMarginConfig | None = None,
        hedge_haircut: float = DEFAULT_HEDGE_HAIRCUT,
    ) -> CrossVenueParams:
        """The product's standard tiers (default: IM 10% / MM 6.5% below $1M) on every market."""
        tiers = (config or StandardMarginConfig()).tiers
        return cls(
            TierSchedule.build(
                [[t.notional_floor_usd for t in tiers]] * n_markets,
                [[t.im_rate for t in tiers]] * n_markets,
                [[t.mm_rate for t in tiers]] * n_markets,
            ),
            hedge_haircut,
        )

    def __post_init__(self) -> None:
        if not 0.0 <= self.hedge_haircut <= 1.0:
            raise RiskInputError(
                f"hedge_haircut {self.hedge_haircut} must be in [0, 1]; 0.2 keeps 20% of a hedge"
            )


@dataclass(frozen=True)
class Book:
    """Every account's positions and standalone state on every venue of the link.

    `equity_wad`, `static_*_wad`: what each venue's one health function computes standalone at
    the certificate's prices. `pledged_wad[a, v]`: active pledges held on other venues in v's
    favour (what a certificate reports to v as `pledgedWad`).
    """

    sizes: FloatArray  # (A, V, M) signed units of the underlying
    equity_wad: WadArray  # (A, V)
    static_im_wad: WadArray  # (A, V)
    static_mm_wad: WadArray  # (A, V)
    pledged_wad: WadArray  # (A, V)

    def __post_init__(self) -> None:
        sizes = as_float_array("sizes", self.sizes, ndim=3)
        shape = sizes.shape[:2]
        for name in ("equity_wad", "static_im_wad", "static_mm_wad", "pledged_wad"):
            if np.shape(getattr(self, name)) != shape:
                raise RiskInputError(
                    f"{name} must be accounts × venues {shape}, got {np.shape(getattr(self, name))}"
                )

    @property
    def n_accounts(self) -> int:
        return int(self.sizes.shape[0])

    @property
    def n_venues(self) -> int:
        return int(self.sizes.shape[1])


@dataclass(frozen=True)
class GlobalView:
    """X1: each account's whole book under one model (wad)."""

    equity_wad: WadArray  # (A,)
    im_wad: WadArray  # (A,)
    mm_wad: WadArray  # (A,)

    @property
    def healthy(self) -> NDArray[np.bool_]:
        return np.asarray(self.equity_wad >= self.mm_wad, dtype=np.bool_)


@dataclass(frozen=True)
class Allocation:
    """Per venue: the requirement a certificate reports (before the clamp) and the one in force."""

    im_wad: WadArray  # (A, V) allocated, as certified (never negative: the contract's uint256)
    mm_wad: WadArray
    im_in_force_wad: WadArray  # (A, V) after the X2 clamp
    mm_in_force_wad: WadArray


def global_view(book: Book, prices_usd: FloatArray, params: CrossVenueParams) -> GlobalView:
    """X1: tiers on the whole book's gross exposure, scaled by the exposure the hedge leaves.

    `prices_usd` is venues × markets: each venue's legs are valued at that venue's price (only
    the prices of markets an account holds on a venue matter: the rest may be anything finite).
    """
    prices = as_float_array("prices_usd", prices_usd, ndim=2)
    n_accounts, n_venues, n_markets = book.sizes.shape
    if prices.shape != (n_venues, n_markets) or params.tiers.floor_usd.shape[0] != n_markets:
        raise RiskInputError(
            f"prices {prices.shape} must be venues × markets ({n_venues}, {n_markets}) and the "
            f"tiers ({params.tiers.floor_usd.shape[0]} rows) one row per common market"
        )
    notional = book.sizes * prices[None, :, :]  # (A, V, M) signed USD
    net = np.abs(notional.sum(axis=1))  # (A, M)
    gross = np.abs(notional).sum(axis=1)
    exposure = net + params.hedge_haircut * (gross - net)
    kept = np.divide(exposure, gross, out=np.zeros_like(gross), where=gross > 0)
    market: IntArray = np.tile(np.arange(n_markets, dtype=np.intp), n_accounts)
    im, mm = tiered_margin(gross.ravel(), market, params.tiers)
    equity = book.equity_wad.sum(axis=1) + book.pledged_wad.sum(axis=1)
    return GlobalView(
        equity_wad=wad_array(equity),
        im_wad=usd_to_wad_up((im.reshape(gross.shape) * kept).sum(axis=1)),
        mm_wad=usd_to_wad_up((mm.reshape(gross.shape) * kept).sum(axis=1)),
    )


def _split_surplus(book: Book, surplus: WadArray, static: WadArray) -> WadArray:
    """`equity_v − share_v × surplus`, share_v = static_v / Σ static; floor division keeps the
    allocated part of a surplus at most the surplus and of a deficit at least the deficit."""
    total = static.sum(axis=1)
    share = (surplus[:, None] * static) // np.where(total == 0, 1, total)[:, None]
    return np.asarray(np.maximum(book.equity_wad - share, 0), dtype=object)


def clamp(
    alloc_im: Any, alloc_mm: Any, static_im: Any, static_mm: Any, pledged: Any
) -> tuple[Any, Any]:
    """X2 exactly as `VenueLink.requirementInForce`: tighten freely, loosen only by pledges.
    Works on ints and on (object) arrays of ints alike."""
    im = np.maximum(alloc_im, static_im - np.minimum(static_im, pledged))
    mm = np.maximum(alloc_mm, static_mm - np.minimum(static_mm, pledged))
    return np.maximum(im, mm), mm


def allocate(book: Book, view: GlobalView) -> Allocation:
    """Each venue's share of the whole book's requirement, and what is in force after X2."""
    im = _split_surplus(book, view.equity_wad - view.im_wad, book.static_im_wad)
    mm = _split_surplus(book, view.equity_wad - view.mm_wad, book.static_mm_wad)
    im_in_force, mm_in_force = clamp(
        im, mm, book.static_im_wad, book.static_mm_wad, book.pledged_wad
    )
    return Allocation(im, mm, wad_array(im_in_force), wad_array(mm_in_force))


def disagreement(book: Book, view: GlobalView, allocation: Allocation) -> NDArray[np.bool_]:
    """(A,) whether a venue where the account holds a position (a standalone requirement) gives
    another verdict (liquidatable or not, by the MM in force) than the whole book. Only a venue
    whose own equity is negative while the book is healthy disagrees once pledges cover the
    clamp: its loss needs a claim (X4), not a requirement."""
    venue_healthy = book.equity_wad >= allocation.mm_in_force_wad
    differs = (venue_healthy != view.healthy[:, None]) & (book.static_mm_wad > 0)
    return np.asarray(differs.any(axis=1), dtype=np.bool_)


@dataclass(frozen=True)
class Pledges:
    """Active pledges, one row each: pledge `ids[p]` of `account[p]`, held on venue `holder[p]`
    in favour of venue `target[p]`, `amount_wad[p]` remaining."""

    ids: Sequence[int]
    account: IntArray
    holder: IntArray
    target: IntArray
    amount_wad: WadArray

    def in_favour(self, n_accounts: int, n_venues: int) -> WadArray:
        """(A, V): what a certificate reports to each venue as pledged to it."""
        pledged = np.zeros((n_accounts, n_venues), dtype=object)
        np.add.at(pledged, (self.account, self.target), self.amount_wad)
        return pledged


@dataclass(frozen=True)
class Move:
    """X5: move pledge `pledge_id` (held on venue `holder`) to favour venue `to_venue`."""

    pledge_id: int
    account: int
    holder: int
    from_venue: int
    to_venue: int
    amount_wad: int


def rebalance(
    book: Book, view: GlobalView, pledges: Pledges, allowance_wad: WadArray
) -> list[Move]:
    """X5: moves that stop venues liquidating a healthy book by pledges another venue can spare.

    A venue v of a healthy account liquidates only because the clamp's floor
    `static_mm_v − pledged_v` exceeds its equity (the allocation itself never does); it needs that
    excess. Venue u can give up x of the pledges in its favour while `static_mm_u − (pledged_u −
    x) ≤ equity_u`. A pledge moves whole (MOVE pays no part), never to its own holder, and only
    within the allowance (`allowance_wad[a, holder]`) its holder's VenueLink has left. Needs are
    served largest first, each by the smallest pledge that covers it, else the largest that fits.
    """
    floor = book.static_mm_wad - np.minimum(book.static_mm_wad, book.pledged_wad)
    need = np.where(view.healthy[:, None], np.maximum(floor - book.equity_wad, 0), 0)
    room: WadArray = book.equity_wad + book.pledged_wad - book.static_mm_wad
    spare: WadArray = np.minimum(np.maximum(room, 0), book.pledged_wad)
    allowance = np.array(allowance_wad, dtype=object, copy=True)
    moves: list[Move] = []
    moved: set[int] = set()
    for a, v in sorted(zip(*np.nonzero(need > 0), strict=True), key=lambda av: -need[av]):
        remaining = int(need[a, v])
        while remaining > 0:
            fits = [
                p
                for p in np.flatnonzero(pledges.account == a)
                if p not in moved
                and pledges.target[p] != v
                and pledges.holder[p] != v
                and pledges.amount_wad[p] <= spare[a, pledges.target[p]]
                and pledges.amount_wad[p] <= allowance[a, pledges.holder[p]]
            ]
            if not fits:
                break
            covering = [p for p in fits if pledges.amount_wad[p] >= remaining]
            pick = (
                min(covering, key=lambda p: pledges.amount_wad[p])
                if covering
                else max(fits, key=lambda p: pledges.amount_wad[p])
            )
            amount = int(pledges.amount_wad[pick])
            source, holder = int(pledges.target[pick]), int(pledges.holder[pick])
            spare[a, source] -= amount
            allowance[a, holder] -= amount
            remaining -= amount
            moved.add(int(pick))
            moves.append(Move(int(pledges.ids[pick]), int(a), holder, source, int(v), amount))
    return moves
