"""Reorganisations (issue 8.3): Anvil's `anvil_reorg` takes the last blocks away and mines empty
ones in their place. A keeper's liquidation or the engine's batch in those blocks must land again
(or be superseded), exactly once; the event mirrors must rewind to the chain they follow; the
sender's journal and nonces must follow the chain, not what it once saw.

Without the defences the keeper's mirror goes on believing the account flat (its cursor was a
block number), its journal calls a vanished transaction mined and its nonce runs ahead of the
chain's: the account is never liquidated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_engine import DEV_KEYS, ticks
from test_keeper_hardening import liquidate_events, make_keeper, mine, rpc, tx_count
from test_mirror import _assert_mirror_equals_chain

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles, deploy_system
from offchain.chain.journal import TxState
from offchain.feeds import replay
from offchain.keeper import Liquidation
from offchain.models import Deployment, SystemSpec
from offchain.settings import Settings
from offchain.sync import (
    Engine,
    EngineConfig,
    LocalSigner,
    State,
    dev_submitter_key,
    source_sanitizer_config,
)


# A chain of their own: Anvil keeps the clock of replaced blocks past `evm_revert`, so a reorg on
# the shared chain would leave the tests after it with a chain clock minutes behind.
@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    with Anvil(accounts=40) as node:
        yield node


@pytest.fixture(scope="module")
def settings(anvil: Anvil, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(rpc_url=anvil.url, deployments_dir=tmp_path_factory.mktemp("deployments"))


@pytest.fixture(scope="module")
def chain(settings: Settings) -> Chain:
    return Chain.connect(settings)


@pytest.fixture(scope="module")
def deployment(chain: Chain) -> Deployment:
    return deploy_system(chain, SystemSpec(), Roles.from_accounts(chain.accounts))


@pytest.fixture(scope="module")
def session_client(chain: Chain, deployment: Deployment) -> Client:
    return Client(chain, deployment)


def reorg(system: Client, depth: int) -> None:
    """`depth` blocks taken away (the newest of them holds what the test just sent), then one
    block on top at the wall clock's time, as a live chain would go on (Anvil re-mines the
    replaced blocks at earlier timestamps)."""
    mine(system, depth - 1)
    rpc(system, "anvil_reorg", depth, [])
    # Never behind the chain: blocks mined in quick succession run ahead of the wall clock.
    latest = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    rpc(system, "evm_setNextBlockTimestamp", max(int(time.time()), latest) + 1)
    mine(system)


@pytest.mark.parametrize("depth", [1, 2])
def test_a_reorg_drops_a_keepers_liquidation__it_lands_again_once_and_the_mirror_follows(
    system: Client, open_position: Callable[..., Any], others: list[str], depth: int
) -> None:
    opened = open_position(size=30, collateral_usd=9_000, who=others[0])
    system.set_price("ETH", 2_750)  # deep (equity < MM/2): one liquidation closes it all
    start_block = system.chain.w3.eth.block_number
    k = make_keeper(system)
    start_nonce = tx_count(system, k.address)
    first: list[Liquidation] = []

    def reorg_after_the_first_round(n: int, done: list[Liquidation]) -> None:
        if n == 0:
            first.extend(done)
            k.mirror.sync()  # the mirror has seen the liquidation's block
            assert k.mirror.accounts[opened.trader].positions[0] == 0
            reorg(system, depth)
            assert liquidate_events(system, start_block) == []  # gone from the chain
            assert system.position(opened.trader, "ETH-PERP") == wad(30)
            k.mirror.sync()  # and gone from the mirror, which rewound
            assert k.mirror.accounts[opened.trader].positions[0] == wad(30)

    total = k.run(poll_interval_s=0.01, rounds=3, on_round=reorg_after_the_first_round)

    (liquidated,) = first
    (event,) = liquidate_events(system, start_block)
    assert event.tx_hash == liquidated.tx_hash  # the same signed transaction, landed again
    assert [(d.account, d.tx_hash) for d in total] == [(opened.trader, liquidated.tx_hash)]
    assert system.position(opened.trader, "ETH-PERP") == 0
    assert [r.state for r in k.sender.journal.rows()] == [TxState.MINED]
    assert tx_count(system, k.address) == start_nonce + 1
    assert not k.last_round.congested
    _assert_mirror_equals_chain(system, k.mirror)
    assert k.mirror.rewinds >= 1


@pytest.mark.parametrize("depth", [1, 2])
def test_a_reorg_drops_the_engines_batch__it_is_resent_or_superseded_and_the_mirror_follows(
    system: Client, open_position: Callable[..., Any], tmp_path: Path, depth: int
) -> None:
    opened = open_position(size=10)
    engine = Engine(
        system.chain,
        system.d,
        signers=[LocalSigner(k) for k in DEV_KEYS],
        submitter_key=dev_submitter_key(),
        outbox_path=tmp_path / "outbox.sqlite",
        config=EngineConfig(threshold_bps=0.0, min_change_usd=0.0),
        sanitizer_config=source_sanitizer_config("sim"),
    )
    verifier = engine.verifier
    report = asyncio.run(engine.once(replay(ticks())))
    (first,) = report.outcomes
    assert first.state == State.CONFIRMED
    assert verifier.functions.appliedEntry(opened.trader).call()[0] == first.sequence
    engine.mirror.sync()  # the mirror has seen the batch's block
    assert engine.mirror.attestations.entries[opened.trader].sequence == first.sequence

    reorg(system, depth)
    assert verifier.functions.appliedEntry(opened.trader).call()[0] == 0  # gone from the chain
    engine.mirror.sync()  # and gone from the mirror, which rewound
    assert opened.trader not in engine.mirror.attestations.entries

    for tick in ticks(ts=time.time()):
        engine.ingest(tick)
    engine.step()

    applied = verifier.functions.appliedEntry(opened.trader).call()
    assert applied[0] >= first.sequence  # the same batch again, or a newer one over it
    engine.mirror.sync()
    mirrored = engine.mirror.attestations.entries[opened.trader]
    assert (mirrored.sequence, mirrored.im_micro_usd, mirrored.mm_micro_usd) == (
        applied[0],
        applied[2],
        applied[3],
    )
    _assert_mirror_equals_chain(system, engine.mirror)
    assert engine.mirror.rewinds >= 1
    # Every batch ended: the dropped one confirmed again or superseded, none left in flight.
    assert engine.outbox.open_rows() == []
    journal = engine.delivery.sender.journal.rows()
    assert {r.state for r in journal} <= {TxState.MINED, TxState.REVERTED}
    assert tx_count(system, engine.delivery.sender.address) == len(journal)
    engine.close()


def test_a_keeper_restarted_after_a_reorg__re_sends_its_journaled_liquidation_not_a_second_one(
    system: Client, open_position: Callable[..., Any], others: list[str], tmp_path: Path
) -> None:
    opened = open_position(size=30, collateral_usd=9_000, who=others[0])
    system.set_price("ETH", 2_750)
    start_block = system.chain.w3.eth.block_number
    journal = tmp_path / "journal.sqlite"
    first = make_keeper(system, journal=journal)
    (liquidated,) = first.step()
    first.sender.journal.close()
    del first  # the keeper stops; the chain reorganises while it is down
    reorg(system, 2)
    assert liquidate_events(system, start_block) == []

    again = make_keeper(system, journal=journal)
    again.step()
    again.step()

    (event,) = liquidate_events(system, start_block)
    assert event.tx_hash == liquidated.tx_hash  # its journaled bytes, not a second liquidation
    (row,) = again.sender.journal.rows()
    assert (row.state, row.mined_hash) == (TxState.MINED, liquidated.tx_hash)
    assert system.position(opened.trader, "ETH-PERP") == 0
    _assert_mirror_equals_chain(system, again.mirror)
