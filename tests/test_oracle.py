"""OracleRouter: every revert path, decimals normalisation, the non-reverting views, and how the
clearinghouse behaves when a price is stale, non-positive, out of bounds, starved of gas or the L2
sequencer is down (THREATS C01, C02, C03, C06, C07, A20; SPEC I13, I14)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import assert_revert, make_stale
from web3.contract import Contract

from offchain.chain import Chain
from offchain.chain.client import MAX_UINT, Client, wad
from offchain.chain.deploy import Roles
from offchain.errors import ContractRevert

WAD = 10**18
HEARTBEAT = 3_600
DRIFT = 200  # bps per hour, the deployment's default
MAX_ASSETS = 32
FREE_ASSET = 5  # no feed in the default SystemSpec (ETH 0, BTC 1, SOL 2)
ETH, BTC, SOL = 0, 1, 2
ETH_E8 = 3_000 * 10**8  # the ETH feed's answer at deployment (8 decimals)
LATEST_ROUND_DATA = "0xfeaf968c"
# IOracleRouter.PriceStatus
(
    OK,
    NO_FEED,
    CALL_FAILED,
    NON_POSITIVE,
    STALE,
    FUTURE,
    OUT_OF_BOUNDS,
    BAD_REPLY,
    BAD_DECIMALS,
    ROUND_BACKWARDS,
) = range(10)


# ---------------------------------------------------------------------------- helpers


def now(chain: Chain) -> int:
    return int(chain.w3.eth.get_block("latest")["timestamp"])


def new_feed(chain: Chain, owner: str, decimals: int = 8, answer: int = ETH_E8) -> Contract:
    return chain.deploy("MockAggregator", decimals, "TEST / USD", answer, sender=owner)


def set_feed(
    system: Client,
    owner: str,
    asset: int,
    feed: Contract,
    *,
    heartbeat: int = HEARTBEAT,
    drift: int = DRIFT,
    min_e18: int = 10**12,
    max_e18: int = 10**27,
) -> Any:
    return system.chain.send(
        system.router.functions.setFeed(asset, feed.address, heartbeat, drift, min_e18, max_e18),
        owner,
        "set feed",
    )


def router_call(system: Client, name: str, *args: Any) -> Any:
    return system.chain.call(getattr(system.router.functions, name)(*args), f"router.{name}")


def quotes(system: Client, mask: int) -> list[tuple[int, int, int]]:
    """The `quotes` view: (status, low, high) per asset of `mask`, ascending."""
    return [tuple(q) for q in router_call(system, "quotes", mask)[1]]


def read_quotes(system: Client, mask: int, required: int) -> list[tuple[bool, int, int]]:
    """`readQuotes` as an eth_call (what a state-changing read would return, or its revert),
    unpacked to (usable, low, high) per asset of `mask`, ascending."""
    unusable, packed = router_call(system, "readQuotes", mask, required)
    assets = [a for a in range(mask.bit_length()) if mask >> a & 1]
    return [
        (not unusable >> a & 1, q & (2**128 - 1), q >> 128)
        for a, q in zip(assets, packed, strict=True)
    ]


def peek_quotes(system: Client, mask: int) -> list[tuple[bool, int, int]]:
    """The `peekQuotes` view, unpacked like `read_quotes`."""
    _, unusable, packed = router_call(system, "peekQuotes", mask)
    assets = [a for a in range(mask.bit_length()) if mask >> a & 1]
    return [
        (not unusable >> a & 1, q & (2**128 - 1), q >> 128)
        for a, q in zip(assets, packed, strict=True)
    ]


def usable(rows: list[tuple[int, int, int]]) -> list[tuple[bool, int, int]]:
    """`quotes` rows as `read_quotes` reports them: usable (status OK), low, high."""
    return [(status == OK, low, high) for status, low, high in rows]


def install_sequencer(
    system: Client, owner: str, *, down: bool, started_at: int, grace: int = HEARTBEAT
) -> Contract:
    """An L2 sequencer-uptime feed (answer 0 = up, 1 = down; startedAt = last status change)."""
    feed = new_feed(system.chain, owner, decimals=0, answer=1 if down else 0)
    system.chain.send(feed.functions.setStartedAt(started_at), owner, "sequencer startedAt")
    system.chain.send(
        system.router.functions.setSequencerFeed(feed.address, grace), owner, "set sequencer"
    )
    return feed


def _frames(trace: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield trace
    for sub in trace.get("calls", []):
        yield from _frames(sub)


def _feed_read_starved(trace: dict[str, Any], feed: str) -> bool:
    return any(
        f.get("to", "").lower() == feed.lower()
        and f.get("input", "").startswith(LATEST_ROUND_DATA)
        and f.get("error") is not None
        for f in _frames(trace)
    )


def starved_runs(
    chain: Chain, tx: dict[str, Any], feed: str, gas_limits: range
) -> list[tuple[int, Any]]:
    """(gas limit, top-level error) for every limit at which the feed read ran out of gas."""
    runs = []
    for gas in gas_limits:
        reply = chain.w3.provider.make_request(  # type: ignore[arg-type]
            "debug_traceCall", [{**tx, "gas": hex(gas)}, "latest", {"tracer": "callTracer"}]
        )
        trace = reply.get("result")
        if trace is not None and _feed_read_starved(trace, feed):
            runs.append((gas, trace.get("error")))
    return runs


def send_raw(chain: Chain, tx: dict[str, Any], gas: int) -> Any:
    """Sends without the pre-flight, so a transaction that will fail is mined anyway."""
    tx_hash = chain.w3.eth.send_transaction({**tx, "gas": gas})  # type: ignore[typeddict-item]
    return chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.01)


@pytest.fixture
def liquidatable(system: Client, open_position: Callable[..., Any]) -> Any:
    """The trader long 10 ETH at 3000 on 5000 USDC; ETH at 2650 puts equity 1500 below MM 1722.5."""
    opened = open_position(size=10, collateral_usd=5_000)
    system.set_price("ETH", 2_650)
    assert system.health(opened.trader).liquidatable
    return opened


# ---------------------------------------------------------------------------- setFeed
def test_set_feed__valid_config__stores_it_and_emits_feed_set(system: Client, roles: Roles) -> None:
    feed = new_feed(system.chain, roles.owner, decimals=6, answer=42 * 10**6)
    receipt = set_feed(
        system, roles.owner, FREE_ASSET, feed, heartbeat=600, min_e18=WAD, max_e18=100 * WAD
    )
    [event] = [e for e in system.events(receipt) if e.name == "FeedSet"]
    assert event.args == {
        "asset": FREE_ASSET,
        "feed": feed.address,
        "heartbeatSeconds": 600,
        "feedDecimals": 6,
        "outageDriftBpsPerHour": DRIFT,
        "minPriceE18": WAD,
        "maxPriceE18": 100 * WAD,
    }
    assert tuple(router_call(system, "feedConfig", FREE_ASSET)) == (
        feed.address,
        600,
        DRIFT,
        WAD,
        100 * WAD,
    )
    assert router_call(system, "priceE18", FREE_ASSET) == 42 * WAD
    # I19: the feed's current round is the last accepted one from the start.
    round_id, _, _, updated_at, _ = feed.functions.latestRoundData().call()
    assert tuple(router_call(system, "lastRound", FREE_ASSET)) == (42 * WAD, round_id, updated_at)


def test_set_feed__last_asset_id__is_accepted_and_keeps_every_other_entry(
    system: Client, roles: Roles
) -> None:
    # The feed book is one blob rewritten whole: listing the last asset id extends it and leaves
    # every other asset's entry as it was; an id in between still reads as no feed.
    before = [tuple(router_call(system, "feedConfig", a)) for a in range(MAX_ASSETS - 1)]
    feed = new_feed(system.chain, roles.owner)
    set_feed(system, roles.owner, MAX_ASSETS - 1, feed, heartbeat=900)
    assert router_call(system, "priceE18", MAX_ASSETS - 1) == 3_000 * WAD
    assert tuple(router_call(system, "feedConfig", MAX_ASSETS - 1)) == (
        feed.address,
        900,
        DRIFT,
        10**12,
        10**27,
    )
    assert [tuple(router_call(system, "feedConfig", a)) for a in range(MAX_ASSETS - 1)] == before
    assert router_call(system, "tryPriceE18", MAX_ASSETS - 2)[1] == NO_FEED


@pytest.mark.parametrize("asset", [MAX_ASSETS, 255, 2**256 - 1])
def test_set_feed__asset_id_from_max_assets__reverts_asset_id_too_large(
    system: Client, roles: Roles, asset: int
) -> None:
    feed = new_feed(system.chain, roles.owner)
    with pytest.raises(ContractRevert) as e:
        set_feed(system, roles.owner, asset, feed)
    assert_revert(e.value, "AssetIdTooLarge", asset=asset, maxAssets=MAX_ASSETS)


@pytest.mark.parametrize(
    ("case", "heartbeat", "drift", "min_e18", "max_e18"),
    [
        ("zero feed address", HEARTBEAT, DRIFT, WAD, 2 * WAD),
        ("zero heartbeat", 0, DRIFT, WAD, 2 * WAD),
        ("zero drift", HEARTBEAT, 0, WAD, 2 * WAD),
        ("drift above 100% an hour", HEARTBEAT, 10_001, WAD, 2 * WAD),
        ("zero min price", HEARTBEAT, DRIFT, 0, 2 * WAD),
        ("min equal to max", HEARTBEAT, DRIFT, WAD, WAD),
        ("min above max", HEARTBEAT, DRIFT, 2 * WAD, WAD),
    ],
)
def test_set_feed__invalid_config__reverts_invalid_feed_config(
    system: Client,
    roles: Roles,
    case: str,
    heartbeat: int,
    drift: int,
    min_e18: int,
    max_e18: int,
) -> None:
    address = (
        "0x" + "00" * 20
        if case == "zero feed address"
        else new_feed(system.chain, roles.owner).address
    )
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            system.router.functions.setFeed(
                FREE_ASSET, address, heartbeat, drift, min_e18, max_e18
            ),
            roles.owner,
            case,
        )
    assert_revert(
        e.value,
        "InvalidFeedConfig",
        feed=address,
        heartbeatSeconds=heartbeat,
        outageDriftBpsPerHour=drift,
        minPriceE18=min_e18,
        maxPriceE18=max_e18,
    )
    assert router_call(system, "feedConfig", FREE_ASSET)[0] == "0x" + "00" * 20


@pytest.mark.parametrize("decimals", [19, 36])
def test_set_feed__feed_with_more_than_18_decimals__reverts_unsupported_feed_decimals(
    system: Client, roles: Roles, decimals: int
) -> None:
    feed = new_feed(system.chain, roles.owner, decimals=decimals, answer=10**decimals)
    with pytest.raises(ContractRevert) as e:
        set_feed(system, roles.owner, FREE_ASSET, feed)
    assert_revert(e.value, "UnsupportedFeedDecimals", feed=feed.address, decimals=decimals)


def test_set_feed__non_owner__reverts_ownable_unauthorized_account(
    system: Client, roles: Roles, trader: str
) -> None:
    feed = new_feed(system.chain, roles.owner)
    for caller in (trader, roles.guardian, roles.matcher):
        with pytest.raises(ContractRevert) as e:
            set_feed(system, caller, ETH, feed)
        assert_revert(e.value, "OwnableUnauthorizedAccount", account=caller)
    assert router_call(system, "feedConfig", ETH)[0] == system.d.assets[ETH].feed


def test_set_sequencer_feed__non_owner__reverts_ownable_unauthorized_account(
    system: Client, roles: Roles, trader: str
) -> None:
    feed = new_feed(system.chain, roles.owner, decimals=0, answer=1)
    with pytest.raises(ContractRevert) as e:
        system.chain.send(
            system.router.functions.setSequencerFeed(feed.address, 60), trader, "sequencer"
        )
    assert_revert(e.value, "OwnableUnauthorizedAccount", account=trader)
    assert system.router.functions.sequencerFeed().call() == "0x" + "00" * 20


def test_set_sequencer_feed__owner__stores_it_and_emits_sequencer_feed_set(
    system: Client, roles: Roles
) -> None:
    feed = new_feed(system.chain, roles.owner, decimals=0, answer=0)
    receipt = system.chain.send(
        system.router.functions.setSequencerFeed(feed.address, 900), roles.owner, "seq"
    )
    [event] = [e for e in system.events(receipt) if e.name == "SequencerFeedSet"]
    assert event.args == {"feed": feed.address, "gracePeriodSeconds": 900}
    assert system.router.functions.sequencerFeed().call() == feed.address
    assert system.router.functions.sequencerGracePeriodSeconds().call() == 900


def test_set_sequencer_feed_and_set_feed__share_the_feed_book__neither_overwrites_the_other(
    system: Client, roles: Roles
) -> None:
    """The sequencer's entry heads the feed book that `setFeed` rewrites whole, and the other way
    round: each write keeps every other entry as it was."""
    feeds = [tuple(router_call(system, "feedConfig", a)) for a in range(MAX_ASSETS)]
    sequencer = new_feed(system.chain, roles.owner, decimals=0, answer=0)
    system.chain.send(
        system.router.functions.setSequencerFeed(sequencer.address, 900), roles.owner, "seq"
    )
    assert [tuple(router_call(system, "feedConfig", a)) for a in range(MAX_ASSETS)] == feeds
    feed = new_feed(system.chain, roles.owner)
    set_feed(system, roles.owner, FREE_ASSET, feed)
    assert system.router.functions.sequencerFeed().call() == sequencer.address
    assert system.router.functions.sequencerGracePeriodSeconds().call() == 900
    assert tuple(router_call(system, "feedConfig", FREE_ASSET)) == (
        feed.address,
        HEARTBEAT,
        DRIFT,
        10**12,
        10**27,
    )


# ---------------------------------------------------------------------------- priceE18 / pricesE18
@pytest.mark.parametrize(
    ("decimals", "answer"),
    [(0, 1_234), (6, 1_234_567_891), (8, 123_456_789_123), (18, 1_234_567_891_234_567_891_234)],
)
def test_price_e18__feed_decimals__normalised_to_1e18(
    system: Client, roles: Roles, decimals: int, answer: int
) -> None:
    """# I14: whatever the feed's decimals, consumers see USD per unit with 18 decimals."""
    set_feed(system, roles.owner, FREE_ASSET, new_feed(system.chain, roles.owner, decimals, answer))
    expected = answer * 10 ** (18 - decimals)
    assert router_call(system, "priceE18", FREE_ASSET) == expected
    assert quotes(system, 1 << FREE_ASSET) == [(OK, expected, expected)]
    assert tuple(system.router.functions.tryPriceE18(FREE_ASSET).call()) == (expected, OK)


