"""Price sources as async iterators of `Tick`, and a loopback websocket tick server for the lab.

* `simulated_source`: a scenario's ticks from one or several (possibly faulty) sources, paced
  by `interval_s` (0 = as fast as the consumer takes them).
* `csv_source` / `load_csv_ticks` / `load_csv_scenario`: recorded `ts_s,symbol,price_usd` rows.
* `WebsocketSource`: JSON ticks from a websocket; reconnects with capped exponential backoff;
  malformed messages are counted and skipped, never raised.
* `ChainlinkPoller`: reads `latestRoundData()` of Chainlink-style aggregators through a sync
  web3 object (in a worker thread) and emits a tick whenever a feed's round changes.
* `TickServer`: serves pre-encoded tick messages to websocket clients on loopback only.

Sources deliver what they receive; judging it (staleness, outliers, zero prices) is the
sanitiser's job, so every source here forwards prints as they are.
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import logging
import math
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import WebSocketException

from offchain.errors import ConfigError
from offchain.feeds.faults import SourceSpec, scenario_ticks
from offchain.feeds.scenarios import Scenario, scenario_from_rows
from offchain.feeds.ticks import Tick, encode_tick, parse_tick_message

if TYPE_CHECKING:
    from web3 import Web3

log = logging.getLogger(__name__)

CSV_HEADER = ("ts_s", "symbol", "price_usd")


# ---------------------------------------------------------------------------- replay
async def replay(ticks: Iterable[Tick], *, interval_s: float = 0.0) -> AsyncIterator[Tick]:
    """`ticks` one by one, `interval_s` apart (0: no pause, but the loop still gets a turn)."""
    if not (math.isfinite(interval_s) and interval_s >= 0):
        raise ConfigError(f"interval_s = {interval_s}", "give a pace of 0 or more seconds")
    first = True
    for tick in ticks:
        if not first:
            await asyncio.sleep(interval_s)
        first = False
        yield tick


async def simulated_source(
    scenario: Scenario,
    *,
    sources: Sequence[SourceSpec] = (SourceSpec(name="sim"),),
    interval_s: float = 0.0,
    seed: int = 0,
) -> AsyncIterator[Tick]:
    """The seeded simulator: `scenario` as printed by `sources`, in time order."""
    async for tick in replay(scenario_ticks(scenario, sources, seed=seed), interval_s=interval_s):
        yield tick


def parse_price_csv(
    lines: Iterable[str], *, source: str = "csv", origin: str = "csv"
) -> list[Tick]:
    """Ticks from CSV text with the header `ts_s,symbol,price_usd`, in file order.

    Blank lines and lines starting with `#` are skipped. A malformed row raises ConfigError
    naming `origin` and the line, since a replay file is input the user controls.
    """
    rows = csv.reader(line for line in lines if line.strip() and not line.lstrip().startswith("#"))
    header = next(rows, None)
    if header is None or tuple(h.strip() for h in header) != CSV_HEADER:
        raise ConfigError(
            f"{origin}: header is {header}, expected {','.join(CSV_HEADER)}",
            "put `ts_s,symbol,price_usd` on the first line",
        )
    out: list[Tick] = []
    for n, row in enumerate(rows, start=2):
        try:
            ts_text, symbol, price_text = (cell.strip() for cell in row)
            ts_s, price_usd = float(ts_text), float(price_text)
        except ValueError as exc:
            raise ConfigError(
                f"{origin}: data row {n} {row} is not `ts_s,symbol,price_usd`",
                "give three fields: a number, a symbol and a number",
            ) from exc
        if not (symbol and math.isfinite(ts_s) and math.isfinite(price_usd) and price_usd > 0):
            raise ConfigError(
                f"{origin}: data row {n} {row} has an empty symbol or a bad timestamp or price",
                "timestamps must be finite seconds and prices > 0",
            )
        out.append(Tick(symbol, price_usd, ts_s, source))
    return out


def load_csv_ticks(path: Path | str, *, source: str = "csv") -> list[Tick]:
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return parse_price_csv(f, source=source, origin=str(path))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check the path") from exc


def load_csv_scenario(path: Path | str) -> Scenario:
    """A recorded CSV as a `Scenario` (as-of prices on the union of its timestamps)."""
    ticks = load_csv_ticks(path)
    return scenario_from_rows(
        ((t.ts_s, t.symbol, t.price_usd) for t in ticks), name=Path(path).stem
    )


async def csv_source(
    path: Path | str, *, interval_s: float = 0.0, source: str = "csv"
) -> AsyncIterator[Tick]:
    """A recorded CSV's rows as ticks, in file order (the file is read and checked up front)."""
    async for tick in replay(load_csv_ticks(path, source=source), interval_s=interval_s):
        yield tick


