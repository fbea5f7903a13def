"""Engine metrics (Prometheus) and structured key=value logs.

Each engine owns its registry, so several engines (tests, the benchmark) never share counters.
`serve(port)` exposes it over HTTP on loopback by default; scrape `/metrics`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from offchain.sync.delivery import Outcome

log = logging.getLogger("marginsync.engine")

# Tick-to-chain latency: Anvil automine lands in tens of milliseconds, a real chain in seconds.
_LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0)
_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)
_GAS_BUCKETS = (5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tick_to_chain_s = Histogram(
            "marginsync_tick_to_chain_seconds",
            "From a price tick entering the engine to the receipt of the batch it caused",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "marginsync_batch_size",
            "Entries per submitted batch",
            buckets=_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_gas = Histogram(
            "marginsync_batch_gas",
            "Gas used per confirmed batch",
            buckets=_GAS_BUCKETS,
            registry=r,
        )
        self.rejected_ticks = Counter(
            "marginsync_rejected_ticks",
            "Ticks dropped or prices refused by the sanitiser",
            ["reason"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "marginsync_outbox_depth", "Batches persisted but not yet finished", registry=r
        )
        self.attestations = Counter(
            "marginsync_attestations",
            "Attestation entries by on-chain outcome",
            ["outcome"],
            registry=r,
        )
        self.batches = Counter(
            "marginsync_batches", "Batches by final state", ["state"], registry=r
        )
        self.attesting = Gauge(
            "marginsync_attesting",
            "1 while the engine attests, 0 while it has stopped (fail closed)",
            registry=r,
        )
        self.halts = Counter(
            "marginsync_halts", "Times attesting stopped, by cause", ["cause"], registry=r
        )
        self.clock_skew_s = Gauge(
            "marginsync_clock_skew_seconds", "Engine clock minus chain time", registry=r
        )
        self.pass_s = Histogram(
            "marginsync_pass_seconds",
            "One risk + policy pass over all accounts",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.accounts = Gauge("marginsync_accounts", "Accounts mirrored", registry=r)
        self.proof_lag_s = Histogram(
            "marginsync_proof_lag_seconds",
            "Prove mode: from the pass that asked for a proof to its receipt",
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def batch_done(self, o: Outcome, tick_at: float | None, queue_depth: int) -> None:
        """Counts and logs one batch's outcome; `tick_at` starts its tick-to-chain latency."""
        self.batches.labels(str(o.state)).inc()
        if o.state == "confirmed":
            self.batch_gas.observe(o.gas_used)
            self.batch_size.observe(o.applied + o.skipped)
            self.attestations.labels("applied").inc(o.applied)
            self.attestations.labels("skipped").inc(o.skipped)
            if tick_at is not None:
                self.tick_to_chain_s.observe(max(o.done_at - tick_at, 0.0))
        elif o.state == "skipped":
            self.attestations.labels("already_applied").inc()
        self.queue_depth.set(queue_depth)
        event(
            "batch_done",
            level=20 if o.state in ("confirmed", "skipped") else 30,
            sequence=o.sequence,
            state=str(o.state),
            applied=o.applied,
            skipped=o.skipped,
            gas=o.gas_used,
            tx=o.tx_hash or "-",
            detail=o.detail or "-",
            latency_ms=(o.done_at - tick_at) * 1e3 if tick_at is not None else "-",
        )


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: `name key=value ...` (values with spaces are quoted)."""
    if not log.isEnabledFor(level):
        return
    parts = [name]
    for k, v in fields.items():
        text = f"{v:.6g}" if isinstance(v, float) else str(v)
        parts.append(f'{k}="{text}"' if (" " in text or not text) else f"{k}={text}")
    log.log(level, " ".join(parts))
