"""`marginsync bench gas`: gas of the clearinghouse's main paths on a real Anvil chain, and the
deployed sizes of the clearinghouse and its module (the limit is 24,576 bytes).

The liquidations, in order, after every feed published a new round (the first state-changing read
of a round records it, SPEC I19: here the insolvent case records A0's round and the 8-position
case the seven others', as the first liquidations after a price move do in a real crash):
* `liquidate_1_position_insolvent`: the first liquidation on the chain, a full close that leaves
  negative equity and resolves it; it also creates the keeper's cash slot and the backstop's
  position in the market (≈ 17k gas each, once per keeper and per market).
* `liquidate_1_position`: a solvent account with one position, partially closed (the common case).
* `liquidate_8_positions`: a solvent account with 8 positions on 8 distinct underlyings, so the
  health check reads 8 feeds: the worst case the default `maxPositionsPerAccount` allows.

`liquidation_parts` splits both solvent cases (verifier wired in) by where the gas goes, from
Anvil's call tracer: the transaction's intrinsic and calldata cost, the oracle router's frame (its
feed calls included, `of_which_feed_calls`), the verifier's frame, and the clearinghouse with its
module (their reads, writes, event and arithmetic, and the cold-account cost of each call).

Funding (IFunding), in two twin markets: in A2 a trade above the index left a premium, so funding
accrues and positions owe it; in A3 every trade was at the index, so the same code runs with
nothing to move (rate 0). Each `funding_overhead_*` is the A2 action less its A3 twin, same shape:
what accruing the index and settling non-zero funding (new slot values and events) costs. The
fixed part that runs in both (the module call on a trade, the funding slots read by health) is
in every figure here and is measured against the contracts before funding in the README.
* `settle_trade_open_with_funding`: a new account opens in A2 an hour after the last accrual:
  the index accrues, the maker settles, the new position's index slot is written from zero.
* `settle_funding`: `settleFunding` of an account in A2 that owes an hour of funding.
* `funding_overhead_trade`, `funding_overhead_liquidation`: as above.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eth_typing import HexStr
from rich.console import Console
from rich.table import Table

from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import MAX_UINT, Client, wad
from offchain.chain.deploy import Roles, deploy_system
from offchain.models import MarketSpec, OracleAssetSpec, SystemSpec
from offchain.settings import Settings

# Goals with the verifier wired in.
GOALS = {
    "liquidate_1_position": 130_000,
    "liquidate_8_positions": 230_000,
    "funding_overhead_trade": 5_000,
    "funding_overhead_liquidation": 5_000,
}
# Aave v3 `liquidationCall`, average in its own test report, for comparison.
AAVE_V3_LIQUIDATION_AVG = 265_700
CODE_SIZE_LIMIT = 24_576  # EIP-170
TX_BASE_GAS = 21_000
LIQUIDATION_PARTS = ("liquidate_1_position", "liquidate_8_positions")


def bench_spec(markets: int = 8, *, verifier: bool = True) -> SystemSpec:
    symbols = [f"A{i}" for i in range(markets)]
    return SystemSpec(
        attestation=SystemSpec().attestation if verifier else None,
        assets=tuple(OracleAssetSpec(symbol=s, price_usd=100.0) for s in symbols),
        collaterals=SystemSpec().collaterals[:1],
        markets=tuple(
            MarketSpec(
                symbol=f"{s}-PERP",
                underlying=s,
                im_bps=1_000,
                mm_bps=650,
                liquidation_penalty_bps=300,
                price_band_bps=200,
                max_position_size=1e9,
                open_interest_cap=1e12,
            )
            for s in symbols
        ),
    )


def measure(
    client: Client, accounts: list[str], receipts: dict[str, Any] | None = None
) -> dict[str, int]:
    """Gas used per action; `accounts` are unlocked and unused. The receipts of the cases in
    `LIQUIDATION_PARTS` go to `receipts` when given."""
    gas: dict[str, int] = {}
    kept: dict[str, Any] = {} if receipts is None else receipts
    maker, trader, trader8, keeper, solvent = accounts[:5]

    def used(receipt: Any) -> int:
        return int(receipt["gasUsed"])

    client.mint(trader, "USDC", 2_000_000)
    client.chain.send(
        client.tokens["USDC"].functions.approve(client.ch.address, MAX_UINT), trader, "approve"
    )
    gas["deposit_first"] = used(
        client.chain.send(client.ch.functions.deposit(trader, 0, 1_000 * 10**6), trader, "deposit")
    )
    gas["deposit"] = used(
        client.chain.send(client.ch.functions.deposit(trader, 0, 1_000 * 10**6), trader, "deposit")
    )
    gas["withdraw_no_positions"] = used(client.withdraw(trader, "USDC", 500))

    client.deposit(maker, "USDC", 100_000_000, mint=True)
    client.deposit(trader8, "USDC", 8_000, mint=True)
    client.deposit(solvent, "USDC", 1_500, mint=True)
    price = client.price_e18("A0")
    gas["settle_trade_open"] = used(client.trade("A0-PERP", trader, maker, wad(140), price))
    gas["settle_trade_increase"] = used(client.trade("A0-PERP", trader, maker, wad(1), price))
    gas["settle_trade_reduce"] = used(client.trade("A0-PERP", trader, maker, -wad(1), price))
    gas["withdraw_with_position"] = used(client.withdraw(trader, "USDC", 50))

    for m in client.d.markets:
        client.trade(
            m.id, trader8, maker, wad(70), client.price_e18(client.d.asset(m.oracle_asset).symbol)
        )
    client.trade("A0-PERP", solvent, maker, wad(100), price)
    # A 10% fall: `trader` (1,450 USD on 14,000 of notional) ends at −328 USD after a full
    # close; `solvent` (1,500 USD on 10,000: equity 500 < MM 585) and `trader8` (8,000 USD on
    # 56,000) are closed by half and stay solvent.
    for a in client.d.assets:
        client.set_price(a.symbol, 90)
    gas["liquidate_1_position_insolvent"] = used(client.liquidate(keeper, trader, "A0-PERP"))
    kept["liquidate_1_position"] = client.liquidate(keeper, solvent, "A0-PERP")
    kept["liquidate_8_positions"] = client.liquidate(keeper, trader8, "A0-PERP")
    for case in LIQUIDATION_PARTS:
        gas[case] = used(kept[case])
    gas["health_view_8_positions"] = int(client.ch.functions.accountHealth(trader8).estimate_gas())
    return gas


def gas_parts(client: Client, receipt: Any) -> dict[str, int]:
    """Where one clearinghouse transaction's gas goes (see the module's docstring)."""
    chain = client.chain
    tx_hash = HexStr("0x" + bytes(receipt["transactionHash"]).hex())
    trace = chain.w3.provider.make_request(
        "debug_traceTransaction",  # type: ignore[arg-type]
        [tx_hash, {"tracer": "callTracer"}],
    )["result"]
    data = bytes(chain.w3.eth.get_transaction(tx_hash)["input"])
    calldata = sum(4 if byte == 0 else 16 for byte in data)
    frames = {
        client.router.address.lower(): "oracle_router",
        client.ch.functions.attestor().call().lower(): "verifier",
    }
    parts = {"intrinsic_and_calldata": TX_BASE_GAS + calldata, "oracle_router": 0, "verifier": 0}
    feeds = 0

    def walk(frame: dict[str, Any]) -> None:
        nonlocal feeds
        for call in frame.get("calls", []):
            name = frames.get(call["to"].lower())
            if name is None:
                walk(call)
                continue
            parts[name] += int(call["gasUsed"], 16)
            if name == "oracle_router":
                feeds += sum(int(c["gasUsed"], 16) for c in call.get("calls", []))

    walk(trace)
    total = int(receipt["gasUsed"])
    parts["clearinghouse_and_module"] = total - sum(parts.values())
    parts["of_which_feed_calls"] = feeds
    parts["total"] = total
    return parts


def measure_funding(client: Client, maker: str, keeper: str, accounts: list[str]) -> dict[str, int]:
    """Funding's gas, in the twin markets A2 (funding due) and A3 (none); see the module doc."""
    payer, twin, holder, newcomer, first_payer, first_twin = accounts[:6]
    client.deposit(maker, "USDC", 10_000_000, mint=True)  # trades in A2 and A3 only
    gas: dict[str, int] = {}

    def used(receipt: Any) -> int:
        return int(receipt["gasUsed"])

    def later(hours: int, price: int = 90) -> None:
        # Time passes; every feed publishes again (its heartbeat is an hour), and the new rounds
        # are recorded (I19) before anything is measured, so no twin pays for the other's.
        client.chain.w3.provider.make_request("evm_increaseTime", [hours * 3_600])  # type: ignore[arg-type]
        for a in client.d.assets:
            client.set_price(a.symbol, price if a.symbol in ("A2", "A3") else 90)
        every = (1 << len(client.d.assets)) - 1
        client.chain.send(client.router.functions.readQuotes(every, 0), maker, "record rounds")

    def settle_funding(account: str, market: str) -> Any:
        fn = client.ch.functions.settleFunding(account, client.d.market(market).id)
        return client.chain.send(fn, maker, "settle funding")

    index = client.price_e18("A2")
    above = index * 101 // 100  # A2 trades 1% above the index, so its premium stands
    # The twin pays at the open what the payer's premium costs it, so both fall alike.
    for who, usd in (
        (payer, 1_100),
        (twin, 1_010),
        (first_payer, 1_100),
        (first_twin, 1_010),
        (holder, 1_100),
        (newcomer, 1_100),
    ):
        client.deposit(who, "USDC", usd, mint=True)
    client.trade("A2-PERP", holder, maker, wad(10), above)
    later(1)
    settle_funding(maker, "A2-PERP")  # the premium becomes the rate in force (1% per 8 h)
    later(1)  # A2's index has moved: positions opened from now on start at a non-zero index
    for p, t in ((payer, twin), (first_payer, first_twin)):
        client.trade("A2-PERP", p, maker, wad(100), above)
        client.trade("A3-PERP", t, maker, wad(100), index)
    later(1)
    gas["settle_trade_open_with_funding"] = used(
        client.trade("A2-PERP", newcomer, maker, wad(1), above)
    )
    later(1)
    with_funding = used(client.trade("A2-PERP", payer, maker, wad(1), above))
    gas["funding_overhead_trade"] = with_funding - used(
        client.trade("A3-PERP", twin, maker, wad(1), index)
    )
    gas["settle_funding"] = used(settle_funding(newcomer, "A2-PERP"))
    later(1, price=85)  # the twins fall below maintenance, partially closed alike
    # The first liquidation in a market opens the backstop's position there (its index slot is
    # written from zero, ≈ 20k once per market): not measured.
    client.liquidate(keeper, first_payer, "A2-PERP")
    client.liquidate(keeper, first_twin, "A3-PERP")
    later(1, price=85)
    with_funding = used(client.liquidate(keeper, payer, "A2-PERP"))
    gas["funding_overhead_liquidation"] = with_funding - used(
        client.liquidate(keeper, twin, "A3-PERP")
    )
    return gas


