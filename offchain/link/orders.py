"""Which pledge orders are due (X3 release, X4 claim, X5 move): one rule each, read from the
mirrors of a `LinkView`, used by the engine that proposes orders and by every member that
checks one before it signs (`order_due`).

* RELEASE (X3 phase 2) of a RELEASING pledge once its target venue applies no certificate that
  may count it (`counted_nowhere`): none, or one expired, or one the committee built without it.
* CLAIM (X4) of a loss a venue booked on an account (`InsolvencyResolved` debt) against the
  account's largest pledge in that venue's favour, for at most the loss and the pledge; one
  claim id per loss, never paid on two venues (the rule names one pledge, and a paid claim id is
  due nowhere again).
* MOVE (X5) of a pledge `rebalance` proposes, once the old target applies no certificate that
  may count it (the engine withholds it from certificates first: phase 1 as for a release).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from offchain.errors import SigningRefused
from offchain.link.ledger import PledgeState
from offchain.link.messages import Order, OrderKind, claim_id, order_digest, pledged_wad
from offchain.link.view import Built, LinkView

Known = Mapping[tuple[str, int], Built]  # (account, sequence) → what the committee built


def counted_nowhere(view: LinkView, known: Known, holder: int, pledge_id: int, now: int) -> bool:
    """Whether pledge `pledge_id` held on venue `holder` counts in no certificate its target
    venue may still hold in force at block time `now`: the target's certificate for the account
    is absent, expired, or one we built without counting the pledge (built after it left
    ACTIVE, or withholding it for a move)."""
    pledge = view.venues[holder].mirror.link.pledges[pledge_id]
    target = view.venues[pledge.to_venue].mirror.link
    applied = target.certificates.get(pledge.account)
    if applied is None or now > applied.issued_at + target.max_age_s:
        return True
    built = known.get((pledge.account, applied.sequence))
    return built is not None and (holder, pledge_id) not in built.counted


def _order(
    view: LinkView, holder: int, kind: OrderKind, pledge_id: int, now: int, **f: Any
) -> Order:
    venue = view.venues[holder]
    return Order(view.link_id, venue.chain_id, venue.link, kind, pledge_id, now, **f)


def releases(view: LinkView, known: Known, now: int) -> list[tuple[int, Order]]:
    """(holder venue, RELEASE order) of every releasing pledge phase 1 is done for."""
    return [
        (w, _order(view, w, OrderKind.RELEASE, i, now))
        for w, venue in enumerate(view.venues)
        for i, p in venue.mirror.link.pledges.items()
        if p.state is PledgeState.RELEASING and counted_nowhere(view, known, w, i, now)
    ]


def claims(view: LinkView, now: int) -> list[tuple[int, Order]]:
    """(holder venue, CLAIM order) for every loss booked on a venue and not yet claimed."""
    paid = set().union(*(v.mirror.link.paid_claims for v in view.venues))
    claimable = (PledgeState.ACTIVE, PledgeState.RELEASING)
    out = []
    for v, venue in enumerate(view.venues):
        for loss in venue.mirror.losses:
            cid = claim_id(venue.chain_id, loss.account, loss.block, loss.log_index)
            # The largest pledge in v's favour (in wad); ties to the lowest venue, then id.
            candidates = [
                (pledged_wad(p.amount, other.quote_decimals), -w, -i)
                for w, other in enumerate(view.venues)
                for i, p in other.mirror.link.pledges.items()
                if p.account == loss.account
                and p.to_venue == v
                and p.state in claimable
                and p.amount > 0
            ]
            if cid in paid or not candidates:
                continue
            _, w, i = max(candidates)
            holder, pledge_id = -w, -i
            scale = 10 ** (18 - view.venues[holder].quote_decimals)
            remaining = view.venues[holder].mirror.link.pledges[pledge_id].amount
            amount = min(remaining, -(-loss.debt_wad // scale))  # the loss, rounded up
            order = _order(
                view,
                holder,
                OrderKind.CLAIM,
                pledge_id,
                now,
                amount=amount,
                to_venue=v,
                claim_id=cid,
            )
            out.append((holder, order))
    return out


def order_json(o: Order) -> dict[str, Any]:
    """An order as a member's proposal carries it."""
    return {
        "link_id": "0x" + o.link_id.hex(),
        "chain_id": o.chain_id,
        "link": o.link,
        "kind": int(o.kind),
        "pledge_id": o.pledge_id,
        "issued_at": o.issued_at,
        "amount": o.amount,
        "to_venue": o.to_venue,
        "claim_id": "0x" + o.claim_id.hex(),
    }


def order_from_json(data: Any) -> Order:
    try:
        return Order(
            link_id=bytes.fromhex(str(data["link_id"]).removeprefix("0x")),
            chain_id=int(data["chain_id"]),
            link=str(data["link"]),
            kind=OrderKind(int(data["kind"])),
            pledge_id=int(data["pledge_id"]),
            issued_at=int(data["issued_at"]),
            amount=int(data["amount"]),
            to_venue=int(data["to_venue"]),
            claim_id=bytes.fromhex(str(data["claim_id"]).removeprefix("0x")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise SigningRefused(f"malformed order proposal: {exc}", "") from exc


def order_due(view: LinkView, known: Known, order: Order, now: int) -> bool:
    """A member's check of a RELEASE or CLAIM order: the rule above names it, at block time
    `now` (the order's own issue time is the rule's time: the contract bounds its age)."""
    if order.kind is OrderKind.RELEASE:
        due = releases(view, known, now)
    elif order.kind is OrderKind.CLAIM:
        due = claims(view, now)
    else:
        return False
    digest = order_digest(order)
    return any(order_digest(o) == digest for _, o in due)
