"""A committee member of a link: it keeps its OWN mirrors of every venue and signs a proposal
only if they rebuild exactly the proposed message (THREATS G06; offchain/committee/member.py
keeps "never two messages for one sequence").

Proposals (JSON, the `proposal` of a sign request):
    {"certificate": CertificateProposal.as_json()}   the account's certificate at stated prices
    {"order": {...Order fields...}}                   a RELEASE, CLAIM or MOVE order the rules name
A certificate proposal names the block each venue's state was read at: the member reads its
mirrors at least that far first. An order is checked at the chain's head. After signing a MOVE
the member withholds that pledge from every certificate it signs until the move is done or the
order expired, so the old target never counts it again (X3: never counted at two venues).

Run as a process (`python -m offchain.link.member --config FILE`, key in
`MARGINSYNC_COMMITTEE_KEY`); FILE is JSON {"venues": [{"rpc_url": …, "deployment": {…}}, …]} in
link order.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from offchain.chain.bindings import Chain
from offchain.committee.bls import SecretKey
from offchain.committee.member import Member, Proposal, key_from_env, serve
from offchain.errors import SigningRefused
from offchain.link.messages import Order, OrderKind, certificate_digest, order_digest
from offchain.link.mirror import PledgeState
from offchain.link.orders import order_due, order_from_json, order_holder
from offchain.link.view import CertificateProposal, Known, LinkView
from offchain.models import Deployment
from offchain.settings import Settings


class LinkMember:
    """A member's view of the link: rebuilds proposals from its own mirrors, syncing them when
    they do not (yet) reproduce one, and remembers what it built (a release needs to know what
    the certificate a venue holds counted)."""

    def __init__(self, view: LinkView) -> None:
        self.view = view
        self.known = Known()
        self.moves: dict[tuple[int, int], Order] = {}  # MOVE orders signed, by pledge

    def rebuild(self, proposal: Proposal) -> bytes:
        if "certificate" in proposal:
            return self._certificate(CertificateProposal.from_json(proposal["certificate"]))
        if "order" in proposal:
            # At the chain's head, whatever the proposer read: an order's rule must see every
            # certificate a venue holds, the newest included.
            self.view.sync()
            return self._order(order_from_json(proposal["order"]))
        raise SigningRefused("a proposal is a certificate or an order", "")

    def _certificate(self, proposal: CertificateProposal) -> bytes:
        self.view.sync_to(proposal.blocks)
        moving = self._moving(proposal.issued_at)
        if not moving <= set(proposal.withheld):
            raise SigningRefused(
                f"the certificate counts pledges {sorted(moving - set(proposal.withheld))} "
                "this member signed a move of",
                "withhold them until the moves are done",
            )
        built = self.view.rebuild(proposal)
        self.known.add(built)
        return certificate_digest(built.certificate)

    def _order(self, order: Order) -> bytes:
        if not order_due(self.view, self.known, order, order.issued_at):
            raise SigningRefused(f"my mirrors do not make this {order.kind.name} order due", "")
        if order.kind is OrderKind.MOVE:
            self.moves[(order_holder(self.view, order), order.pledge_id)] = order
        return order_digest(order)

    def _moving(self, now: int) -> set[tuple[int, int]]:
        """The pledges of moves this member signed that may still execute: ACTIVE, not yet at
        the new target, the order not expired."""
        out = set()
        for (holder, pledge_id), order in list(self.moves.items()):
            link = self.view.venues[holder].mirror.ledger
            p = link.pledges.get(pledge_id)
            if (
                p is None
                or p.state is not PledgeState.ACTIVE
                or p.to_venue == order.to_venue
                or now > order.issued_at + link.max_age_s
            ):
                del self.moves[(holder, pledge_id)]
            else:
                out.add((holder, pledge_id))
        return out

    def member(self, key: SecretKey) -> Member:
        return Member(key, lambda _sequence, _message: False, self.rebuild)


def connect(config: Path) -> LinkView:
    """A `LinkView` over fresh mirrors of the venues a member config file names."""
    data = json.loads(config.read_text())
    chains: list[Chain] = []
    deployments: list[Deployment] = []
    for venue in data["venues"]:
        chains.append(Chain.connect(Settings(rpc_url=venue["rpc_url"])))
        deployments.append(Deployment.model_validate(venue["deployment"]))
    return LinkView.connect(chains, deployments)


def write_config(path: Path, rpc_urls: Sequence[str], deployments: Sequence[Deployment]) -> Path:
    venues = [
        {"rpc_url": url, "deployment": d.model_dump(mode="json")}
        for url, d in zip(rpc_urls, deployments, strict=True)
    ]
    path.write_text(json.dumps({"venues": venues}))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A marginsync link committee member.")
    parser.add_argument("--config", type=Path, required=True, help="the venues, in link order")
    args = parser.parse_args(argv)
    view = connect(args.config)
    view.sync()
    serve(LinkMember(view).member(key_from_env()), sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
