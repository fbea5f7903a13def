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
from dataclasses import dataclass, field
from typing import Any

from offchain.errors import SigningRefused
from offchain.link.ledger import Pledge, PledgeState
from offchain.link.messages import Certificate, Order, OrderKind, claim_id, order_digest
from offchain.link.view import LinkView

WAD = 10**18


@dataclass(frozen=True)
class Built:
    """A certificate the committee built, and the pledges it withheld: what `counted_nowhere`
    needs to know of a digest a venue applied."""

    certificate: Certificate
    withheld: frozenset[tuple[int, int]] = field(default_factory=frozenset)


def counted_nowhere(
    view: LinkView, built: Mapping[bytes, Built], holder: int, pledge: Pledge, now: int
) -> bool:
    """Whether pledge (`holder`, `pledge`) counts in no certificate its target venue may still
    hold in force at block time `now`: the target's applied certificate for the account is
    absent, expired, or one we built after the pledge left ACTIVE or while withholding it."""
    ledger = view.venues[pledge.to_venue].mirror.ledger
    applied = ledger.applied.get(pledge.account)
    if applied is None or now > applied.issued_at + ledger.max_age_s:
        return True
    known = built.get(applied.digest)
    if known is None:
        return False  # not ours: wait for it to expire
    if (holder, pledge.pledge_id) in known.withheld:
        return True
    return (
        pledge.state is not PledgeState.ACTIVE
        and known.certificate.venues[holder].pledge_nonce >= pledge.nonce
    )


def _order(
    view: LinkView, holder: int, kind: OrderKind, pledge: Pledge, now: int, **f: Any
) -> Order:
    venue = view.venues[holder]
    return Order(view.link_id, venue.chain_id, venue.link, kind, pledge.pledge_id, now, **f)


def releases(view: LinkView, built: Mapping[bytes, Built], now: int) -> list[tuple[int, Order]]:
    """(holder venue, RELEASE order) of every releasing pledge phase 1 is done for."""
    return [
        (w, _order(view, w, OrderKind.RELEASE, p, now))
        for w, venue in enumerate(view.venues)
        for p in venue.mirror.ledger.pledges.values()
        if p.state is PledgeState.RELEASING and counted_nowhere(view, built, w, p, now)
    ]


def claims(view: LinkView, now: int) -> list[tuple[int, Order]]:
    """(holder venue, CLAIM order) for every loss booked on a venue and not yet claimed."""
    paid = set().union(*(v.mirror.ledger.paid_claims for v in view.venues))
    out = []
    for v, venue in enumerate(view.venues):
        for loss in venue.mirror.deficits:
            cid = claim_id(venue.chain_id, loss.account, loss.block, loss.log_index)
            candidates = [
                (p.amount * 10 ** (18 - view.venues[w].quote_decimals), -w, -p.pledge_id, w, p)
                for w, other in enumerate(view.venues)
                for p in other.mirror.ledger.pledges_of(
                    loss.account, PledgeState.ACTIVE, PledgeState.RELEASING
                )
                if p.to_venue == v and p.amount > 0
            ]
            if cid in paid or not candidates:
                continue
            *_, w, p = max(candidates)  # the largest pledge; ties to the lowest venue, then id
            scale = 10 ** (18 - view.venues[w].quote_decimals)
            amount = min(p.amount, -(-loss.debt_wad // scale))
            out.append(
                (
                    w,
                    _order(
                        view, w, OrderKind.CLAIM, p, now, amount=amount, to_venue=v, claim_id=cid
                    ),
                )
            )
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


def order_due(view: LinkView, built: Mapping[bytes, Built], order: Order, now: int) -> bool:
    """A member's check of a RELEASE or CLAIM order: the rule above names it, at block time
    `now` (the order's own issue time is the rule's time: the contract bounds its age)."""
    if order.kind is OrderKind.RELEASE:
        due = releases(view, built, now)
    elif order.kind is OrderKind.CLAIM:
        due = claims(view, now)
    else:
        return False
    digest = order_digest(order)
    return any(order_digest(o) == digest for _, o in due)
