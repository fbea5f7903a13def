"""Status lines at a steady cadence, so a quiet service still shows it is alive.

The engine, the keeper, the backstop and the link service speak when something happens; between
events a heartbeat thread prints what they hold (accounts mirrored, attested, certified or
liquidated so far, the last block, lag) every few seconds. It reads what the services publish
(the engine's metrics registry, the keeper's, the backstop's and the link's round callbacks, the
keeper's mirror, the link engine's certificate lags) and never changes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from offchain.backstop import BackstopReport
from offchain.chain.mirror import AccountMirror

if TYPE_CHECKING:  # the link engine brings py-ecc; the CLI imports this module at start
    from offchain.link.engine import LinkEngine, StepReport


class Heartbeat:
    """Calls `emit(line())` every `every_s` seconds on a daemon thread while in its `with`."""

    def __init__(self, every_s: float, line: Callable[[], str], emit: Callable[[str], None]):
        self.every_s = every_s
        self._line = line
        self._emit = emit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                text = self._line()
            except Exception as exc:  # a status line must never take the service down
                text = f"status unavailable ({type(exc).__name__})"
            self._emit(text)

    def __enter__(self) -> Heartbeat:
        if self.every_s > 0:
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()


class EngineStatus:
    """The engine's status line from its Prometheus registry: rates over the last interval."""

    def __init__(self, registry: CollectorRegistry, head: Callable[[], int]) -> None:
        self.registry = registry
        self.head = head
        self._last_lag = (0.0, 0.0)

    def _value(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def __call__(self) -> str:
        lag_sum = self._value("marginsync_tick_to_chain_seconds_sum")
        lag_count = self._value("marginsync_tick_to_chain_seconds_count")
        prev_sum, prev_count = self._last_lag
        self._last_lag = (lag_sum, lag_count)
        new = lag_count - prev_count
        lag = f"tick-to-chain {(lag_sum - prev_sum) / new:.2f} s" if new else "no new batches"
        attesting = "attesting" if self._value("marginsync_attesting") else "NOT attesting"
        return (
            f"block {self.head()}, {self._value('marginsync_accounts'):.0f} accounts mirrored, "
            f"{self._value('marginsync_attestations_total', outcome='applied'):.0f} entries "
            f"attested in {self._value('marginsync_batches_total', state='confirmed'):.0f} "
            f"batches, {attesting}, {lag}, outbox {self._value('marginsync_outbox_depth'):.0f}"
        )


class KeeperStatus:
    """The keeper's status line: fed by its round callback, read by the heartbeat."""

    def __init__(self, mirror: AccountMirror, head: Callable[[], int]) -> None:
        self.mirror = mirror
        self.head = head
        self.rounds = 0
        self.liquidated = 0
        self.last_round_at = time.monotonic()

    def on_round(self, done: list[Any]) -> None:
        self.rounds += 1
        self.liquidated += len(done)
        self.last_round_at = time.monotonic()

    def __call__(self) -> str:
        accounts = list(self.mirror.accounts.values())
        open_ = sum(1 for a in accounts if a.has_positions)
        return (
            f"block {self.head()}, {len(accounts)} accounts mirrored ({open_} with positions), "
            f"{self.liquidated} liquidated in {self.rounds} rounds, last round "
            f"{time.monotonic() - self.last_round_at:.0f} s ago"
        )


class BackstopStatus:
    """The backstop's status line: fed by its round callback, read by the heartbeat."""

    def __init__(self, head: Callable[[], int]) -> None:
        self.head = head
        self.rounds = 0
        self.taken = 0
        self.booked_wad = 0
        self.last_round_at = time.monotonic()

    def on_round(self, report: BackstopReport) -> None:
        self.rounds += 1
        self.taken += len(report.taken)
        self.booked_wad += report.booked_wad
        self.last_round_at = time.monotonic()

    def __call__(self) -> str:
        return (
            f"block {self.head()}, {self.taken} take(s) of the fund's offer in {self.rounds} "
            f"rounds, ${self.booked_wad / 1e18:,.2f} of deficit booked, last round "
            f"{time.monotonic() - self.last_round_at:.0f} s ago"
        )


class LinkStatus:
    """The service's status line: fed by each step's report, read by the heartbeat."""

    def __init__(self, engine: LinkEngine, head: Callable[[], str]) -> None:
        self.engine = engine
        self.head = head
        self.steps = 0
        self.certified = 0
        self.applied = 0
        self.orders = 0

    def on_step(self, report: StepReport) -> None:
        self.steps += 1
        self.certified += report.certified
        self.applied += report.applied
        self.orders += report.orders

    def __call__(self) -> str:
        return (
            f"{self.head()}, {self.applied} certificates applied on every venue "
            f"({self.certified} certified) and {self.orders} orders in {self.steps} steps, "
            f"{lag_line(self.engine)}"
        )


def lag_line(engine: LinkEngine) -> str:
    """Certificate lag: last venue event seen → certificate applied on every venue."""
    if not engine.lags:
        return "no certificate lag yet"
    lag = engine.lag_ms()
    return f"certificate lag p50 {lag['p50'] / 1000:.2f} s, p99 {lag['p99'] / 1000:.2f} s"
