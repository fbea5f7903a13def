"""The cross-venue model (offchain/risk/crossvenue.py): X1 global view, allocation, X2 clamp,
X5 rebalancing. Pure numpy: no chain."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from offchain.risk import TierSchedule
from offchain.risk.crossvenue import (
    WAD,
    Book,
    CrossVenueParams,
    Pledges,
    allocate,
    clamp,
    disagreement,
    global_view,
    rebalance,
    wad_array,
)

# The default tiers (IM 10% / MM 6.5% below $1M, 15% / 9.75% to $5M), one common market: ETH.
TIERS = TierSchedule.build([[0.0, 1e6, 5e6]], [[0.10, 0.15, 0.25]], [[0.065, 0.0975, 0.1625]])
PARAMS = CrossVenueParams(TIERS)


def usd(x: float) -> int:
    return int(Decimal(str(x)) * WAD)


def eth(b: Book | int) -> np.ndarray:
    """ETH at $2,000 on every venue."""
    return np.full((b if isinstance(b, int) else b.n_venues, 1), 2_000.0)


def in_usd(wad: int) -> float:
    return wad / WAD


def book(
    sizes: list[list[float]],
    equity: list[float],
    pledged: list[float] | None = None,
    im_rate: float = 0.10,
    mm_rate: float = 0.065,
    price: float = 2_000.0,
) -> Book:
    """One account, one market; the standalone requirement is the contract's flat rate."""
    notional = [abs(s[0]) * price for s in sizes]
    return Book(
        sizes=np.array([sizes], dtype=np.float64),
        equity_wad=wad_array([[usd(e) for e in equity]]),
        static_im_wad=wad_array([[usd(n * im_rate) for n in notional]]),
        static_mm_wad=wad_array([[usd(n * mm_rate) for n in notional]]),
        pledged_wad=wad_array([[usd(p) for p in (pledged or [0.0] * len(sizes))]]),
    )


def test_split_leverage__two_venues_each_under_a_tier__margined_as_one() -> None:  # X1
    # $800k long on each venue: each is below the $1M floor alone, the $1.6M book is above it.
    b = book([[400.0], [400.0]], equity=[100_000.0, 100_000.0])
    view = global_view(b, eth(b), PARAMS)
    assert in_usd(view.im_wad[0]) == pytest.approx(100_000 + 0.15 * 600_000)  # not 2 × $80k
    allocation = allocate(b, view)
    assert all(allocation.im_in_force_wad[0] > b.static_im_wad[0])  # X2: tightening is free


def test_hedge_across_venues__keeps_the_haircut_of_the_pair() -> None:  # X1
    b = book([[100.0], [-100.0]], equity=[30_000.0, 30_000.0])
    view = global_view(b, eth(b), PARAMS)
    assert in_usd(view.im_wad[0]) == pytest.approx(
        0.2 * 0.10 * 400_000
    )  # 80% offset of the hedged pair
    unhedged = global_view(book([[100.0], [100.0]], [30_000.0] * 2), eth(2), PARAMS)
    assert in_usd(unhedged.im_wad[0]) == pytest.approx(0.10 * 400_000)


def test_clamp__without_pledges__never_below_standalone() -> None:  # X2
    b = book([[100.0], [-100.0]], equity=[30_000.0, 30_000.0])
    allocation = allocate(b, global_view(b, eth(b), PARAMS))
    assert all(allocation.im_wad[0] < b.static_im_wad[0])  # the model would loosen...
    assert list(allocation.im_in_force_wad[0]) == list(b.static_im_wad[0])  # ...X2 does not


wads = st.integers(min_value=0, max_value=10**30)


@settings(max_examples=300, deadline=None)
@given(alloc_im=wads, alloc_mm=wads, static_im=wads, static_mm=wads, pledged=wads)
def test_clamp__never_below_standalone_minus_pledged(  # X2
    alloc_im: int, alloc_mm: int, static_im: int, static_mm: int, pledged: int
) -> None:
    im, mm = clamp(alloc_im, alloc_mm, static_im, static_mm, pledged)
    assert im >= max(static_im - pledged, 0)
    assert mm >= max(static_mm - pledged, 0)
    assert im >= max(mm, alloc_im)
    assert mm >= alloc_mm
    assert mm == max(alloc_mm, static_mm - min(static_mm, pledged))  # the contract's formula


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.floats(-2_000, 2_000, allow_nan=False), min_size=3, max_size=3),
    equity=st.lists(st.floats(0, 500_000, allow_nan=False), min_size=3, max_size=3),
    pledged=st.lists(st.floats(0, 300_000, allow_nan=False), min_size=3, max_size=3),
)
def test_pledges_suffice__zero_disagreement(
    sizes: list[float], equity: list[float], pledged: list[float]
) -> None:  # X1 allocation + X2
    # Whenever the pledges in each venue's favour cover what its clamp would add to the
    # allocation, every venue holding a position has the whole book's verdict.
    b = book([[s] for s in sizes], equity, pledged)
    view = global_view(b, eth(b), PARAMS)
    alloc = allocate(b, view)
    assume(all(b.pledged_wad[0] >= b.static_mm_wad[0] - alloc.mm_wad[0]))
    assert list(alloc.mm_in_force_wad[0]) == list(alloc.mm_wad[0])
    assert not disagreement(b, view, alloc)[0]


