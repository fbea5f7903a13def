"""The Python health mirror equals the contract's one health function to the wei.

SPEC "Accounting model": `offchain.risk.health.health` mirrors `Clearinghouse._healthAt` exactly.
Random collateral mixes (odd amounts of USDC, WETH, WBTC), random long and short sizes with odd
wei, negative cash, and prices from the bottom to the top of the router's bounds. States are built
cheaply: many accounts per chain state, many price moves per set of positions, every read batched.
Funding included (I26): trades inside the band set a premium, hours pass between price moves, and
the mirror's index is rebuilt from the clearinghouse's funding events (`AccountMirror`).
"""

from __future__ import annotations

import math
import random
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import function_abi_to_4byte_selector
from helpers import _abi_type, read_many, rollback

from offchain.chain import Chain
from offchain.chain.client import MAX_UINT, Client
from offchain.chain.mirror import AccountMirror
from offchain.risk.health import (
    AccountState,
    CollateralParams,
    MarketParams,
    broken_feed_quote,
    health,
)

E18 = 10**18
BPS = 10_000
ASSETS = ("ETH", "BTC", "SOL")
TOKENS = ("USDC", "WETH", "WBTC")
ROUNDS, MOVES_PER_ROUND, ACCOUNTS = 2, 8, 24
OK_STATUS, STALE_STATUS = 0, 4  # IOracleRouter.PriceStatus


# ---------------------------------------------------------------------------- helpers


def _encode(contract: Any, name: str, *args: Any) -> tuple[str, str, list[str]]:
    """(to, calldata, output types), encoded with eth_abi directly: web3's encoder costs
    milliseconds per call, which would dominate a few thousand calls."""
    abi = next(f for f in contract.abi if f.get("type") == "function" and f["name"] == name)
    data = function_abi_to_4byte_selector(abi) + abi_encode(
        [_abi_type(i) for i in abi["inputs"]], list(args)
    )
    return contract.address, "0x" + data.hex(), [_abi_type(o) for o in abi["outputs"]]


def send(chain: Chain, call: tuple[str, str, list[str]], sender: str) -> None:
    """A transaction that must succeed, without web3's pre-flight (setup only)."""
    to, data, _ = call
    provider = chain.w3.provider
    tx = {"from": sender, "to": to, "data": data, "gas": hex(3_000_000)}
    sent = provider.make_request("eth_sendTransaction", [tx])  # type: ignore[arg-type]
    assert "error" not in sent, sent
    receipt = None
    while receipt is None:
        receipt = provider.make_request("eth_getTransactionReceipt", [sent["result"]])["result"]  # type: ignore[arg-type]
    assert receipt["status"] == "0x1", f"setup transaction reverted: {call}"


def random_answer(rng: random.Random, current: int, lowest: int, highest: int) -> int:
    """An 8-decimal feed answer: near the current one, anywhere in [lowest, highest]
    (log-uniform), or at one of those extremes."""
    mode = rng.random()
    if mode < 0.45:
        answer = current * rng.randint(5_000, 15_000) // BPS + rng.randint(0, 99)
    elif mode < 0.9:
        answer = int(10 ** rng.uniform(math.log10(lowest), math.log10(highest)))
    else:
        answer = rng.choice([lowest, highest])
    return min(max(answer, lowest), highest)