def test_quotes__mask__one_quote_per_asked_asset_in_ascending_order(system: Client) -> None:
    """Only the prices asked for cross the call, in ascending asset id (no 32-entry array)."""
    assert quotes(system, (1 << ETH) | (1 << SOL)) == [
        (OK, 3_000 * WAD, 3_000 * WAD),
        (OK, 150 * WAD, 150 * WAD),
    ]
    assert read_quotes(system, 0b111, 0b111) == usable(quotes(system, 0b111))
    assert peek_quotes(system, 0b111) == read_quotes(system, 0b111, 0)
    assert quotes(system, 0) == []


@pytest.mark.parametrize("asset", [FREE_ASSET, MAX_ASSETS - 1, MAX_ASSETS, 1_000])
def test_price_e18__asset_without_feed__reverts_unknown_asset(system: Client, asset: int) -> None:
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", asset)
    assert_revert(e.value, "UnknownAsset", asset=asset)


@pytest.mark.parametrize("missing", [FREE_ASSET, MAX_ASSETS])
def test_read_quotes__required_asset_without_feed__reverts_unknown_asset(
    system: Client, missing: int
) -> None:
    mask = (1 << ETH) | (1 << missing)
    with pytest.raises(ContractRevert) as e:
        read_quotes(system, mask, mask)
    assert_revert(e.value, "UnknownAsset", asset=missing)
    # Not required: reported, never a revert.
    assert quotes(system, mask)[1] == (NO_FEED, 0, 0)
    assert read_quotes(system, mask, 1 << ETH)[1] == (False, 0, 0)