# ---------------------------------------------------------------------------- websocket client
class WebsocketSource:
    """JSON ticks from `url`. Iterate with `async for`; stops after `max_reconnects` (None: never).

    Any disconnect or failed connect waits `initial_backoff_s`·2^attempt (capped at
    `max_backoff_s`, with jitter so many clients do not reconnect in step) and tries again; the
    attempt count resets once a connection delivers a message. Counters: `received`,
    `malformed`, `reconnects`.
    """

    def __init__(
        self,
        url: str,
        *,
        initial_backoff_s: float = 0.1,
        max_backoff_s: float = 10.0,
        max_reconnects: int | None = None,
        open_timeout_s: float = 5.0,
        max_message_bytes: int = 64 * 1024,
        seed: int = 0,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"websocket url {url!r}", "use a ws:// or wss:// url")
        if not (0 < initial_backoff_s <= max_backoff_s):
            raise ConfigError("backoff out of range", "need 0 < initial_backoff_s ≤ max_backoff_s")
        self.url = url
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_reconnects = max_reconnects
        self.open_timeout_s = open_timeout_s
        self.max_message_bytes = max_message_bytes
        self._jitter = random.Random(seed)
        self.received = 0
        self.malformed = 0
        self.reconnects = 0
        self.last_error: str | None = None

    def __aiter__(self) -> AsyncIterator[Tick]:
        return self._ticks()

    async def _ticks(self) -> AsyncIterator[Tick]:
        attempt = 0
        while True:
            try:
                async with connect(
                    self.url,
                    open_timeout=self.open_timeout_s,
                    max_size=self.max_message_bytes,
                    compression=None,
                ) as ws:
                    async for raw in ws:
                        attempt = 0
                        self.received += 1
                        tick = parse_tick_message(raw)
                        if tick is None:
                            self.malformed += 1
                            log.warning("skipped a malformed tick message from %s", self.url)
                            continue
                        yield tick
                self.last_error = "server closed the connection"
            except (OSError, TimeoutError, WebSocketException) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self.max_reconnects is not None and self.reconnects >= self.max_reconnects:
                return
            delay_s = min(self.max_backoff_s, self.initial_backoff_s * 2**attempt)
            delay_s *= 0.5 + 0.5 * self._jitter.random()
            log.info("reconnecting to %s in %.2f s (%s)", self.url, delay_s, self.last_error)
            await asyncio.sleep(delay_s)
            attempt += 1
            self.reconnects += 1


# ---------------------------------------------------------------------------- Chainlink poller
AGGREGATOR_V3_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "decimals",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [{"name": "", "type": "uint8"}],
    },
    {
        "type": "function",
        "name": "latestRoundData",
        "stateMutability": "view",
        "inputs": [],
        "outputs": [
            {"name": "roundId", "type": "uint80"},
            {"name": "answer", "type": "int256"},
            {"name": "startedAt", "type": "uint256"},
            {"name": "updatedAt", "type": "uint256"},
            {"name": "answeredInRound", "type": "uint80"},
        ],
    },
]


