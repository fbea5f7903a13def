"""Crash safety of the engine (D11) and idempotent delivery (D12), with the real engine process.

The engine honours `MARGINSYNC_ENGINE_CRASH_AT=persisted|signed|sent` (a test hook) by SIGKILLing
itself right after that step; the test restarts it and checks that the same payload (same
EIP-712 digest) reaches the chain exactly once, and that no sequence ever carries two payloads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from offchain.attest import Batch, Entry, applied_entries, digest
from offchain.chain import Event
from offchain.chain.client import Client
from offchain.chain.deploy import dev_engine_keys
from offchain.errors import ContractRevert
from offchain.feeds import Tick, replay
from offchain.settings import PROJECT_ROOT, Settings
from offchain.sync import (
    CRASH_ENV,
    Engine,
    EngineConfig,
    LocalSigner,
    Outbox,
    Outcome,
    State,
    dev_submitter_key,
    source_sanitizer_config,
)
from offchain.sync.delivery import encode_submit

DEV_KEYS = [bytes.fromhex(k[2:]) for k in dev_engine_keys(3)]


def engine_cli(
    settings: Settings, outbox: Path, crash_at: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARGINSYNC_ENGINE")}
    if crash_at:
        env[CRASH_ENV] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "offchain.cli", "-v", "--rpc-url", settings.rpc_url,
         "--deployments-dir", str(settings.deployments_dir),
         "engine", "--once", "--source", "chain", "--dev-keys", "--outbox", str(outbox)],
        capture_output=True, text=True, timeout=120, env=env, cwd=PROJECT_ROOT,
    )  # fmt: skip


def verifier_events(system: Client) -> list[Event]:
    d = system.d
    assert d.attestation_verifier is not None
    head = system.chain.w3.eth.block_number
    return system.chain.get_events([d.attestation_verifier], d.block, head)


def open_outbox(system: Client, path: Path) -> Outbox:
    assert system.d.attestation_verifier is not None
    return Outbox(path, chain_id=system.chain.chain_id, verifier=system.d.attestation_verifier)


@pytest.mark.parametrize("step", ["persisted", "signed", "sent"])
def test_engine_killed_after_each_step__restart_sends_the_same_payload_once(  # D11
    system: Client, open_position, settings: Settings, tmp_path: Path, step: str
) -> None:
    opened = open_position(size=10)
    path = tmp_path / "outbox.sqlite"

    crashed = engine_cli(settings, path, crash_at=step)
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
    outbox = open_outbox(system, path)
    (before,) = outbox.rows()
    assert before.state == step
    sent_tx = before.tx_hash
    applied_before = [e for e in verifier_events(system) if e.name == "BatchApplied"]
    # Anvil mines at once: only a crash after sending has the batch on-chain already.
    assert len(applied_before) == (1 if step == "sent" else 0)

    restarted = engine_cli(settings, path)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "recovered 1 batch" in restarted.stdout

    rows = outbox.rows()
    assert [r.sequence for r in rows] == [before.sequence]  # no second payload was made
    (after,) = rows
    assert after.state == State.CONFIRMED
    assert after.digest == before.digest
    assert after.batch == before.batch
    if sent_tx is not None:
        assert after.tx_hash == sent_tx  # the same raw transaction, not a new one
    events = verifier_events(system)
    applied = [e for e in events if e.name == "BatchApplied"]
    assert [(e.args["sequence"], e.args["digest"]) for e in applied] == [
        (before.sequence, before.digest)
    ]
    attested = [
        (e.account, a.args["sequence"])
        for a in applied
        for e in applied_entries(a.args["entries"], a.args["appliedBits"])
    ]
    assert len(attested) == len(set(attested)) == len(before.batch.entries)
    assert (opened.trader, before.sequence) in attested
    outbox.close()


def test_one_attestation_delivered_three_times__exactly_one_on_chain_effect(  # D12
    system: Client, open_position, keeper: str, tmp_path: Path
) -> None:
    opened = open_position(size=10)
    engine = Engine(
        system.chain,
        system.d,
        signers=[LocalSigner(k) for k in DEV_KEYS],
        submitter_key=dev_submitter_key(),
        outbox_path=tmp_path / "outbox.sqlite",
        config=EngineConfig(threshold_bps=0.0),
        sanitizer_config=source_sanitizer_config("sim"),
    )
    now = time.time()
    feed = [
        Tick(sym, price, now + 0.001 * k, src)
        for sym, price in (("ETH", 3_000.0), ("BTC", 60_000.0), ("SOL", 150.0))
        for k, src in enumerate("abc")
    ]
    report = asyncio.run(engine.once(replay(feed)))
    (first,) = report.outcomes
    assert first.state == State.CONFIRMED
    row = engine.outbox.get(first.sequence)
    assert row is not None
    assert row.signatures is not None
    entry_before = engine.verifier.functions.appliedEntry(opened.trader).call()

    block = system.chain.w3.eth.block_number
    # Delivery 2: the same raw transaction again (a retry after a dropped response, D05): the
    # node refuses it, its nonce is spent.
    (tx,) = engine.delivery.sender.journal.rows(f"batch:{first.sequence}")
    with pytest.raises(Exception, match="nonce"):
        system.chain.w3.eth.send_raw_transaction(tx.raw_txs[-1])
    # Delivery 3: the engine's delivery again: pre-flight sees NothingApplied, sends nothing.
    again = engine.delivery.send(row)
    assert isinstance(again, Outcome)
    assert again.state == State.SKIPPED
    # Delivery 4: anyone else relaying the same signed batch is refused before sending.
    with pytest.raises(ContractRevert, match="NothingApplied"):
        system.chain.send(
            engine.verifier.functions.submit(row.batch.as_tuple(), row.signatures),
            keeper,
            "relay the same attestation",
        )
    assert system.chain.w3.eth.block_number == block
    assert engine.verifier.functions.appliedEntry(opened.trader).call() == entry_before
    events = verifier_events(system)
    assert [e.args["digest"] for e in events if e.name == "BatchApplied"] == [
        digest(row.batch, engine.domain)
    ]
    attested = [
        e
        for a in events
        if a.name == "BatchApplied"
        for e in applied_entries(a.args["entries"], a.args["appliedBits"])
    ]
    assert len(attested) == len(row.batch.entries)
    engine.close()


def test_encode_submit__hand_packed_calldata__equals_web3_encoding(system: Client) -> None:
    assert system.d.attestation_verifier is not None
    verifier = system.chain.contract("AttestationVerifier", system.d.attestation_verifier)
    batch = Batch(
        sequence=77,
        issued_at=1_700_000_000,
        price_asset_mask=0b101,
        prices_e18=(3_000 * 10**18 + 1, 150 * 10**18),
        entries=tuple(Entry("0x" + os.urandom(20).hex(), i, 10**9 + i, 10**8) for i in range(4)),
    )
    signatures = os.urandom(130)
    selector = bytes.fromhex(verifier.encode_abi("submit", args=[batch.as_tuple(), b""])[2:10])
    expected = verifier.encode_abi("submit", args=[batch.as_tuple(), signatures])
    assert "0x" + encode_submit(selector, batch, signatures).hex() == expected