def test_without_pledges__a_hedged_leg_disagrees() -> None:  # X2's price, X5's reason
    # ETH fell: the long leg's venue is below its standalone MM, the whole book is fine.
    b = book([[100.0], [-100.0]], equity=[5_000.0, 60_000.0])
    view = global_view(b, eth(b), PARAMS)
    assert view.healthy[0]
    assert disagreement(b, view, allocate(b, view))[0]


def pledge_table(rows: list[tuple[int, int, int, float]]) -> Pledges:
    """(id, holder, target, amount usd) of account 0."""
    return Pledges(
        ids=[r[0] for r in rows],
        account=np.zeros(len(rows), dtype=np.intp),
        holder=np.array([r[1] for r in rows], dtype=np.intp),
        target=np.array([r[2] for r in rows], dtype=np.intp),
        amount_wad=wad_array([usd(r[3]) for r in rows]),
    )


def crash_book(pledges: Pledges) -> Book:
    """Long on venue 0 (now short of its $13k MM: $5k equity), short on venue 1, venue 2 holds
    spare cash; pledges as given."""
    b = book([[100.0], [-100.0], [0.0]], equity=[5_000.0, 60_000.0, 50_000.0])
    return Book(b.sizes, b.equity_wad, b.static_im_wad, b.static_mm_wad, pledges.in_favour(1, 3))


def test_rebalance__moves_surplus_to_the_venue_that_would_liquidate() -> None:  # X5
    pledges = pledge_table([(7, 1, 2, 3_000.0), (8, 2, 1, 10_000.0), (9, 1, 2, 20_000.0)])
    b = crash_book(pledges)
    view = global_view(b, eth(b), PARAMS)
    allowance = wad_array([[0, usd(1e6), usd(1e6)]])
    moves = rebalance(b, view, pledges, allowance)
    # Venue 0 needs $13k − $5k = $8k: pledge 8 ($10k, held on 2, for 1) is the smallest that
    # covers it, and venue 1 keeps its $13k MM with $60k equity.
    assert [(m.pledge_id, m.from_venue, m.to_venue) for m in moves] == [(8, 1, 0)]
    moved = pledge_table([(7, 1, 2, 3_000.0), (8, 2, 0, 10_000.0), (9, 1, 2, 20_000.0)])
    after = crash_book(moved)
    assert not disagreement(after, view, allocate(after, view))[0]


def test_rebalance__never_beyond_the_cap() -> None:  # X5
    pledges = pledge_table([(8, 2, 1, 10_000.0), (9, 1, 2, 3_000.0)])
    b = crash_book(pledges)
    view = global_view(b, eth(b), PARAMS)
    # Venue 2's VenueLink lets the committee move $9,999: not pledge 8. Pledge 9 ($3k) fits the
    # cap on venue 1 but does not cover the need alone; it moves, and nothing more.
    moves = rebalance(b, view, pledges, wad_array([[0, usd(5_000.0), usd(9_999.0)]]))
    assert [m.pledge_id for m in moves] == [9]
    assert rebalance(b, view, pledges, wad_array([[0, 0, 0]])) == []


def test_rebalance__unhealthy_book__moves_nothing() -> None:  # X5 never props up a bad book
    # The hedged pair needs $5.2k of MM as a whole; $2k of pledges and no equity do not cover it.
    pledges = pledge_table([(8, 2, 1, 2_000.0)])
    b = book([[100.0], [-100.0], [0.0]], equity=[0.0, 0.0, 0.0])
    b = Book(b.sizes, b.equity_wad, b.static_im_wad, b.static_mm_wad, pledges.in_favour(1, 3))
    view = global_view(b, eth(b), PARAMS)
    assert not view.healthy[0]
    assert rebalance(b, view, pledges, wad_array([[usd(1e6)] * 3])) == []


def test_haircut_out_of_range__one_line_error() -> None:
    with pytest.raises(ValueError, match="hedge_haircut"):
        CrossVenueParams(TIERS, hedge_haircut=1.5)