class ChainlinkPoller:
    """Polls Chainlink-style aggregators every `interval_s`; a tick per new round.

    The tick's price is `answer / 10**decimals` and its time the round's `updatedAt`, as the feed
    reports them (a zero answer is forwarded for the sanitiser to reject). A failed call is
    counted in `errors` and retried at the next poll; it never ends the iteration. Stops after
    `max_polls` rounds of polling (None: never).
    """

    def __init__(
        self,
        w3: Web3,
        feeds: Mapping[str, str],
        *,
        interval_s: float = 1.0,
        source: str = "chainlink",
        max_polls: int | None = None,
    ) -> None:
        from eth_utils import to_checksum_address

        if not feeds:
            raise ConfigError("no feeds to poll", "give {symbol: aggregator address}")
        if not (math.isfinite(interval_s) and interval_s >= 0):
            raise ConfigError(f"interval_s = {interval_s}", "poll every 0 or more seconds")
        self.interval_s = interval_s
        self.source = source
        self.max_polls = max_polls
        self._contracts: dict[str, Any] = {}
        for symbol, address in feeds.items():
            try:
                checksummed = to_checksum_address(address)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"feed address for {symbol} {address!r}", "give 0x-hex") from exc
            self._contracts[symbol] = w3.eth.contract(address=checksummed, abi=AGGREGATOR_V3_ABI)
        self._decimals: dict[str, int] = {}
        self._last_round: dict[str, int] = {}
        self.polls = 0
        self.errors = 0
        self.last_error: str | None = None

    def __aiter__(self) -> AsyncIterator[Tick]:
        return self._ticks()

    async def _ticks(self) -> AsyncIterator[Tick]:
        while self.max_polls is None or self.polls < self.max_polls:
            if self.polls:
                await asyncio.sleep(self.interval_s)
            self.polls += 1
            for symbol in self._contracts:
                tick = await self._poll(symbol)
                if tick is not None:
                    yield tick

    async def _poll(self, symbol: str) -> Tick | None:
        fns = self._contracts[symbol].functions
        try:
            if symbol not in self._decimals:
                self._decimals[symbol] = int(await asyncio.to_thread(fns.decimals().call))
            round_id, answer, _, updated_at, _ = await asyncio.to_thread(fns.latestRoundData().call)
        except Exception as exc:  # web3 raises transport, decoding and revert errors alike
            self.errors += 1
            self.last_error = f"{symbol}: {type(exc).__name__}: {exc}"
            log.warning("chainlink poll failed: %s", self.last_error)
            return None
        if self._last_round.get(symbol) == round_id:
            return None
        self._last_round[symbol] = int(round_id)
        price_usd = int(answer) / 10 ** self._decimals[symbol]  # exact int division, then rounded
        return Tick(symbol, price_usd, float(updated_at), self.source)


# ---------------------------------------------------------------------------- websocket server
class TickServer:
    """A lab/test websocket server: every client receives `messages` in order, then a close.

    Loopback only and bounded: at most `max_clients` at once (others are closed with 1013), and
    clients may not send more than a few bytes. `cut_first_connection_after` drops the first
    connection abruptly after that many messages, to exercise a client's reconnect.
    """

    def __init__(
        self,
        messages: Sequence[str],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval_s: float = 0.0,
        max_clients: int = 4,
        cut_first_connection_after: int | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ConfigError(f"tick server host {host!r} is not loopback", "use 127.0.0.1 or ::1")
        if max_clients < 1 or interval_s < 0:
            raise ConfigError("tick server limits out of range", "max_clients ≥ 1, interval_s ≥ 0")
        self.messages = list(messages)
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.max_clients = max_clients
        self.cut_first_connection_after = cut_first_connection_after
        self.connections = 0
        self._active = 0
        self._server: Server | None = None

    @classmethod
    def from_ticks(cls, ticks: Iterable[Tick], **kwargs: Any) -> TickServer:
        return cls([encode_tick(t) for t in ticks], **kwargs)

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        *,
        sources: Sequence[SourceSpec] = (SourceSpec(name="sim"),),
        seed: int = 0,
        **kwargs: Any,
    ) -> TickServer:
        """Serve `scenario` as printed by `sources` (see `scenario_ticks`)."""
        return cls.from_ticks(scenario_ticks(scenario, sources, seed=seed), **kwargs)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def __aenter__(self) -> TickServer:
        self._server = await serve(
            self._handle, self.host, self.port, max_size=1024, compression=None
        )
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, ws: ServerConnection) -> None:
        if self._active >= self.max_clients:
            await ws.close(1013, "too many clients")
            return
        self._active += 1
        self.connections += 1
        cut_after = self.cut_first_connection_after if self.connections == 1 else None
        try:
            for i, message in enumerate(self.messages):
                if cut_after is not None and i == cut_after:
                    ws.transport.abort()  # no close frame: what a crashed upstream looks like
                    return
                await ws.send(message)
                if self.interval_s:
                    await asyncio.sleep(self.interval_s)
            await ws.close()
        finally:
            self._active -= 1


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