@pytest.mark.parametrize("answer", [0, -1, -3_000 * 10**8])
def test_price_e18__non_positive_answer__reverts_non_positive_price(
    system: Client, roles: Roles, answer: int
) -> None:
    """# I14 / C02: an answer of 0 or below is never a price."""
    system.chain.send(system.feeds["ETH"].functions.setAnswer(answer), roles.owner, "bad answer")
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", ETH)
    assert_revert(e.value, "NonPositivePrice", asset=ETH, answer=answer)
    with pytest.raises(ContractRevert) as e:
        read_quotes(system, 0b111, 0b111)
    assert_revert(e.value, "NonPositivePrice", asset=ETH, answer=answer)
    assert tuple(system.router.functions.tryPriceE18(ETH).call()) == (0, NON_POSITIVE)


def test_price_e18__round_older_than_heartbeat__reverts_stale_price(
    system: Client, chain: Chain, roles: Roles
) -> None:
    """# I14 / C01: a round exactly one heartbeat old is still fresh; one second more is stale."""
    feed = system.feeds["ETH"]
    system.chain.send(feed.functions.setAnswer(ETH_E8), roles.owner, "new round")
    updated_at = now(chain)
    chain.w3.provider.make_request("evm_mine", [updated_at + HEARTBEAT])  # type: ignore[arg-type]
    assert router_call(system, "priceE18", ETH) == 3_000 * WAD

    chain.w3.provider.make_request("evm_mine", [updated_at + HEARTBEAT + 1])  # type: ignore[arg-type]
    assert now(chain) == updated_at + HEARTBEAT + 1
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", ETH)
    assert_revert(
        e.value, "StalePrice", asset=ETH, updatedAt=updated_at, heartbeatSeconds=HEARTBEAT
    )
    assert tuple(system.router.functions.tryPriceE18(ETH).call()) == (0, STALE)


