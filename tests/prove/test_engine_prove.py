"""The engine's prove mode end to end (issue 13.5, SPEC I35): with the proof gate on, a crash
makes the engine's attested MM tighten above equity while static margin still calls the account
healthy; the engine proves that account on its side path, the proof lands, and the keeper
liquidates. Without prove mode the same attestation is held back by the gate and the keeper
leaves the account alone."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import _revert, assert_revert

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client
from offchain.chain.deploy import dev_engine_keys
from offchain.errors import ConfigError
from offchain.feeds import ChainlinkPoller
from offchain.keeper import Keeper
from offchain.prove.model import ProvenModel
from offchain.prove.onchain import deploy_margin_proofs, set_proof_gate
from offchain.risk.config import ScenarioMarginConfig
from offchain.sync import Engine, EngineConfig, LocalSigner, State, source_sanitizer_config
from offchain.sync.engine import dev_submitter_key
from offchain.sync.proving import dev_prover_key

DEV_KEYS = [bytes.fromhex(k[2:]) for k in dev_engine_keys(3)]


@pytest.fixture
def published(chain: Chain, system: Client) -> Client:
    """A registry of the published model (what prove mode proves), with the gate on."""
    model = ProvenModel.from_config(ScenarioMarginConfig(), [a.symbol for a in system.d.assets])
    d = deploy_margin_proofs(chain, system.d, model, system.d.owner)
    set_proof_gate(chain, d, d.owner)
    return Client(chain, d)


@pytest.fixture
def engine_for(published: Client, tmp_path: Path) -> Iterator[Callable[[bool], Engine]]:
    made: list[Engine] = []

    def _make(prove: bool) -> Engine:
        engine = Engine(
            published.chain,
            published.d,
            signers=[LocalSigner(k) for k in DEV_KEYS],
            submitter_key=dev_submitter_key(),
            outbox_path=tmp_path / f"outbox-{len(made)}.sqlite",
            config=EngineConfig(),
            sanitizer_config=source_sanitizer_config("chain"),
            prover_key=dev_prover_key() if prove else None,
            # As in test_engine_e2e: the engine keeps the chain's time (reverts move it).
            clock=lambda: float(published.chain.w3.eth.get_block("pending")["timestamp"]),
        )
        made.append(engine)
        return engine

    yield _make
    for engine in made:
        engine.close()


def crash(engine: Engine, system: Client) -> Any:
    """A calm pass, then ETH −10 % in one round (the engine's volatility margin jumps)."""
    feeds = {a.symbol: a.feed for a in system.d.assets}
    for price in (None, 2_700):
        if price is not None:
            time.sleep(1.05)  # a new Chainlink round, a second after the last one
            system.set_price("ETH", price)
        poller = ChainlinkPoller(system.chain.w3, feeds, interval_s=0, max_polls=1)
        report = asyncio.run(engine.once(poller.__aiter__()))
        assert [o.state for o in report.outcomes] == [State.CONFIRMED]
    return report


def test_i35__prove_mode__the_proof_lands_and_the_keeper_liquidates(
    published: Client,
    open_position: Callable[..., Any],
    keeper: str,
    engine_for: Callable[[bool], Engine],
) -> None:
    opened = open_position(size=10, collateral_usd=5_000)  # 10 ETH at 3,000
    engine = engine_for(True)
    crash(engine, published)
    assert engine.proofs is not None
    (landed,) = engine.proofs.landed
    assert landed.account.lower() == opened.trader.lower()
    # Equity 2,000 ≥ static MM 1,755; the attested MM (capped at 5 × static) and the proven
    # MM (the published model: 21 % of 27,000) both above it, the proven one the lower.
    h = published.health(opened.trader)
    assert h.maintenance_margin_wad == landed.mm_micro_usd * 10**12 > h.equity_wad
    done = Keeper(published, keeper).step()
    assert [d.account.lower() for d in done] == [opened.trader.lower()]


def test_i35__without_prove_mode__the_gate_holds_the_attestation_back(
    published: Client,
    open_position: Callable[..., Any],
    keeper: str,
    engine_for: Callable[[bool], Engine],
) -> None:
    opened = open_position(size=10, collateral_usd=5_000)
    crash(engine_for(False), published)
    h = published.health(opened.trader)
    assert h.equity_wad > h.maintenance_margin_wad  # the static MM, 1,755
    assert Keeper(published, keeper).step() == []
    market = published.d.market("ETH-PERP").id
    fn = published.ch.functions.liquidate(opened.trader, market, 2**255)
    assert_revert(_revert(published, fn, keeper), "AccountHealthy", account=opened.trader)


def test_prove_mode__without_a_registry__refuses_to_start(system: Client, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no proof registry"):
        Engine(
            system.chain,
            system.d,
            signers=[LocalSigner(k) for k in DEV_KEYS],
            submitter_key=dev_submitter_key(),
            outbox_path=tmp_path / "outbox.sqlite",
            prover_key=dev_prover_key(),
        )


def test_cli_engine_prove__no_registry__one_line_error__then_runs_once_the_registry_exists(
    tmp_path: Path,
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "offchain.cli", *common, *args],
            capture_output=True,
            text=True,
            timeout=300,
        )

    with Anvil(accounts=12) as node:
        common = ("--rpc-url", node.url, "--deployments-dir", str(tmp_path))
        assert run("deploy").returncode == 0
        engine = ("engine", "--once", "--dev-keys", "--prove", "--outbox", str(tmp_path / "o.db"))
        refused = run(*engine)
        assert refused.returncode == 1
        assert "no proof registry" in refused.stdout
        assert "marginsync prove" in refused.stdout
        assert "Traceback" not in refused.stdout + refused.stderr
        # `prove` deploys the registry and turns the gate on; the engine then starts and runs.
        owner = json.loads((tmp_path / "31337.json").read_text())["owner"]
        assert run("prove", owner).returncode == 0
        ran = run(*engine)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert "engine: done" in ran.stdout
