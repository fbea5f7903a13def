"""Fixtures for linked venues: three Anvil chains with distinct chain ids, each with the whole
system (deploy_system), a CommitteeRegistry with the same dev committee, and a VenueLink joining
them (deploy_link); deployed once per xdist worker and reverted on every chain after each test.

`Linked` also builds, signs and submits certificates and orders the way the committee would, so
a test states only what it changes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

import pytest
from helpers import revert_to
from web3.contract import Contract
from web3.types import TxReceipt

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client
from offchain.chain.deploy import Roles, deploy_system
from offchain.committee.bls import SecretKey, aggregate_signatures, dev_secret_keys
from offchain.committee.registry import Registry
from offchain.link.deploy import deploy_link
from offchain.link.messages import (
    Certificate,
    Order,
    OrderKind,
    VenueView,
    certificate_digest,
    link_id,
    order_digest,
)
from offchain.models import Deployment, SystemSpec
from offchain.settings import Settings

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


@pytest.fixture(scope="session")
def _linked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Linked]:
    with ExitStack() as stack:
        chains = []
        for i in range(VENUES):
            node = stack.enter_context(Anvil(accounts=12, chain_id=31337 + i))
            settings = Settings(
                rpc_url=node.url, deployments_dir=tmp_path_factory.mktemp(f"venue{i}")
            )
            chains.append(Chain.connect(settings))
        keys = dev_secret_keys(MEMBERS)
        systems = []
        registries = []
        for chain in chains:
            roles = Roles.from_accounts(chain.accounts)
            systems.append((chain, deploy_system(chain, SystemSpec(), roles)))
            registries.append(Registry.deploy(chain, roles.owner, keys, THRESHOLD))
        deployments = deploy_link(systems, [r.address for r in registries])
        yield Linked(
            chains=chains,
            deployments=deployments,
            clients=[Client(c, d) for c, d in zip(chains, deployments, strict=True)],
            links=[
                c.contract("VenueLink", str(d.venue_link))
                for c, d in zip(chains, deployments, strict=True)
            ],
            registries=registries,
            keys=keys,
        )


@pytest.fixture
def linked(_linked: Linked) -> Iterator[Linked]:
    """The linked venues, every chain reverted to its deployed state after the test (and its
    clock brought back to the wall clock, as tests/conftest.py's `system` does)."""
    snapshots = []
    now = int(time.time())
    for chain in _linked.chains:
        request = chain.w3.provider.make_request
        if now > int(chain.w3.eth.get_block("latest")["timestamp"]):
            request("evm_mine", [now])  # type: ignore[arg-type]
        snapshots.append(request("evm_snapshot", [])["result"])  # type: ignore[arg-type]
        request("evm_mine", [])  # type: ignore[arg-type]
    yield _linked
    for chain, snapshot in zip(_linked.chains, snapshots, strict=True):
        revert_to(chain, snapshot)