def test_price_e18__fresh_round_aged_by_time_travel__reverts_stale_price(
    system: Client, chain: Chain
) -> None:
    """# C01: no new round for longer than the heartbeat (the feed stopped updating)."""
    updated_at = system.feeds["ETH"].functions.latestRoundData().call()[3]
    chain.w3.provider.make_request("evm_increaseTime", [HEARTBEAT + 60])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", ETH)
    assert_revert(
        e.value, "StalePrice", asset=ETH, updatedAt=updated_at, heartbeatSeconds=HEARTBEAT
    )


def test_price_e18__round_from_the_future__reverts_future_price(
    system: Client, roles: Roles
) -> None:
    feed = system.feeds["ETH"]
    future = now(system.chain) + 600
    system.chain.send(feed.functions.setRound(ETH_E8, future), roles.owner, "future round")
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", ETH)
    assert_revert(
        e.value, "FuturePrice", asset=ETH, updatedAt=future, blockTimestamp=now(system.chain)
    )
    assert tuple(system.router.functions.tryPriceE18(ETH).call()) == (0, FUTURE)


@pytest.mark.parametrize(
    ("answer", "expected_e18"),
    [(99 * 10**8, 99 * WAD), (1, 10**10), (10_001 * 10**8, 10_001 * WAD)],
    ids=["below-min", "one-unit", "above-max"],
)
def test_price_e18__outside_bounds__reverts_price_out_of_bounds(
    system: Client, roles: Roles, answer: int, expected_e18: int
) -> None:
    feed = new_feed(system.chain, roles.owner, 8, answer)
    set_feed(system, roles.owner, FREE_ASSET, feed, min_e18=100 * WAD, max_e18=10_000 * WAD)
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", FREE_ASSET)
    assert_revert(
        e.value,
        "PriceOutOfBounds",
        asset=FREE_ASSET,
        priceE18=expected_e18,
        minPriceE18=100 * WAD,
        maxPriceE18=10_000 * WAD,
    )
    assert system.router.functions.tryPriceE18(FREE_ASSET).call()[1] == OUT_OF_BOUNDS


def test_price_e18__strictly_inside_bounds__is_accepted(system: Client, roles: Roles) -> None:
    feed = new_feed(system.chain, roles.owner, 8, 100 * 10**8 + 1)
    set_feed(system, roles.owner, FREE_ASSET, feed, min_e18=100 * WAD, max_e18=10_000 * WAD)
    assert router_call(system, "priceE18", FREE_ASSET) == 100 * WAD + 10**10
    system.chain.send(feed.functions.setAnswer(10_000 * 10**8 - 1), roles.owner, "near max")
    assert router_call(system, "priceE18", FREE_ASSET) == 10_000 * WAD - 10**10


