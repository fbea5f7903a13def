"""Prices in: ticks through the sanitiser, every asset's price at one instant, and the sources
`marginsync engine --source` reads (chain, sim, ws).

An accepted price change marks the engine dirty (`changed_since`: when the oldest unprocessed
change entered, the start of the tick-to-chain latency); `prices()` re-checks every asset for
staleness at the instant a pass starts. Nothing is attested for an account unless every price it
depends on is `Accepted` now (D13, C08–C10, C14).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from offchain.chain import Chain
from offchain.errors import ConfigError
from offchain.feeds import Accepted, Dropped, Refused, Sanitizer, SanitizerConfig, Tick
from offchain.models import Deployment
from offchain.sync.metrics import EngineMetrics


@dataclass(frozen=True)
class Prices:
    """The sanitiser's view at one instant: accepted prices and refusals, per asset symbol."""

    accepted: dict[str, float]
    refused: dict[str, str]
    tick_at_s: float | None  # wall time the oldest unprocessed price change entered the engine


class PriceDesk:
    """The sanitiser and what it accepted last, per asset symbol."""

    def __init__(
        self,
        symbols: Sequence[str],
        config: SanitizerConfig,
        clock: Callable[[], float],
        metrics: EngineMetrics,
    ) -> None:
        self.symbols = list(symbols)
        self.sanitizer = Sanitizer(config)
        self.clock = clock
        self.metrics = metrics
        self.last_accepted: dict[str, float] = {}
        self.changed_since: float | None = None

    def ingest(self, tick: Tick, entered_at_s: float | None = None) -> None:
        """One tick through the sanitiser; an accepted price change marks the engine dirty."""
        entered = time.time() if entered_at_s is None else entered_at_s
        verdict = self.sanitizer.update(tick, now_s=self.clock())
        if isinstance(verdict, Dropped | Refused):
            self.metrics.rejected_ticks.labels(str(verdict.reason)).inc()
            return
        if self.last_accepted.get(verdict.symbol) != verdict.price_usd:
            self.last_accepted[verdict.symbol] = verdict.price_usd
            if self.changed_since is None:
                self.changed_since = entered

    def prices(self) -> Prices:
        """Every asset's price now (re-checked for staleness), and what is refused."""
        now = self.clock()
        accepted: dict[str, float] = {}
        refused: dict[str, str] = {}
        for sym in self.symbols:
            status = self.sanitizer.current(sym, now)
            if isinstance(status, Accepted):
                accepted[sym] = status.price_usd
            else:
                refused[sym] = f"{status.reason}: {status.detail}"
        tick_at, self.changed_since = self.changed_since, None
        return Prices(accepted, refused, tick_at)

    def all_accepted(self) -> bool:
        now = self.clock()
        return all(isinstance(self.sanitizer.current(s, now), Accepted) for s in self.symbols)

    async def ingest_from(
        self, source: AsyncIterator[Tick], *, stop_when_accepted: bool, timeout_s: float
    ) -> int:
        """Consume `source` until it ends or `timeout_s` passes; with `stop_when_accepted`
        (endless sources such as a websocket) stop as soon as every asset has a price."""
        count = 0
        deadline = time.monotonic() + timeout_s
        iterator = source.__aiter__()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                tick = await asyncio.wait_for(iterator.__anext__(), remaining)
            except (StopAsyncIteration, TimeoutError):
                break
            self.ingest(tick)
            count += 1
            if stop_when_accepted and self.all_accepted():
                break
        return count


def source_sanitizer_config(source: str, heartbeat_s: float = 3_600.0) -> SanitizerConfig:
    """Sanitiser thresholds per source kind.

    Independent feeds (sim, ws) need 3 agreeing sources and fresh prints. The on-chain oracle is
    one aggregated source that the contract itself trusts, and it prints only on deviation or
    heartbeat: one source suffices, its age limit is the heartbeat, and a jump is accepted at
    once, since the verifier binds every attestation to that same oracle price (band check).
    """
    if source == "chain":
        return SanitizerConfig(min_sources=1, max_age_s=heartbeat_s, jump_confirmations=1)
    return SanitizerConfig()


SourceKind = Literal["sim", "ws", "chain"]


async def _paced(ticks: Iterable[Tick], clock: Callable[[], float]) -> AsyncIterator[Tick]:
    for tick in ticks:
        delay = tick.ts_s - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        yield tick


async def sim_source(
    start_usd: dict[str, float],
    *,
    interval_s: float,
    steps: int | None,
    seed: int = 0,
    sources: int = 5,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Tick]:
    """A seeded GBM market printed by `sources` slightly noisy independent sources, one step
    every `interval_s` in real time (`steps` None: forever, generated a chunk at a time)."""
    from offchain.feeds import Fault, SourceSpec, gbm, scenario_ticks

    specs = [SourceSpec(name=f"sim{j}", fault=Fault.NOISY, noise_bps=2.0) for j in range(sources)]
    prices = dict(start_usd)
    done, chunk = 0, 0
    t0 = clock()
    while steps is None or done < steps:
        n = 256 if steps is None else min(256, steps - done)
        scenario = gbm(
            prices,
            max(n - 1, 1),
            interval_s=interval_s,
            start_ts_s=t0 + done * interval_s,
            seed=seed + chunk,
        )
        ticks = [
            t
            for t in scenario_ticks(scenario, specs, seed=seed + chunk)
            if t.ts_s < t0 + (done + n) * interval_s
        ]
        async for tick in _paced(ticks, clock):
            yield tick
        prices = {s: float(scenario.prices_usd[s][-1]) for s in scenario.symbols}
        done += n
        chunk += 1


def build_source(
    kind: SourceKind,
    chain: Chain,
    deployment: Deployment,
    *,
    interval_s: float,
    ws_url: str | None,
    once: bool,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Tick]:
    """The CLI's `--source`: `chain` polls the deployed (mock) Chainlink aggregators, `sim` a
    seeded simulator starting at the oracle prices, `ws` a websocket of JSON ticks."""
    from offchain.feeds import ChainlinkPoller, WebsocketSource

    if kind == "chain":
        feeds = {a.symbol: a.feed for a in deployment.assets}
        poller: Any = ChainlinkPoller(
            chain.w3, feeds, interval_s=interval_s, max_polls=1 if once else None
        )
        return poller.__aiter__()  # type: ignore[no-any-return]
    if kind == "ws":
        if not ws_url:
            raise ConfigError("--source ws needs --ws-url", "give ws://host:port of a tick feed")
        return WebsocketSource(ws_url).__aiter__()
    router = chain.contract("OracleRouter", deployment.oracle_router)
    start = {
        a.symbol: int(router.functions.priceE18(a.id).call()) / 1e18 for a in deployment.assets
    }
    return sim_source(start, interval_s=interval_s, steps=1 if once else None, clock=clock)
