"""Fixtures for the BLS committee: the library harness and a 4-member, 3-of-4 registry, both
deployed once per worker and reverted to their deployed state after every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import revert_to
from web3.contract import Contract

from offchain.chain import Chain
from offchain.committee.bls import SecretKey, dev_secret_keys
from offchain.committee.registry import Registry

MEMBERS = 4
THRESHOLD = 3


@pytest.fixture(scope="session")
def committee_keys() -> list[SecretKey]:
    return dev_secret_keys(MEMBERS)


@pytest.fixture(scope="session")
def spare_keys() -> list[SecretKey]:
    """Keys that are not members (rotation targets, outsiders)."""
    return dev_secret_keys(MEMBERS + 3)[MEMBERS:]


@pytest.fixture(scope="session")
def committee_owner(chain: Chain) -> str:
    return chain.accounts[0]


@pytest.fixture(scope="session")
def _registry(chain: Chain, committee_owner: str, committee_keys: list[SecretKey]) -> Registry:
    return Registry.deploy(chain, committee_owner, committee_keys, THRESHOLD)


@pytest.fixture(scope="session")
def _harness(chain: Chain, committee_owner: str) -> Contract:
    return chain.deploy("BLS12381Harness", sender=committee_owner)


@pytest.fixture
def registry(chain: Chain, _registry: Registry) -> Iterator[Registry]:
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    yield _registry
    revert_to(chain, snapshot)  # member processes make these tests slow


@pytest.fixture
def harness(_harness: Contract) -> Contract:
    return _harness
