"""Fixtures: one real Anvil per xdist worker, the system deployed once per worker, and a chain
snapshot reverted after every test so tests never see each other's state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from helpers import revert_to

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles, deploy_system
from offchain.models import Deployment, SystemSpec
from offchain.settings import Settings


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil(accounts=40) as node:
        yield node


@pytest.fixture(scope="session")
def settings(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(rpc_url=anvil.url, deployments_dir=tmp_path_factory.mktemp("deployments"))


@pytest.fixture(scope="session")
def chain(settings: Settings) -> Chain:
    return Chain.connect(settings)


@pytest.fixture(scope="session")
def roles(chain: Chain) -> Roles:
    return Roles.from_accounts(chain.accounts)


@pytest.fixture(scope="session")
def deployment(chain: Chain, roles: Roles, settings: Settings) -> Deployment:
    d = deploy_system(chain, SystemSpec(), roles)
    d.save(settings.deployments_dir)
    return d


@pytest.fixture(scope="session")
def session_client(chain: Chain, deployment: Deployment) -> Client:
    # Building contract objects from ABIs is slow; the client holds no state, so one will do.
    return Client(chain, deployment)


@pytest.fixture
def system(chain: Chain, session_client: Client) -> Iterator[Client]:
    """The deployed system, reset to its freshly deployed state after the test."""
    # A revert also rewinds the chain's clock to the snapshot's last block: on a long or loaded
    # run the chain would fall minutes behind the wall clock, which the engine's clock check
    # (±120 s) rightly refuses. An empty block at the wall-clock time puts them back in step.
    now = int(time.time())
    if now > int(chain.w3.eth.get_block("latest")["timestamp"]):
        chain.w3.provider.make_request("evm_mine", [now])  # type: ignore[arg-type]
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    # Every test starts from the session's base block, which ages as the suite runs; a fresh block
    # brings chain time back to the wall clock (the engine refuses a chain 120 s behind it).
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    yield session_client
    revert_to(chain, snapshot)


# Accounts by role (indices 0-3 are owner, matcher, guardian, insurance fund).
@pytest.fixture
def trader(chain: Chain) -> str:
    return chain.accounts[4]


@pytest.fixture
def maker(chain: Chain) -> str:
    return chain.accounts[5]


@pytest.fixture
def keeper(chain: Chain) -> str:
    return chain.accounts[6]


@pytest.fixture
def others(chain: Chain) -> list[str]:
    return chain.accounts[7:]


@dataclass(frozen=True)
class Opened:
    trader: str
    maker: str
    market: str
    size_wad: int
    price_e18: int


@pytest.fixture
def open_position(system: Client, trader: str, maker: str) -> Callable[..., Opened]:
    """Factory: fund `trader` and a deep-pocketed `maker`, then open `size` (base units, signed)
    on `market` at the oracle price. Returns what was opened."""

    def _open(
        size: float | str = 10,
        market: str = "ETH-PERP",
        collateral_usd: float | str = 5_000,
        who: str | None = None,
        counterparty: str | None = None,
    ) -> Opened:
        t, m = who or trader, counterparty or maker
        system.deposit(t, "USDC", collateral_usd, mint=True)
        system.deposit(m, "USDC", 10_000_000, mint=True)
        underlying = system.d.asset(system.d.market(market).oracle_asset).symbol
        price = system.price_e18(underlying)
        size_wad = wad(size)
        system.trade(market, t, m, size_wad, price)
        return Opened(t, m, market, size_wad, price)

    return _open