def code_sizes(client: Client) -> dict[str, int]:
    """Deployed bytecode sizes in bytes of the clearinghouse and its module."""
    module = client.ch.functions.liquidationModule().call()
    funding = client.ch.functions.fundingModule().call()
    return {
        "clearinghouse_bytes": len(client.chain.w3.eth.get_code(client.ch.address)),
        "liquidation_module_bytes": len(client.chain.w3.eth.get_code(module)),
        "funding_module_bytes": len(client.chain.w3.eth.get_code(funding)),
    }


def run(json_path: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    # Static margin only (the Gen 2 contracts), then with the attestation verifier wired in and
    # no attestation in force: the price of asking the verifier from every health check.
    configs = {"static": False, "with_verifier": True}
    gas_by: dict[str, dict[str, int]] = {}
    sizes: dict[str, int] = {}
    parts: dict[str, dict[str, int]] = {}
    for label, verifier in configs.items():
        console.print(f"bench gas ({label}): starting Anvil and deploying an 8-market system…")
        with Anvil(accounts=16) as node:
            chain = Chain.connect(Settings(rpc_url=node.url))
            d = deploy_system(
                chain, bench_spec(verifier=verifier), Roles.from_accounts(chain.accounts)
            )
            client = Client(chain, d)
            receipts: dict[str, Any] = {}
            gas_by[label] = measure(client, chain.accounts[4:9], receipts)
            gas_by[label] |= measure_funding(
                client, chain.accounts[15], chain.accounts[7], chain.accounts[9:15]
            )
            sizes = code_sizes(client)
            if verifier:
                parts = {case: gas_parts(client, receipts[case]) for case in LIQUIDATION_PARTS}
    gas = gas_by["static"]
    result: dict[str, Any] = {
        "gas": gas,
        "gas_with_verifier": gas_by["with_verifier"],
        **sizes,
        "code_size_limit_bytes": CODE_SIZE_LIMIT,
        "goals": GOALS,
        "goals_met": {k: gas[k] <= v for k, v in GOALS.items()},
        "goals_met_with_verifier": {k: gas_by["with_verifier"][k] <= v for k, v in GOALS.items()},
        "reference": {"aave_v3_liquidationCall_avg": AAVE_V3_LIQUIDATION_AVG},
        "liquidation_parts": parts,
    }
    table = Table(title="gas per transaction (Anvil, solc 0.8.37, optimizer 200 runs)")
    table.add_column("action")
    table.add_column("static", justify="right")
    table.add_column("with verifier", justify="right")
    table.add_column("goal", justify="right")

    def mark(value: int, goal: int | None) -> str:
        return "" if goal is None else (" ✓" if value <= goal else " ✗")

    for action, value in gas.items():
        goal = GOALS.get(action)
        other = gas_by["with_verifier"][action]
        table.add_row(
            action,
            f"{value:,}{mark(value, goal)}",
            f"{other:,}{mark(other, goal)}",
            "" if goal is None else f"≤ {goal:,}",
        )
    console.print(table)
    console.print(f"reference: Aave v3 liquidationCall averages ≈ {AAVE_V3_LIQUIDATION_AVG:,} gas")
    for case, split in parts.items():
        shares = ", ".join(f"{part} {value:,}" for part, value in split.items())
        console.print(f"{case} (with verifier): {shares}")
    console.print(
        f"deployed bytes: clearinghouse {sizes['clearinghouse_bytes']:,}, liquidation module "
        f"{sizes['liquidation_module_bytes']:,}, funding module "
        f"{sizes['funding_module_bytes']:,} (limit {CODE_SIZE_LIMIT:,})"
    )
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_path}")
    return result