def read_params(system: Client) -> dict[str, Any]:
    """The clearinghouse's own collateral and market parameters, and the extreme feed answers
    strictly inside each feed's bounds (I14: a price at a bound is refused)."""
    ch, router = system.ch, system.router
    coll = read_many(system.chain, [_encode(ch, "collateral", i) for i in range(3)])
    mkts = read_many(system.chain, [_encode(ch, "market", i) for i in range(3)])
    feeds = read_many(system.chain, [_encode(router, "feedConfig", a) for a in range(3)])
    assert all(a.feed_decimals == 8 for a in system.d.assets)
    lowest = [f[3] // 10**10 + 1 for f in feeds]
    highest = [-(-f[4] // 10**10) - 1 for f in feeds]
    assert max(lowest) <= 101  # 1e-6 USD
    assert min(highest) >= 10**17 - 1  # 1e9 USD
    return {
        "decimals": [c[3] for c in coll],
        "oracle_asset": [c[1] for c in coll],
        "collaterals": {i: CollateralParams(c[1], c[2], c[3]) for i, c in enumerate(coll) if i},
        "markets": {i: MarketParams(m[0], m[1], m[2]) for i, m in enumerate(mkts)},
        "lowest": lowest,
        "highest": highest,
    }


def read_states(system: Client, accounts: list[str]) -> dict[str, AccountState]:
    ch = system.ch
    reads = []
    for who in accounts:
        reads += [_encode(ch, "account", who)]
        reads += [_encode(ch, "collateralBalance", who, c) for c in (1, 2)]
        reads += [_encode(ch, "position", who, m) for m in range(3)]
        reads += [_encode(ch, "fundingIndexOf", who, m) for m in range(3)]
    values = read_many(system.chain, reads)
    states = {}
    for i, who in enumerate(accounts):
        account, weth, wbtc, *rest = values[i * 9 : i * 9 + 9]
        positions, indices = dict(enumerate(rest[:3])), dict(enumerate(rest[3:]))
        states[who] = AccountState(account[0], {1: weth, 2: wbtc}, positions, indices)
    return states


def funding_indices(system: Client, prices: dict[int, int]) -> dict[int, int]:
    """Each market's funding index as a view at the latest block sees it, rebuilt from events."""
    mirror = AccountMirror(system.chain, system.ch.address, system.d.insurance_fund, system.d.block)
    mirror.sync()
    now = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    return mirror.funding_indices(prices, now)


def set_answers(system: Client, answers: list[int]) -> None:
    for asset, answer in enumerate(answers):
        send(
            system.chain, _encode(system.feeds[ASSETS[asset]], "setAnswer", answer), system.d.owner
        )


def compare(
    system: Client, states: dict[str, AccountState], params: dict[str, Any]
) -> tuple[int, int, int]:
    """Asserts accountHealth and isLiquidatable equal the mirror's for every account at the
    current prices. Returns (accounts compared, of which liquidatable, of which owe funding)."""
    ch = system.ch
    views = [_encode(system.router, "priceE18", a) for a in range(3)]
    for who in states:
        views += [_encode(ch, "accountHealth", who), _encode(ch, "isLiquidatable", who)]
    got = read_many(system.chain, views)
    prices = dict(enumerate(got[:3]))
    funding = funding_indices(system, prices)
    liquidatable = owing = 0
    for i, (who, state) in enumerate(states.items()):
        on_chain, on_chain_liquidatable = got[3 + 2 * i], got[4 + 2 * i]
        mirrored = health(state, params["collaterals"], params["markets"], prices, None, funding)
        expected = (
            mirrored.equity_wad,
            mirrored.initial_margin_wad,
            mirrored.maintenance_margin_wad,
        )
        assert tuple(on_chain) == expected, (who, state, prices)
        assert on_chain_liquidatable == mirrored.liquidatable
        liquidatable += mirrored.liquidatable
        owing += mirrored != health(state, params["collaterals"], params["markets"], prices)
    return len(states), liquidatable, owing


# ---------------------------------------------------------------------------- the tests
def test_health_mirror__random_collateral_positions_and_prices__equals_account_health_to_the_wei(
    system: Client, others: list[str], roles
) -> None:
    chain, ch = system.chain, system.ch
    rng = random.Random(31337)
    accounts, counterparty = others[:ACCOUNTS], others[ACCOUNTS]
    everyone = [*accounts, counterparty, roles.insurance_fund]
    params = read_params(system)
    decimals, oracle_asset = params["decimals"], params["oracle_asset"]
    markets = params["markets"]

    # Wallets once, for every round: tokens minted and approved.
    for who in [*accounts, counterparty]:
        for symbol in TOKENS:
            send(chain, _encode(system.tokens[symbol], "mint", who, 10**30), system.d.owner)
            send(chain, _encode(system.tokens[symbol], "approve", ch.address, MAX_UINT), who)
    send(chain, _encode(ch, "deposit", counterparty, 0, 10**9 * 10**6), counterparty)

    compared = liquidatable = negative_cash = owing = 0
    for _ in range(ROUNDS):
        with rollback(chain):
            entry = read_many(chain, [_encode(system.router, "priceE18", a) for a in range(3)])
            for who in accounts:
                value_wad = 0
                for token in rng.sample(range(3), rng.randint(1, 3)):
                    amount = rng.randint(1, (50_000 * 10**6, 15 * E18, 10**8)[token])
                    send(chain, _encode(ch, "deposit", who, token, amount), who)
                    unit_price = entry[oracle_asset[token]] if token else E18
                    value_wad += amount * 10 ** (18 - decimals[token]) * unit_price // E18
                for market_id in rng.sample(range(3), rng.randint(0, 3)):
                    # Up to 1.3x the collateral's value per market, at a price inside the band.
                    oracle = entry[markets[market_id].oracle_asset]
                    notional = value_wad * rng.randint(1, 13_000) // BPS
                    size = rng.choice([-1, 1]) * (notional * E18 // oracle + rng.randint(1, 10**9))
                    price = oracle + (oracle * 200 // BPS) * rng.randint(-BPS, BPS) // BPS
                    trade = _encode(ch, "settleTrade", market_id, who, counterparty, size, price)
                    send(chain, trade, system.d.matcher)
            # An hour later anyone's settlement accrues each market: the premiums the trades left
            # become rates in force, and from here on funding accrues with every price move.
            rpc(system, "evm_increaseTime", 3_600)
            set_answers(system, [e // 10**10 for e in entry])
            for market_id in range(3):
                poke = _encode(ch, "settleFunding", counterparty, market_id)
                send(chain, poke, system.d.matcher)
            states = read_states(system, everyone)
            negative_cash += sum(s.cash_wad < 0 for s in states.values())

            answers = [e // 10**10 for e in entry]
            for _ in range(MOVES_PER_ROUND):
                answers = [
                    random_answer(rng, answers[a], params["lowest"][a], params["highest"][a])
                    for a in range(3)
                ]
                rpc(system, "evm_increaseTime", rng.randint(0, 4 * 3_600))  # funding accrues
                set_answers(system, answers)
                n, k, f = compare(system, states, params)
                compared, liquidatable, owing = compared + n, liquidatable + k, owing + f
    assert compared >= 400
    # The states were varied, not all alike: some under water, some on borrowed cash.
    assert 0 < liquidatable < compared
    assert negative_cash > 0
    assert owing > compared // 2  # funding moved most accounts' equity (I26)


def test_health_mirror__one_wei_sizes_max_positions_and_bound_prices__equals_account_health(
    system: Client, others: list[str], roles
) -> None:
    # The rounding corners: one-wei shorts (floored toward −inf), one wei of WETH and one satoshi
    # of WBTC, the largest position a market allows, all at the extreme prices in bounds.
    chain, ch = system.chain, system.ch
    params = read_params(system)
    dust, whale, counterparty = others[0], others[1], others[2]
    owner = system.d.owner
    for who, symbol, amount in (
        (dust, "USDC", 1_000_000),
        (dust, "WETH", 1),
        (dust, "WBTC", 1),
        (whale, "USDC", 4_000_000 * 10**6),
        (counterparty, "USDC", 10**9 * 10**6),
    ):
        token = system.tokens[symbol]
        send(chain, _encode(token, "mint", who, amount), owner)
        send(chain, _encode(token, "approve", ch.address, amount), who)
        send(chain, _encode(ch, "deposit", who, TOKENS.index(symbol), amount), who)
    entry = read_many(chain, [_encode(system.router, "priceE18", a) for a in range(3)])
    for market_id in range(3):
        dust_trade = _encode(ch, "settleTrade", market_id, dust, counterparty, -1, entry[market_id])
        send(chain, dust_trade, system.d.matcher)
    max_eth = read_many(chain, [_encode(ch, "market", 0)])[0][6]
    send(
        chain,
        _encode(ch, "settleTrade", 0, whale, counterparty, max_eth, entry[0]),
        system.d.matcher,
    )
    states = read_states(system, [dust, whale, counterparty, roles.insurance_fund])
    assert states[dust].positions == {0: -1, 1: -1, 2: -1}

    lo, hi = params["lowest"], params["highest"]
    price_sets = [
        lo,
        hi,
        [lo[0], hi[1], 123_456_789],
        [hi[0], lo[1], 101],
        [300_000_000_001, 6_000_000_000_007, 15_000_000_013],  # odd cents of a cent
        [99_999_999, 33_333_333, 77_777_777],  # below a dollar: a wei of size is worth < 1 wei
    ]
    compared = 0
    for answers in price_sets:
        set_answers(system, answers)
        compared += compare(system, states, params)[0]
    assert compared == 4 * len(price_sets)


# ---------------------------------------------------------------------------- I18 broken feeds
def rpc(system: Client, method: str, *params: Any) -> None:
    system.chain.w3.provider.make_request(method, list(params))  # type: ignore[arg-type]


def mirrored_quotes(system: Client) -> tuple[dict[int, int], dict[int, int]]:
    """(low, high) by asset as `OracleRouter.quotes` gives them, rebuilt from the router's
    public state with `broken_feed_quote` (SPEC I18)."""
    router = system.router.functions
    now = int(system.chain.w3.eth.get_block("latest")["timestamp"])
    lows: dict[int, int] = {}
    highs: dict[int, int] = {}
    for asset, symbol in enumerate(ASSETS):
        price, status = router.tryPriceE18(asset).call()
        if status == OK_STATUS:
            lows[asset] = highs[asset] = price
            continue
        _, _, drift, lo, hi = router.feedConfig(asset).call()
        base, _, at = router.lastRound(asset).call()
        if status == STALE_STATUS:  # a merely stale round is its own base
            _, answer, _, at, _ = system.feeds[symbol].functions.getRoundData(0).call()
            base = answer * 10**10
        lows[asset], highs[asset] = broken_feed_quote(base, at, now, drift, lo, hi)
    return lows, highs


def break_feeds(system: Client, scenario: str) -> None:
    owner, feeds = system.d.owner, system.feeds
    if scenario == "eth reverts":
        send(system.chain, _encode(feeds["ETH"], "setReverts", True), owner)
    elif scenario == "btc stale two hours":
        rpc(system, "evm_increaseTime", 7_201)
        rpc(system, "evm_mine")
        for symbol in ("ETH", "SOL"):
            answer = feeds[symbol].functions.getRoundData(0).call()[1]
            send(system.chain, _encode(feeds[symbol], "setAnswer", answer), owner)
    elif scenario == "sol zero, eth reverts, five hours":
        send(system.chain, _encode(feeds["SOL"], "setAnswer", 0), owner)
        send(system.chain, _encode(feeds["ETH"], "setReverts", True), owner)
        rpc(system, "evm_increaseTime", 5 * 3_600)
        rpc(system, "evm_mine")
        answer = feeds["BTC"].functions.getRoundData(0).call()[1]
        send(system.chain, _encode(feeds["BTC"], "setAnswer", answer), owner)
    else:  # every feed broken for 30 hours: out of bounds, from the future, reverting
        send(system.chain, _encode(feeds["ETH"], "setAnswer", 10**19), owner)
        send(system.chain, _encode(feeds["SOL"], "setReverts", True), owner)
        rpc(system, "evm_increaseTime", 30 * 3_600)
        rpc(system, "evm_mine")
        now = int(system.chain.w3.eth.get_block("latest")["timestamp"])
        send(system.chain, _encode(feeds["BTC"], "setRound", 60_000 * 10**8, now + 600), owner)


def test_health_mirror__broken_feeds_quoted__equals_account_health_to_the_wei(
    system: Client, others: list[str], roles
) -> None:
    """# I18: with feeds broken in every way and for hours, `accountHealth` still equals the
    mirror to the wei: holdings at the low end of the router's quote, debts and requirements at
    the high end, the quote rebuilt by `broken_feed_quote` from the router's public state."""
    chain, ch = system.chain, system.ch
    rng = random.Random(18)
    accounts, counterparty = others[:12], others[12]
    params = read_params(system)
    for who in [*accounts, counterparty]:
        for symbol in TOKENS:
            send(chain, _encode(system.tokens[symbol], "mint", who, 10**30), system.d.owner)
            send(chain, _encode(system.tokens[symbol], "approve", ch.address, MAX_UINT), who)
    send(chain, _encode(ch, "deposit", counterparty, 0, 10**9 * 10**6), counterparty)
    entry = read_many(chain, [_encode(system.router, "priceE18", a) for a in range(3)])
    for who in accounts:
        send(chain, _encode(ch, "deposit", who, 0, rng.randint(10**9, 10**11)), who)
        send(chain, _encode(ch, "deposit", who, 1, rng.randint(1, 5 * E18)), who)
        send(chain, _encode(ch, "deposit", who, 2, rng.randint(1, 10**7)), who)
        for market_id in rng.sample(range(3), rng.randint(1, 3)):
            oracle = entry[params["markets"][market_id].oracle_asset]
            size = rng.choice([-1, 1]) * (rng.randint(10**3, 10**6) * E18 * E18 // oracle // 100)
            trade = _encode(ch, "settleTrade", market_id, who, counterparty, size, oracle)
            send(chain, trade, system.d.matcher)
    states = read_states(system, [*accounts, roles.insurance_fund])
    scenarios = [
        "eth reverts",
        "btc stale two hours",
        "sol zero, eth reverts, five hours",
        "all broken thirty hours",
    ]
    for scenario in scenarios:
        with rollback(chain):
            break_feeds(system, scenario)
            lows, highs = mirrored_quotes(system)
            assert lows != highs, scenario
            funding = funding_indices(system, lows)
            got = read_many(chain, [_encode(ch, "accountHealth", who) for who in states])
            for (who, state), on_chain in zip(states.items(), got, strict=True):
                mirrored = health(
                    state, params["collaterals"], params["markets"], lows, highs, funding
                )
                expected = (
                    mirrored.equity_wad,
                    mirrored.initial_margin_wad,
                    mirrored.maintenance_margin_wad,
                )
                assert tuple(on_chain) == expected, (scenario, who, state)
