"""Fixtures for linked venues: three Anvil chains with distinct chain ids, each with the whole
system (deploy_system), a CommitteeRegistry with the same dev committee, and a VenueLink joining
them (deploy_link); deployed once per xdist worker and reverted on every chain after each test.
Tests import `Linked` (what the fixtures give) from linked_venues.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from helpers import revert_to
from linked_venues import MEMBERS, THRESHOLD, VENUES, Linked

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client
from offchain.chain.deploy import Roles, deploy_system
from offchain.committee.bls import dev_secret_keys
from offchain.committee.registry import Registry
from offchain.link.deploy import deploy_link
from offchain.models import SystemSpec
from offchain.settings import Settings


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