@pytest.mark.parametrize("bound", ["min", "max"])
def test_price_e18__answer_pinned_at_a_configured_bound__reverts_price_out_of_bounds(
    system: Client, roles: Roles, bound: str
) -> None:
    """# C03: a Chainlink aggregator clamps its answer to its own min/maxAnswer, so a feed that is
    pinned reports exactly that value, and an owner mirroring the aggregator's limits into the
    router sets the bound to exactly that value (IOracleRouter: minPriceE18 is for "a feed pinned
    at its floor"). A price equal to a bound is the signature of a pinned feed: it must be
    rejected."""
    min_e18, max_e18 = 100 * WAD, 10_000 * WAD
    pinned = min_e18 if bound == "min" else max_e18
    feed = new_feed(system.chain, roles.owner, 8, pinned // 10**10)
    set_feed(system, roles.owner, FREE_ASSET, feed, min_e18=min_e18, max_e18=max_e18)
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", FREE_ASSET)
    assert_revert(e.value, "PriceOutOfBounds", asset=FREE_ASSET, priceE18=pinned)
    assert system.router.functions.tryPriceE18(FREE_ASSET).call()[1] == OUT_OF_BOUNDS


def test_price_e18__absurd_answer_above_max__reports_the_price_scaled_to_1e18(
    system: Client, roles: Roles
) -> None:
    """`PriceOutOfBounds.priceE18` and `tryPriceE18` are documented as 1e18-scaled; an 8-decimals
    answer of 2e27 is 2e37 in 1e18 units, not 2e27 (which reads as a price 1e10 times too low)."""
    answer = 2 * 10**27
    feed = new_feed(system.chain, roles.owner, 8, answer)
    set_feed(system, roles.owner, FREE_ASSET, feed, min_e18=WAD, max_e18=10**27)
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", FREE_ASSET)
    assert_revert(e.value, "PriceOutOfBounds", asset=FREE_ASSET, maxPriceE18=10**27)
    assert e.value.args_by_name["priceE18"] == answer * 10**10
    assert tuple(system.router.functions.tryPriceE18(FREE_ASSET).call()) == (
        answer * 10**10,
        OUT_OF_BOUNDS,
    )


def test_read_quotes__one_unusable_required_asset__reverts_with_that_assets_error(
    system: Client, roles: Roles
) -> None:
    updated_at = make_stale(system, "BTC")
    with pytest.raises(ContractRevert) as e:
        read_quotes(system, 0b111, 0b111)
    assert_revert(
        e.value, "StalePrice", asset=BTC, updatedAt=updated_at, heartbeatSeconds=HEARTBEAT
    )
    # Not required, BTC is quoted and the others still price.
    eth, btc, sol = read_quotes(system, 0b111, 0b101)
    # The views decode the same compact form, a broken feed's quote included.
    assert peek_quotes(system, 0b111) == [eth, btc, sol]
    assert (eth, sol) == ((True, 3_000 * WAD, 3_000 * WAD), (True, 150 * WAD, 150 * WAD))
    assert btc[0] is False
    assert btc[1] < 60_000 * WAD < btc[2]


def test_price_e18__feed_call_reverts__reverts_the_read(system: Client, roles: Roles) -> None:
    system.chain.send(system.feeds["ETH"].functions.setReverts(True), roles.owner, "feed reverts")
    with pytest.raises(ContractRevert) as e:
        router_call(system, "priceE18", ETH)
    assert_revert(e.value, "FeedCallFailed", asset=ETH, feed=system.d.assets[ETH].feed)
    assert tuple(system.router.functions.tryPriceE18(ETH).call()) == (0, CALL_FAILED)


# ---------------------------------------------------------------------------- tryPriceE18
@pytest.mark.parametrize(
    ("fault", "status"),
    [
        ("none", OK),
        ("no feed", NO_FEED),
        ("asset id beyond max", NO_FEED),
        ("feed reverts", CALL_FAILED),
        ("zero answer", NON_POSITIVE),
        ("negative answer", NON_POSITIVE),
        ("stale", STALE),
        ("future", FUTURE),
        ("out of bounds", OUT_OF_BOUNDS),
    ],
)
def test_try_price_e18__any_fault__returns_its_status_and_never_reverts(
    system: Client, roles: Roles, fault: str, status: int
) -> None:
    feed = system.feeds["ETH"]
    send = lambda fn: system.chain.send(fn, roles.owner, fault)  # noqa: E731
    asset = {"no feed": FREE_ASSET, "asset id beyond max": 2**256 - 1}.get(fault, ETH)
    t = now(system.chain)
    if fault == "feed reverts":
        send(feed.functions.setReverts(True))
    elif fault == "zero answer":
        send(feed.functions.setAnswer(0))
    elif fault == "negative answer":
        send(feed.functions.setAnswer(-1))
    elif fault == "stale":
        make_stale(system, "ETH")
    elif fault == "future":
        send(feed.functions.setRound(ETH_E8, t + 60))
    elif fault == "out of bounds":  # the router's own floor set just above the feed's answer
        send(
            system.router.functions.setFeed(
                ETH, feed.address, HEARTBEAT, DRIFT, 3_001 * WAD, 10**27
            )
        )
    price, got = system.router.functions.tryPriceE18(asset).call()
    assert got == status
    # The price is reported only when the feed gave a positive, current answer.
    assert price == (3_000 * WAD if status in (OK, OUT_OF_BOUNDS) else 0)


# ---------------------------------------------------------------------------- sequencer
def test_check_sequencer__no_sequencer_feed__is_a_no_op(system: Client) -> None:
    router_call(system, "checkSequencer")
    assert system.router.functions.sequencerOk().call() is True


def test_check_sequencer__sequencer_down__reverts_sequencer_down(
    system: Client, roles: Roles
) -> None:
    went_down = now(system.chain) - 30
    install_sequencer(system, roles.owner, down=True, started_at=went_down)
    with pytest.raises(ContractRevert) as e:
        router_call(system, "checkSequencer")
    assert_revert(e.value, "SequencerDown", statusChangedAt=went_down)
    assert system.router.functions.sequencerOk().call() is False


def test_check_sequencer__within_grace_period__reverts_sequencer_grace_period(
    system: Client, roles: Roles
) -> None:
    restarted = now(system.chain) - 60
    install_sequencer(system, roles.owner, down=False, started_at=restarted, grace=HEARTBEAT)
    with pytest.raises(ContractRevert) as e:
        router_call(system, "checkSequencer")
    assert_revert(
        e.value, "SequencerGracePeriod", restartedAt=restarted, gracePeriodSeconds=HEARTBEAT
    )
    assert system.router.functions.sequencerOk().call() is False


def test_check_sequencer__after_grace_period__passes(system: Client, roles: Roles) -> None:
    install_sequencer(system, roles.owner, down=False, started_at=now(system.chain) - HEARTBEAT - 1)
    router_call(system, "checkSequencer")
    assert system.router.functions.sequencerOk().call() is True


def test_sequencer_ok__sequencer_feed_reverts__returns_false_without_reverting(
    system: Client, roles: Roles
) -> None:
    feed = install_sequencer(
        system, roles.owner, down=False, started_at=now(system.chain) - 2 * HEARTBEAT
    )
    system.chain.send(feed.functions.setReverts(True), roles.owner, "sequencer feed reverts")
    assert system.router.functions.sequencerOk().call() is False
    with pytest.raises(ContractRevert):
        router_call(system, "checkSequencer")


def test_set_sequencer_feed__zero_address__disables_the_check(system: Client, roles: Roles) -> None:
    install_sequencer(system, roles.owner, down=True, started_at=now(system.chain))
    zero = "0x" + "00" * 20
    system.chain.send(system.router.functions.setSequencerFeed(zero, 0), roles.owner, "disable")
    router_call(system, "checkSequencer")
    assert system.router.functions.sequencerOk().call() is True


# ---------------------------------------------------------------------------- C01 stale round
def test_stale_round__risk_increasing_trade_withdraw_and_liquidation__revert_stale_price(
    system: Client, roles: Roles, open_position: Callable[..., Any], others: list[str]
) -> None:
    """# C01 / I14: nothing that needs a price to be safe goes through on a stale round."""
    opened = open_position(size=10, collateral_usd=5_000)
    system.deposit(others[0], "USDC", 50_000, mint=True)
    nonce = system.account(opened.trader)["nonce"]
    updated_at = make_stale(system, "ETH")
    stale = {"asset": ETH, "updatedAt": updated_at, "heartbeatSeconds": HEARTBEAT}

    with pytest.raises(ContractRevert) as e:  # the trader adds to the long
        system.trade("ETH-PERP", opened.trader, opened.maker, wad(1), opened.price_e18)
    assert_revert(e.value, "StalePrice", **stale)
    with pytest.raises(ContractRevert) as e:  # a fresh account opens against a reducing maker
        system.trade("ETH-PERP", others[0], opened.maker, wad(1), opened.price_e18)
    assert_revert(e.value, "StalePrice", **stale)
    with pytest.raises(ContractRevert) as e:
        system.withdraw(opened.trader, "USDC", 1)
    assert_revert(e.value, "StalePrice", **stale)
    with pytest.raises(ContractRevert) as e:
        system.liquidate(others[0], opened.trader, "ETH-PERP")
    assert_revert(e.value, "StalePrice", **stale)
    assert system.preview(opened.trader, "ETH-PERP").status_name == "PRICE_UNAVAILABLE"
    assert system.position(opened.trader, "ETH-PERP") == opened.size_wad
    assert system.account(opened.trader)["nonce"] == nonce


def test_stale_round__deposit_and_closing_trade__still_work(
    system: Client, roles: Roles, open_position: Callable[..., Any]
) -> None:
    """# C01 / I13: deposits and exits stay open on a stale round."""
    opened = open_position(size=10, collateral_usd=5_000)
    make_stale(system, "ETH")
    assert system.deposit(opened.trader, "USDC", 1_000, mint=True) == 1_000 * 10**6
    system.trade("ETH-PERP", opened.trader, opened.maker, -opened.size_wad, opened.price_e18)
    assert system.position(opened.trader, "ETH-PERP") == 0
    assert system.position(opened.maker, "ETH-PERP") == 0
    system.withdraw(opened.trader, "USDC", 6_000)  # no positions left: no price needed
    assert system.account(opened.trader)["cash_wad"] == 0


# ---------------------------------------------------------------------------- C02 zero/negative
@pytest.mark.parametrize("answer", [0, -1])
def test_non_positive_answer__risk_increasing_trade_and_liquidation__revert_non_positive_price(
    system: Client, roles: Roles, liquidatable: Any, keeper: str, answer: int
) -> None:
    """# C02: an answer of 0 never becomes a price of 0 (which would zero every requirement)."""
    system.chain.send(system.feeds["ETH"].functions.setAnswer(answer), roles.owner, "bad answer")
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", liquidatable.trader, liquidatable.maker, wad(1), 2_650 * WAD)
    assert_revert(e.value, "NonPositivePrice", asset=ETH, answer=answer)
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, liquidatable.trader, "ETH-PERP")
    assert_revert(e.value, "NonPositivePrice", asset=ETH, answer=answer)
    # The views stay total (I18): ETH is quoted from its last accepted round, never priced at 0.
    ((status, low, _),) = quotes(system, 1 << ETH)
    assert status == NON_POSITIVE
    assert low > 0
    assert system.health(liquidatable.trader).maintenance_margin_wad > 0
    assert system.preview(liquidatable.trader, "ETH-PERP").status_name == "PRICE_UNAVAILABLE"
    assert system.position(liquidatable.trader, "ETH-PERP") == liquidatable.size_wad


