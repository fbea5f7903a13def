"""A committee member of a link: it keeps its OWN mirrors of every venue and signs a proposal
only if they rebuild exactly the proposed message (THREATS G06; offchain/committee/member.py
keeps "never two messages for one sequence").

Proposals (JSON, the `proposal` of a sign request):
    {"certificate": CertificateProposal.as_json()}   the account's certificate at stated prices
    {"order": {...Order fields...}, "blocks": […]}    a RELEASE or CLAIM order the rules name
Both name the block each venue's state was read at; the member reads its mirrors at least
that far first.

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
from offchain.link.messages import Order, certificate_digest, order_digest
from offchain.link.orders import order_due, order_from_json
from offchain.link.view import Built, CertificateProposal, LinkView
from offchain.models import Deployment
from offchain.settings import Settings


class LinkMember:
    """A member's view of the link: rebuilds proposals from its own mirrors, syncing them when
    they do not (yet) reproduce one, and remembers what it built (a release needs to know what
    the certificate a venue holds counted)."""

    def __init__(self, view: LinkView) -> None:
        self.view = view
        self.known: dict[tuple[str, int], Built] = {}

    def rebuild(self, proposal: Proposal) -> bytes:
        if "certificate" in proposal:
            return self._certificate(CertificateProposal.from_json(proposal["certificate"]))
        if "order" in proposal:
            self.view.sync_to([int(b) for b in proposal.get("blocks", ())])
            return self._order(order_from_json(proposal["order"]))
        raise SigningRefused("a proposal is a certificate or an order", "")

    def _certificate(self, proposal: CertificateProposal) -> bytes:
        built = self.view.rebuild(proposal)
        self.known[(proposal.account, proposal.sequence)] = built
        return certificate_digest(built.certificate)

    def _order(self, order: Order) -> bytes:
        if not order_due(self.view, self.known, order, order.issued_at):
            raise SigningRefused(f"my mirrors do not make this {order.kind.name} order due", "")
        return order_digest(order)

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
