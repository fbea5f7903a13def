"""The services' status lines: a steady cadence, and a failing read never stops the service."""

from __future__ import annotations

import threading

from offchain.backstop import BackstopReport, Take
from offchain.chain.client import Client
from offchain.chain.mirror import AccountMirror
from offchain.ops.heartbeat import BackstopStatus, EngineStatus, Heartbeat, KeeperStatus
from offchain.sync.metrics import EngineMetrics


def beats(line: object, count: int = 2) -> list[str]:
    """The first `count` lines a fast heartbeat emits."""
    lines: list[str] = []
    enough = threading.Event()

    def emit(text: str) -> None:
        lines.append(text)
        if len(lines) >= count:
            enough.set()

    with Heartbeat(0.01, line, emit):  # type: ignore[arg-type]
        assert enough.wait(30)
    return lines[:count]


def test_heartbeat__a_failing_status_read__is_reported_and_the_beat_goes_on() -> None:
    def broken() -> str:
        raise ConnectionError("node gone")

    assert beats(broken) == ["status unavailable (ConnectionError)"] * 2


def test_engine_status__reads_the_engines_metrics() -> None:
    metrics = EngineMetrics()
    metrics.accounts.set(53)
    metrics.attesting.set(1)
    metrics.attestations.labels("applied").inc(52)
    metrics.batches.labels("confirmed").inc()
    metrics.tick_to_chain_s.observe(0.5)
    status = EngineStatus(metrics.registry, lambda: 201)
    assert status() == (
        "block 201, 53 accounts mirrored, 52 entries attested in 1 batches, attesting, "
        "tick-to-chain 0.50 s, outbox 0"
    )
    assert "no new batches" in status()  # the lag is over the last interval only


def test_keeper_status__counts_rounds_and_liquidations(system: Client) -> None:
    mirror = AccountMirror(system.chain, system.d.clearinghouse, system.d.insurance_fund, 0)
    mirror.sync()
    status = KeeperStatus(mirror, lambda: 7)
    status.on_round([])
    status.on_round(["a", "b"])
    line = beats(status, 1)[0]
    assert line.startswith(
        "block 7, 1 accounts mirrored (0 with positions), 2 liquidated in 2 rounds"
    )


def test_backstop_status__counts_rounds_takes_and_booked_deficit() -> None:
    status = BackstopStatus(lambda: 9)
    status.on_round(BackstopReport())
    take = Take(
        market_id=0,
        size_delta_wad=10**18,
        price_e18=2_970 * 10**18,
        oracle_price_e18=3_000 * 10**18,
    )
    status.on_round(BackstopReport(taken=[take], booked_wad=1_500 * 10**18))
    line = beats(status, 1)[0]
    assert line.startswith(
        "block 9, 1 take(s) of the fund's offer in 2 rounds, $1,500.00 of deficit booked"
    )