# ---------------------------------------------------------------------------- C03 pinned feed
def test_feed_pinned_at_its_floor_while_market_is_10x_lower__risk_increasing_trade_reverts(
    system: Client, roles: Roles, trader: str, maker: str
) -> None:
    """# C03 (Venus/LUNA 2022): SOL's aggregator clamps at $0.10 while SOL trades at $0.01; the
    owner mirrored that floor into the router. Opening a long against the pinned price (buying at
    $0.01 what the book would value at $0.10) must be refused."""
    floor_e18 = WAD // 10
    feed = system.feeds["SOL"]
    system.chain.send(
        system.router.functions.setFeed(SOL, feed.address, HEARTBEAT, DRIFT, floor_e18, 10**27),
        roles.owner,
        "bounds",
    )
    system.chain.send(feed.functions.setAnswer(floor_e18 // 10**10), roles.owner, "pinned at floor")
    system.deposit(trader, "USDC", 1_000, mint=True)
    system.deposit(maker, "USDC", 1_000, mint=True)
    with pytest.raises(ContractRevert) as e:
        system.trade("SOL-PERP", trader, maker, wad(1_000), floor_e18)
    assert_revert(e.value, "PriceOutOfBounds", asset=SOL, priceE18=floor_e18, minPriceE18=floor_e18)
    assert system.position(trader, "SOL-PERP") == 0


def test_feed_below_the_routers_own_floor__trade_reverts_and_deposits_still_work(
    system: Client, roles: Roles, trader: str, maker: str
) -> None:
    """# C03: with the router's floor above the aggregator's ($1 vs a feed printing $0.10) the
    pinned print is flagged; deposits stay open (I13)."""
    feed = system.feeds["SOL"]
    system.chain.send(
        system.router.functions.setFeed(SOL, feed.address, HEARTBEAT, DRIFT, WAD, 10**27),
        roles.owner,
        "bounds",
    )
    system.chain.send(feed.functions.setAnswer(10**7), roles.owner, "feed at $0.10")
    assert system.deposit(trader, "USDC", 1_000, mint=True) == 1_000 * 10**6
    system.deposit(maker, "USDC", 1_000, mint=True)
    with pytest.raises(ContractRevert) as e:
        system.trade("SOL-PERP", trader, maker, wad(1_000), WAD // 10)
    assert_revert(
        e.value,
        "PriceOutOfBounds",
        asset=SOL,
        priceE18=WAD // 10,
        minPriceE18=WAD,
        maxPriceE18=10**27,
    )


# ---------------------------------------------------------------------------- C06 gas starvation
def test_liquidate__feed_read_starved_of_gas__whole_transaction_reverts(
    system: Client, chain: Chain, liquidatable: Any, keeper: str
) -> None:
    """# C06: at every gas limit that starves the feed read, the liquidation reverts as a whole;
    one such transaction mined for real has status 0 and changes nothing."""
    trader = liquidatable.trader
    tx = {
        "from": keeper,
        "to": system.ch.address,
        "data": system.ch.encode_abi("liquidate", [trader, 0, MAX_UINT]),
    }
    needed = chain.w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
    feed = system.feeds["ETH"].address
    runs = starved_runs(chain, tx, feed, range(30_000, needed, 1_000))
    assert runs, "no gas limit starved the feed read: widen the sweep"
    assert all(error is not None for _, error in runs), runs

    before = (system.position(trader, "ETH-PERP"), system.account(trader), system.account(keeper))
    gas = runs[len(runs) // 2][0]
    receipt = send_raw(chain, tx, gas)
    assert receipt["status"] == 0
    mined = chain.w3.provider.make_request(  # type: ignore[arg-type]
        "debug_traceTransaction", [receipt["transactionHash"].hex(), {"tracer": "callTracer"}]
    )["result"]
    assert _feed_read_starved(mined, feed)
    assert (
        system.position(trader, "ETH-PERP"),
        system.account(trader),
        system.account(keeper),
    ) == before
    system.liquidate(keeper, trader, "ETH-PERP")  # with enough gas it goes through
    assert system.position(trader, "ETH-PERP") == liquidatable.size_wad // 2


def test_settle_trade__reducing_trade_with_feed_read_starved__never_skips_the_band_check(
    system: Client, chain: Chain, roles: Roles, open_position: Callable[..., Any]
) -> None:
    """# C06 / I13: a reducing trade tolerates an unusable oracle (`tryPriceE18`), but a matcher
    must not fake "unusable" by starving the feed read to settle outside the band: every starved
    run of a trade 33% below the oracle reverts, and so does a mined one."""
    opened = open_position(size=10, collateral_usd=5_000)
    off_band = 2_000 * WAD
    args = [0, opened.trader, opened.maker, -opened.size_wad // 2, off_band]
    tx = {
        "from": roles.matcher,
        "to": system.ch.address,
        "data": system.ch.encode_abi("settleTrade", args),
    }
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", opened.trader, opened.maker, -opened.size_wad // 2, off_band)
    assert_revert(
        e.value, "PriceOutsideBand", marketId=0, tradePriceE18=off_band, oraclePriceE18=3_000 * WAD
    )
    in_band = {**tx, "data": system.ch.encode_abi("settleTrade", [*args[:4], opened.price_e18])}
    needed = chain.w3.eth.estimate_gas(in_band)  # type: ignore[arg-type]
    feed = system.feeds["ETH"].address
    runs = starved_runs(chain, tx, feed, range(30_000, needed + 5_000, 1_000))
    assert runs, "no gas limit starved the feed read: widen the sweep"
    assert all(error is not None for _, error in runs), runs

    nonce = system.account(opened.trader)["nonce"]
    receipt = send_raw(chain, tx, runs[len(runs) // 2][0])
    assert receipt["status"] == 0
    assert system.position(opened.trader, "ETH-PERP") == opened.size_wad
    assert system.account(opened.trader)["nonce"] == nonce


# ---------------------------------------------------------------------------- C07 sequencer
def test_sequencer_down__liquidation_risk_increasing_trade_and_withdraw__revert_sequencer_down(
    system: Client, roles: Roles, liquidatable: Any, keeper: str, others: list[str]
) -> None:
    """# C07: no liquidations and no new risk while the L2 sequencer is down."""
    went_down = now(system.chain) - 10
    install_sequencer(system, roles.owner, down=True, started_at=went_down)
    system.deposit(others[0], "USDC", 50_000, mint=True)
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, liquidatable.trader, "ETH-PERP")
    assert_revert(e.value, "SequencerDown", statusChangedAt=went_down)
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", others[0], liquidatable.maker, wad(1), 2_650 * WAD)
    assert_revert(e.value, "SequencerDown", statusChangedAt=went_down)
    with pytest.raises(ContractRevert) as e:
        system.withdraw(liquidatable.trader, "USDC", 1)
    assert_revert(e.value, "SequencerDown", statusChangedAt=went_down)
    assert system.preview(liquidatable.trader, "ETH-PERP").status_name == "SEQUENCER_DOWN"
    assert system.position(liquidatable.trader, "ETH-PERP") == liquidatable.size_wad


def test_sequencer_in_grace__liquidation_and_risk_increasing_trade__revert_grace_period(
    system: Client, roles: Roles, liquidatable: Any, keeper: str, others: list[str]
) -> None:
    """# C07: just restarted: users get the grace period to add margin before keepers may act."""
    restarted = now(system.chain) - 60
    install_sequencer(system, roles.owner, down=False, started_at=restarted, grace=HEARTBEAT)
    grace = {"restartedAt": restarted, "gracePeriodSeconds": HEARTBEAT}
    system.deposit(others[0], "USDC", 50_000, mint=True)
    with pytest.raises(ContractRevert) as e:
        system.liquidate(keeper, liquidatable.trader, "ETH-PERP")
    assert_revert(e.value, "SequencerGracePeriod", **grace)
    with pytest.raises(ContractRevert) as e:
        system.trade("ETH-PERP", others[0], liquidatable.maker, wad(1), 2_650 * WAD)
    assert_revert(e.value, "SequencerGracePeriod", **grace)
    assert system.preview(liquidatable.trader, "ETH-PERP").status_name == "SEQUENCER_DOWN"


@pytest.mark.parametrize("state", ["down", "grace"])
def test_sequencer_down_or_in_grace__deposit_and_reducing_trade__still_work(
    system: Client, roles: Roles, liquidatable: Any, state: str
) -> None:
    """# C07 / I13: the account can repay (deposit) and reduce while keepers are held back."""
    t = now(system.chain)
    install_sequencer(system, roles.owner, down=state == "down", started_at=t - 60)
    trader = liquidatable.trader
    assert system.deposit(trader, "USDC", 2_000, mint=True) == 2_000 * 10**6
    system.trade("ETH-PERP", trader, liquidatable.maker, -wad(4), 2_650 * WAD)
    assert system.position(trader, "ETH-PERP") == wad(6)
    assert system.position(liquidatable.maker, "ETH-PERP") == -wad(6)


def test_sequencer_back_up_after_grace__liquidation_works(
    system: Client, roles: Roles, liquidatable: Any, keeper: str
) -> None:
    install_sequencer(system, roles.owner, down=False, started_at=now(system.chain) - HEARTBEAT - 1)
    system.liquidate(keeper, liquidatable.trader, "ETH-PERP")
    assert system.position(liquidatable.trader, "ETH-PERP") == liquidatable.size_wad // 2


# ---------------------------------------------------------------------------- A20 no spot price
def test_donation_and_large_trade__do_not_move_the_oracle_price_or_anyones_health(
    system: Client, chain: Chain, open_position: Callable[..., Any], others: list[str]
) -> None:
    """# A20: prices come only from the router's feeds. Tokens sent straight to the clearinghouse
    and a huge trade at the edge of the band (flash-loan style) change neither the prices nor a
    bystander's equity and margins."""
    opened = open_position(size=10, collateral_usd=5_000)
    prices = quotes(system, 0b111)
    health = system.health(opened.trader)

    whale, counterparty = others[0], others[1]
    for symbol, amount in (("USDC", 5_000_000), ("WETH", 1_000), ("WBTC", 50)):
        system.mint(whale, symbol, amount)
        raw = amount * 10 ** system.d.collateral(symbol).decimals
        chain.send(
            system.tokens[symbol].functions.transfer(system.ch.address, raw), whale, "donate"
        )
    system.deposit(whale, "USDC", 2_000_000, mint=True)
    system.deposit(counterparty, "USDC", 2_000_000, mint=True)
    system.trade("ETH-PERP", whale, counterparty, wad(5_000), 3_060 * WAD)  # +2%: the band's edge

    assert quotes(system, 0b111) == prices
    assert system.health(opened.trader) == health
    assert system.preview(opened.trader, "ETH-PERP").price_e18 == 3_000 * WAD


def test_sequencer__uninitialised_round_started_at_zero__reverts_sequencer_down(
    system: Client, roles: Roles
) -> None:
    """An 'up' answer from a round that never started is no proof of uptime (C07)."""
    install_sequencer(system, roles.owner, down=False, started_at=0, grace=0)
    with pytest.raises(ContractRevert) as e:
        router_call(system, "checkSequencer")
    assert e.value.name == "SequencerDown"
    assert e.value.args_by_name == {"statusChangedAt": 0}
    assert system.router.functions.sequencerOk().call() is False
