"""The lab's Gen 3 is the product's engine: for the same chain state and prices it posts exactly
the batches `marginsync engine --source chain --dev-keys --risk-config FILE` would post."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from offchain.attest import Batch
from offchain.chain.client import Client
from offchain.feeds import Tick
from offchain.lab import Gen3Engine, risk_config
from offchain.lab.scenarios import lab_path
from offchain.risk import RiskConfig
from offchain.sync import Engine, EngineConfig, State, build_engine, build_source

START_USD = {"ETH": 3_000.0, "BTC": 60_000.0, "SOL": 150.0}


@pytest.fixture
def lab_risk(system: Client) -> RiskConfig:
    lp = lab_path("crash", seed=4, steps=10, start_usd=START_USD)
    return risk_config([a.symbol for a in system.d.assets], lp.interval_s, lp.warmup)


def _freeze_clock(system: Client) -> int:
    """One instant for every engine of the test: the next block's timestamp, pinned (pending
    block, pre-flight and the block that includes the lab's batches all carry it)."""
    w3 = system.chain.w3
    now = int(w3.eth.get_block("latest")["timestamp"]) + 1
    w3.provider.make_request("evm_setNextBlockTimestamp", [now])  # type: ignore[arg-type]
    return now


@pytest.fixture
def cli_engine(
    system: Client, lab_risk: RiskConfig, tmp_path: Path
) -> Iterator[Callable[[int, float], Engine]]:
    """`marginsync engine --source chain --dev-keys --risk-config FILE` as the CLI builds it
    (`build_engine` with the default `EngineConfig`) with its clock at `now`; `scale`
    multiplies every price it polls (1.0: the chain's prices)."""
    risk_path = tmp_path / "risk.json"
    risk_path.write_text(lab_risk.model_dump_json())
    made: list[Engine] = []

    def _make(now: int, scale: float) -> Engine:
        engine = build_engine(
            system.chain,
            system.d,
            source="chain",
            dev_keys=True,
            outbox_path=tmp_path / f"cli-{len(made)}.sqlite",
            config=EngineConfig(),
            submitter_key=None,
            risk_config_path=risk_path,
            clock=lambda: float(now),
        )
        made.append(engine)
        engine.start()
        for tick in asyncio.run(_poll(system)):
            engine.ingest(Tick(tick.symbol, tick.price_usd * scale, tick.ts_s, tick.source))
        return engine

    yield _make
    for engine in made:
        engine.close()


async def _poll(system: Client) -> list[Tick]:
    source = build_source("chain", system.chain, system.d, interval_s=0, ws_url=None, once=True)
    return [tick async for tick in source]


def _would_post(engine: Engine) -> list[tuple[Batch, bytes | None]]:
    """The signed batches one pass makes (persisted and signed, never sent)."""
    return [(row.batch, row.signatures) for row in engine.run_pass().rows]


def test_lab_gen3__same_chain_state__posts_exactly_what_marginsync_engine_would(
    system: Client,
    open_position: Callable[..., object],
    others: list[str],
    lab_risk: RiskConfig,
    cli_engine: Callable[[int, float], Engine],
) -> None:
    open_position(size=10, collateral_usd=5_000)  # long ETH
    open_position(size=-0.5, market="BTC-PERP", collateral_usd=8_000, who=others[0])
    open_position(size=400, market="SOL-PERP", collateral_usd=20_000, who=others[1])
    now = _freeze_clock(system)
    expected = _would_post(cli_engine(now, 1.0))
    assert [len(batch.entries) for batch, _ in expected] == [4]  # three traders, one maker
    # The comparison has teeth: the same engine polling prices 1% off posts other entries.
    skewed = _would_post(cli_engine(now, 1.01))
    assert [b.entries for b, _ in skewed] != [b.entries for b, _ in expected]

    lab = Gen3Engine(system.chain, system.d, lab_risk, clock=lambda: now, mine=lambda: None)
    try:
        lab.poll()
        stats = lab.step(since=time.perf_counter())
        posted = [lab.engine.outbox.get(batch.sequence) for batch, _ in expected]
    finally:
        lab.close()
    assert [(row.batch, row.signatures) for row in posted if row is not None] == expected
    assert all(row is not None and row.state == State.CONFIRMED for row in posted)
    assert (stats.batches, stats.accounts_updated) == (len(expected), 4)
