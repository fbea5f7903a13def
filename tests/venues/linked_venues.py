"""The linked venues the tests in this folder run on (`Linked`): chains, deployments, links,
registries and the committee's dev keys, and how the committee's certificates and orders are
built, signed and submitted, so a test states only what it changes. A module of its own, with a
name no other test folder uses: `from conftest import ...` would find whichever conftest.py was
imported first in a whole-suite run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from web3.contract import Contract
from web3.types import TxReceipt

from offchain.chain import Chain
from offchain.chain.client import Client
from offchain.committee.bls import SecretKey, aggregate_signatures
from offchain.committee.registry import Registry
from offchain.link.messages import (
    Certificate,
    Order,
    OrderKind,
    VenueView,
    certificate_digest,
    link_id,
    order_digest,
)
from offchain.models import Deployment

VENUES = 3
MEMBERS = 4
THRESHOLD = 3
SIGNERS = (0, 1, 2)  # the members who sign unless a test says otherwise


@dataclass
class Linked:
    """The linked venues, in link order, and the committee's dev keys."""

    chains: list[Chain]
    deployments: list[Deployment]
    clients: list[Client]
    links: list[Contract]
    registries: list[Registry]
    keys: list[SecretKey]

    @property
    def link_id(self) -> bytes:
        return link_id([d.chain_id for d in self.deployments], [c.address for c in self.links])

    def now(self) -> int:
        """The latest block time every chain has reached (certificates must not be from the future
        anywhere)."""
        return min(int(c.w3.eth.get_block("latest")["timestamp"]) for c in self.chains)

    def view(
        self,
        j: int,
        account: str,
        im_wad: int,
        mm_wad: int,
        pledged_wad: int = 0,
        *,
        prices: dict[str, int] | None = None,
    ) -> VenueView:
        """Venue j's entry for `account` as the committee would see it now: its nonces there and
        the current prices of its markets' assets (`prices` overrides some, by symbol)."""
        client, d = self.clients[j], self.deployments[j]
        state = client.account(account)
        assets = sorted({m.oracle_asset for m in d.markets if state["market_mask"] >> m.id & 1})
        symbols = [d.asset(a).symbol for a in assets]
        given = prices or {}
        return VenueView(
            chain_id=d.chain_id,
            link=self.links[j].address,
            position_nonce=state["nonce"],
            pledge_nonce=int(self.links[j].functions.pledgeNonce(account).call()),
            im_wad=im_wad,
            mm_wad=mm_wad,
            pledged_wad=pledged_wad,
            price_asset_mask=sum(1 << a for a in assets),
            prices_e18=tuple(given.get(s, client.price_e18(s)) for s in symbols),
        )

    def certificate(
        self,
        account: str,
        sequence: int,
        views: Sequence[VenueView] | None = None,
        *,
        issued_at: int | None = None,
    ) -> Certificate:
        """A certificate over `views` (default: every venue's static-looking view with zero
        requirement), issued now."""
        if views is None:
            views = [self.view(j, account, 0, 0) for j in range(len(self.chains))]
        return Certificate(
            link_id=self.link_id,
            account=account,
            sequence=sequence,
            issued_at=self.now() if issued_at is None else issued_at,
            global_equity_wad=0,
            global_im_wad=sum(v.im_wad for v in views),
            global_mm_wad=sum(v.mm_wad for v in views),
            venues=tuple(views),
        )

    def sign(self, message: bytes, signers: Sequence[int] = SIGNERS) -> tuple[int, bytes]:
        """(bitmap, aggregate signature) of `signers` over `message`."""
        signature = aggregate_signatures([self.keys[i].sign(message) for i in signers])
        return sum(1 << i for i in signers), signature

    def submit_fn(self, j: int, c: Certificate, signers: Sequence[int] = SIGNERS) -> Any:
        bitmap, signature = self.sign(certificate_digest(c), signers)
        return self.links[j].functions.submitCertificate(c.as_abi(), bitmap, signature)

    def submit(self, j: int, c: Certificate, signers: Sequence[int] = SIGNERS) -> TxReceipt:
        return self.chains[j].send(self.submit_fn(j, c, signers), self.keeper, "submit certificate")

    def order(
        self,
        j: int,
        kind: OrderKind,
        pledge_id: int,
        *,
        issued_at: int | None = None,
        **fields: Any,
    ) -> Order:
        """An order on venue j's pledge `pledge_id`, issued at venue j's latest block time."""
        now = int(self.chains[j].w3.eth.get_block("latest")["timestamp"])
        return Order(
            link_id=self.link_id,
            chain_id=self.deployments[j].chain_id,
            link=self.links[j].address,
            kind=kind,
            pledge_id=pledge_id,
            issued_at=now if issued_at is None else issued_at,
            **fields,
        )

    def execute_fn(self, j: int, o: Order, signers: Sequence[int] = SIGNERS) -> Any:
        bitmap, signature = self.sign(order_digest(o), signers)
        return self.links[j].functions.executeOrder(o.as_abi(), bitmap, signature)

    def execute(self, j: int, o: Order, signers: Sequence[int] = SIGNERS) -> TxReceipt:
        return self.chains[j].send(self.execute_fn(j, o, signers), self.keeper, "execute order")

    @property
    def keeper(self) -> str:
        """Anyone may submit certificates and orders: an account with no role."""
        return self.chains[0].accounts[9]

    def with_view(self, c: Certificate, j: int, **changes: Any) -> Certificate:
        """`c` with venue j's entry changed."""
        views = list(c.venues)
        views[j] = replace(views[j], **changes)
        return replace(c, venues=tuple(views))
