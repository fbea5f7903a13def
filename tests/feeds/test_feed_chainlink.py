"""The Chainlink poller against MockAggregator feeds on a real Anvil node."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing

import pytest
from web3.contract import Contract

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.errors import ConfigError
from offchain.feeds import ChainlinkPoller, Tick
from offchain.settings import Settings


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    with Anvil(accounts=2) as node:
        yield Chain.connect(Settings(rpc_url=node.url))


@pytest.fixture
def feed_owner(chain: Chain) -> str:
    return chain.accounts[0]


@pytest.fixture
def eth_feed(chain: Chain, feed_owner: str) -> Contract:
    return chain.deploy("MockAggregator", 8, "ETH / USD", 3000_00000000, sender=feed_owner)


@pytest.fixture
def btc_feed(chain: Chain, feed_owner: str) -> Contract:
    return chain.deploy("MockAggregator", 8, "BTC / USD", 60_000_00000000, sender=feed_owner)


async def next_tick(it: AsyncIterator[Tick], timeout_s: float = 5.0) -> Tick:
    return await asyncio.wait_for(anext(it), timeout_s)


def test_poller__new_rounds__each_emitted_once_with_price_and_update_time(
    chain: Chain, eth_feed: Contract, btc_feed: Contract, feed_owner: str
) -> None:
    poller = ChainlinkPoller(
        chain.w3, {"ETH": eth_feed.address, "BTC": btc_feed.address}, interval_s=0.02, source="cl"
    )

    async def run() -> list[Tick]:
        got: list[Tick] = []
        async with aclosing(aiter(poller)) as it:  # type: ignore[type-var]
            got += [await next_tick(it), await next_tick(it)]  # the current round of each feed
            eth_feed.functions.setAnswer(2_950_12345678).transact({"from": feed_owner})
            got.append(await next_tick(it))
            btc_feed.functions.setAnswer(59_000_00000000).transact({"from": feed_owner})
            eth_feed.functions.setAnswer(2_900_00000000).transact({"from": feed_owner})
            got += [await next_tick(it), await next_tick(it)]
        return got

    ticks = asyncio.run(run())
    pairs = [(t.symbol, t.price_usd) for t in ticks]
    assert pairs[:3] == [("ETH", 3000.0), ("BTC", 60_000.0), ("ETH", 2950.12345678)]
    # Both feeds changed between two yields; which comes first depends on where the poll paused.
    assert sorted(pairs[3:]) == [("BTC", 59_000.0), ("ETH", 2900.0)]
    assert all(t.source == "cl" and t.confidence_usd is None for t in ticks)
    updated_at = eth_feed.functions.latestRoundData().call()[3]
    assert next(t for t in ticks if t.price_usd == 2900.0).ts_s == float(updated_at)
    assert poller.errors == 0


def test_poller__unchanged_round__emits_nothing_new(chain: Chain, eth_feed: Contract) -> None:
    poller = ChainlinkPoller(chain.w3, {"ETH": eth_feed.address}, interval_s=0.01, max_polls=5)

    async def run() -> list[Tick]:
        return [t async for t in poller]

    ticks = asyncio.run(asyncio.wait_for(run(), 10))
    assert len(ticks) == 1
    assert poller.polls == 5


def test_poller__feed_reverts__counts_errors_and_recovers(
    chain: Chain, eth_feed: Contract, feed_owner: str
) -> None:
    eth_feed.functions.setReverts(True).transact({"from": feed_owner})
    poller = ChainlinkPoller(chain.w3, {"ETH": eth_feed.address}, interval_s=0.01)

    async def run() -> Tick:
        async with aclosing(aiter(poller)) as it:  # type: ignore[type-var]
            pending = asyncio.ensure_future(next_tick(it))
            while poller.errors < 3:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(
                lambda: eth_feed.functions.setReverts(False).transact({"from": feed_owner})
            )
            return await pending

    tick = asyncio.run(asyncio.wait_for(run(), 10))
    assert tick.price_usd == 3000.0
    assert poller.errors >= 3
    assert poller.last_error is not None
    assert "ETH" in poller.last_error


def test_poller__bad_address__raises_config_error(chain: Chain) -> None:
    with pytest.raises(ConfigError, match="ETH"):
        ChainlinkPoller(chain.w3, {"ETH": "0x1234"})
