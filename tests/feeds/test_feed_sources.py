"""Async sources: the simulator, CSV replay, and the websocket client against the loopback tick
server (malformed messages, a dropped connection, the sanitiser downstream)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterable
from contextlib import aclosing
from pathlib import Path

import pytest

from offchain.errors import ConfigError
from offchain.feeds import (
    Accepted,
    Dropped,
    Fault,
    Reason,
    Sanitizer,
    SourceSpec,
    Tick,
    TickServer,
    WebsocketSource,
    csv_source,
    encode_tick,
    gbm,
    load_csv_scenario,
    parse_tick_message,
    scenario_ticks,
    simulated_source,
)

T0 = 1_700_000_000.0


async def collect(
    source: AsyncIterable[Tick], limit: int = 10_000, timeout_s: float = 10.0
) -> list[Tick]:
    async def _run() -> list[Tick]:
        out: list[Tick] = []
        async with aclosing(aiter(source)) as it:  # type: ignore[type-var]
            async for t in it:
                out.append(t)
                if len(out) >= limit:
                    break
        return out

    return await asyncio.wait_for(_run(), timeout_s)


def test_simulated_source__scenario_with_sources__yields_the_same_ticks_as_the_fault_model() -> (
    None
):
    truth = gbm({"ETH": 3000.0, "BTC": 60_000.0}, 30, start_ts_s=T0, seed=5)
    specs = [SourceSpec(name="a"), SourceSpec(name="b", fault=Fault.NOISY)]
    got = asyncio.run(collect(simulated_source(truth, sources=specs, seed=5)))
    assert got == scenario_ticks(truth, specs, seed=5)
    assert len(got) == 31 * 2 * 2


def test_simulated_source__interval__paces_the_ticks() -> None:
    truth = gbm({"ETH": 3000.0}, 4, start_ts_s=T0)

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await collect(simulated_source(truth, interval_s=0.05))
        return loop.time() - start

    assert asyncio.run(timed()) >= 4 * 0.05 * 0.9


def test_csv_source__recorded_file__replays_rows_and_builds_a_scenario(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "ts_s,symbol,price_usd\n"
        "# recorded on a calm afternoon\n"
        "1700000000,ETH,3000.5\n"
        "1700000000,BTC,60000\n"
        "1700000060,ETH,3001.25\n"
        "\n"
        "1700000060,BTC,60010\n"
    )
    ticks = asyncio.run(collect(csv_source(path, source="rec")))
    assert ticks[0] == Tick("ETH", 3000.5, 1_700_000_000.0, "rec")
    assert [t.symbol for t in ticks] == ["ETH", "BTC", "ETH", "BTC"]
    scenario = load_csv_scenario(path)
    assert scenario.ts_s.tolist() == [1_700_000_000.0, 1_700_000_060.0]
    assert scenario.prices_usd["ETH"].tolist() == [3000.5, 3001.25]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time,sym,px\n1,ETH,1\n", "header"),
        ("ts_s,symbol,price_usd\n1,ETH\n", "row 2"),
        ("ts_s,symbol,price_usd\n1,ETH,1\n2,ETH,-5\n", "row 3"),
        ("ts_s,symbol,price_usd\nnan,ETH,1\n", "row 2"),
    ],
)
def test_csv_source__malformed_file__raises_config_error_with_the_line(
    tmp_path: Path, text: str, match: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        asyncio.run(collect(csv_source(path)))


def test_tick_message__wire_format__round_trips_and_rejects_garbage() -> None:
    t = Tick("ETH", 3000.5, T0, "x", 1.5)
    assert parse_tick_message(encode_tick(t)) == t
    assert parse_tick_message(
        b'{"symbol": "ETH", "price": 3000.5, "ts": 1700000000.0, "source": "x"}'
    ) == Tick("ETH", 3000.5, T0, "x")
    for bad in (
        "not json",
        "{}",
        '{"symbol":"ETH","price":-1,"ts":1,"source":"x"}',
        '{"symbol":"ETH","price":NaN,"ts":1,"source":"x"}',
        "[1,2]",
    ):
        assert parse_tick_message(bad) is None, bad


def _server_ticks(n: int) -> list[Tick]:
    truth = gbm({"ETH": 3000.0}, n - 1, interval_s=1.0, start_ts_s=T0, seed=8)
    return scenario_ticks(truth, [SourceSpec(name="ws")])


def test_websocket_source__server_sends_n_ticks_and_one_malformed__yields_n_and_counts_it() -> None:
    ticks = _server_ticks(20)
    messages = [encode_tick(t) for t in ticks]
    messages.insert(7, "{this is not a tick")
    messages.insert(12, json.dumps({"symbol": "ETH", "price": "free", "ts": T0, "source": "ws"}))

    async def run() -> tuple[list[Tick], WebsocketSource]:
        async with TickServer(messages) as server:
            assert server.url.startswith("ws://127.0.0.1:")
            source = WebsocketSource(server.url, max_reconnects=0)
            return await collect(source), source

    got, source = asyncio.run(run())
    assert got == ticks
    assert source.malformed == 2
    assert source.received == 22


def test_websocket_source__connection_cut__reconnects_and_sanitiser_drops_the_replayed_ticks() -> (
    None
):
    ticks = [Tick("ETH", 3000.0 + i, T0 + i, src) for i in range(10) for src in ("a", "b", "c")]

    async def run() -> tuple[list[Tick], WebsocketSource, int]:
        async with TickServer.from_ticks(ticks, cut_first_connection_after=12) as server:
            source = WebsocketSource(server.url, max_reconnects=1, initial_backoff_s=0.01)
            return await collect(source), source, server.connections

    got, source, connections = asyncio.run(run())
    assert source.reconnects == 1
    assert connections == 2
    assert got == ticks[:12] + ticks  # the second connection starts over
    s = Sanitizer()
    verdicts = [s.update(t) for t in got]
    reasons = Counter(v.reason for v in verdicts if isinstance(v, Dropped))
    # The replay of t = 0…2 is older than each source's t = 3 print; t = 3 itself repeats it.
    assert reasons == {Reason.OUT_OF_ORDER: 9, Reason.DUPLICATE: 3}
    final = s.current("ETH", T0 + 9)
    assert isinstance(final, Accepted)
    assert final.price_usd == 3009.0


def test_websocket_source__nothing_listening__retries_with_backoff_then_stops() -> None:
    async def run() -> tuple[list[Tick], WebsocketSource]:
        async with TickServer([]) as server:
            url = server.url
        source = WebsocketSource(url, max_reconnects=3, initial_backoff_s=0.01, max_backoff_s=0.02)
        return await collect(source), source

    got, source = asyncio.run(run())
    assert got == []
    assert source.reconnects == 3
    assert source.last_error is not None


def test_tick_server__extra_clients_beyond_the_cap__are_turned_away() -> None:
    truth = gbm({"ETH": 3000.0, "BTC": 60_000.0}, 4, start_ts_s=T0, seed=2)
    ticks = scenario_ticks(truth, [SourceSpec(name="sim")])

    async def run() -> list[list[Tick]]:
        async with TickServer.from_scenario(truth, max_clients=1, interval_s=0.02) as server:
            sources = [WebsocketSource(server.url, max_reconnects=0) for _ in range(2)]
            return list(await asyncio.gather(*(collect(s) for s in sources)))

    results = sorted(asyncio.run(run()), key=len)
    assert results == [[], ticks]


def test_tick_server__non_loopback_host__refused() -> None:
    with pytest.raises(ConfigError, match="loopback"):
        TickServer([], host="0.0.0.0")
    with pytest.raises(ConfigError, match="ws://"):
        WebsocketSource("http://127.0.0.1:1")
