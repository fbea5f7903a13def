"""The keeper under load: E01 cascades, E03 racing keepers, E08 a backlog after an oracle outage.

Hundreds of accounts are opened in JSON-RPC batches (`open_many`); the 1,000–5,000-account
cascade runs under `make soak` only.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from test_keeper_hardening import (
    KEEPER_INDEX,
    USDC,
    FlakyRpc,
    calldata,
    drain,
    make_keeper,
    manual_mining,
    mine,
    open_many,
    rpc,
    set_base_fee,
    synthetic_accounts,
)

from offchain.chain.client import Client, wad
from offchain.keeper import Keeper, KeeperConfig, Liquidation
from offchain.models import WAD

GWEI = 10**9
BLOCK_GAS_LIMIT = 30_000_000
GAS_BUDGET = BLOCK_GAS_LIMIT * 2 // 100


def liquidatable_on_chain(system: Client, accounts: list[str]) -> list[str]:
    """Accounts `isLiquidatable` says yes for, read in JSON-RPC batches."""
    ch = system.ch
    signature = "isLiquidatable(address)"
    out: list[str] = []
    for start in range(0, len(accounts), 500):
        chunk = accounts[start : start + 500]
        calls = [
            ("eth_call", [{"to": ch.address, "data": calldata(signature, a)}, "latest"])
            for a in chunk
        ]
        answers = system.chain.w3.provider.make_batch_request(calls)  # type: ignore[attr-defined]
        out += [a for a, r in zip(chunk, answers, strict=True) if int(r["result"], 16)]
    return out


def cascade_book(
    system: Client, makers: list[str], count: int, seed: int
) -> tuple[list[str], list[str], list[str]]:
    """`count` longs in three clusters of liquidation price: ~2,450–2,650 (under water after
    −20 %), ~2,100–2,300 (after a further −15 %), ~1,500 (healthy throughout). Returns the
    three clusters' accounts."""
    rng = random.Random(seed)
    accounts = synthetic_accounts(f"cascade-{seed}", count)
    first, second = accounts[: count * 2 // 5], accounts[count * 2 // 5 : count * 4 // 5]
    healthy = accounts[count * 4 // 5 :]
    rows: list[tuple[str, int, int]] = []
    for group, (low, high) in (
        (first, (2_450, 2_650)),
        (second, (2_100, 2_300)),
        (healthy, (1_450, 1_550)),
    ):
        for a in group:
            size_eth = rng.uniform(0.5, 3.0)
            liquidation_price = rng.uniform(low, high)
            # Long: equity < MM at P ⇔ c + (P − 3000) < 0.065 P, per ETH of size.
            per_eth = 3_000 - 0.935 * liquidation_price
            rows.append((a, int(per_eth * size_eth * USDC), int(size_eth * WAD)))
    per_maker = -(-len(rows) // len(makers))
    for i, maker in enumerate(makers):
        chunk = rows[i * per_maker : (i + 1) * per_maker]
        for start in range(0, len(chunk), 500):
            open_many(system, maker, chunk[start : start + 500])
    return first, second, healthy


def run_cascade(system: Client, makers: list[str], count: int, max_per_round: int) -> None:
    first, second, healthy = cascade_book(system, makers, count, seed=count)
    # The setup's full blocks pushed the base fee up; this test is about throughput, not fees.
    set_base_fee(system, GWEI)
    k = make_keeper(system, config=KeeperConfig(max_per_round=max_per_round, gas_budget=GAS_BUDGET))
    everyone = first + second + healthy
    liquidated: list[Liquidation] = []
    for price, hit in ((2_400, first), (2_040, first + second)):
        system.set_price("ETH", price)
        under = liquidatable_on_chain(system, everyone)
        assert set(under) <= set(hit)
        assert len(under) > len(hit) // 2
        done, rounds = drain(k, max_rounds=200)
        liquidated += done
        assert liquidatable_on_chain(system, everyone) == []
        # Staged but never idle while a backlog waits: each round takes `max_per_round` until
        # the backlog is gone, and one account's successive partial closes need a round each.
        per_account = Counter(d.account for d in done)
        assert rounds <= -(-len(done) // max_per_round) + max(per_account.values()) + 1
    assert not {d.account for d in liquidated} & set(healthy)
    assert all(d.gas_used <= GAS_BUDGET for d in liquidated)
    # Every transaction landed within the gas limit the keeper gave it, and none reverted.
    rows = k.sender.journal.rows()
    assert all(r.state.value == "mined" for r in rows), {r.state for r in rows}
    for d in random.Random(0).sample(liquidated, min(50, len(liquidated))):
        tx = system.chain.w3.eth.get_transaction(d.tx_hash)  # type: ignore[arg-type]
        assert d.gas_used <= tx["gas"] <= GAS_BUDGET


# ---------------------------------------------------------------------------- E01
def test_cascade_of_300_accounts_clears_in_bounded_rounds_within_gas_budgets(
    system: Client, maker: str
) -> None:
    run_cascade(system, [maker], 300, max_per_round=50)


@pytest.mark.soak
@pytest.mark.parametrize("count", [1_000, 5_000])
def test_cascade_of_thousands_of_accounts_clears_in_bounded_rounds_within_gas_budgets(
    system: Client, maker: str, others: list[str], count: int
) -> None:
    run_cascade(system, [maker, *others[10:19]], count, max_per_round=200)


# ---------------------------------------------------------------------------- E08
def test_oracle_outage_then_a_30pct_move__liquidations_are_staged_deepest_first(
    system: Client, maker: str
) -> None:
    per_eth = [350 + 23 * i for i in range(30)]  # all under MM at 2,100; deepest first here
    accounts = synthetic_accounts("e08", len(per_eth))
    open_many(
        system,
        maker,
        [(a, c * 10 * USDC, wad(10)) for a, c in zip(accounts, per_eth, strict=False)],
    )
    k = make_keeper(system, config=KeeperConfig(max_per_round=5, receipt_timeout_s=0))
    assert k.step() == []
    assert k.last_round.candidates == 0

    # An hour without a round: the feed is stale, nothing can be priced, nothing is sent.
    rpc(system, "evm_increaseTime", 3_601)
    mine(system)
    assert k.step() == []
    assert k.last_round.sent == 0
    assert k.last_round.candidates == 0

    system.set_price("ETH", 2_100)
    health = {a: system.health(a) for a in accounts}
    deepest = sorted(
        accounts, key=lambda a: health[a].equity_wad - health[a].maintenance_margin_wad
    )
    start_block = system.chain.w3.eth.block_number
    per_block: list[list[str]] = []
    with manual_mining(system):
        for _ in range(20):
            k.step()
            sent = [p.purpose.split(":")[1] for p in k.sender.in_flight]
            if not sent:
                break
            per_block.append(sent)
            mine(system)
    assert per_block[0] == deepest[:5]
    assert all(len(b) <= 5 for b in per_block)
    assert len(per_block) <= len(accounts) // 5 + 3
    assert liquidatable_on_chain(system, accounts) == []
    events = system.chain.get_events(
        [system.d.clearinghouse], start_block + 1, system.chain.w3.eth.block_number
    )
    blocks: dict[int, int] = {}
    for e in events:
        if e.name == "Liquidate":
            blocks[e.block] = blocks.get(e.block, 0) + 1
    assert max(blocks.values()) <= 5


# ---------------------------------------------------------------------------- E03
def account_states(system: Client, accounts: list[str]) -> dict[str, tuple[int, int, int]]:
    return {
        a: (
            system.account(a)["cash_wad"],
            system.account(a)["nonce"],
            system.position(a, "ETH-PERP"),
        )
        for a in accounts
    }


def test_five_keepers_with_random_latency__at_most_one_liquidation_per_account_state(
    system: Client, maker: str
) -> None:
    rng = random.Random(3)
    accounts = synthetic_accounts("e03", 20)
    rows = []
    for a in accounts:
        size = rng.uniform(1.0, 4.0)
        rows.append((a, int(rng.uniform(300, 380) * size * USDC), int(size * WAD)))
    open_many(system, maker, rows)
    system.set_price("ETH", 2_800)  # all under MM, none deep, none insolvent after penalties
    indices = [KEEPER_INDEX, *range(20, 24)]
    fund = system.d.insurance_fund

    # Reference: one keeper alone, from the same state.
    snapshot = rpc(system, "evm_snapshot")
    alone = make_keeper(system)
    drain(alone, max_rounds=20)
    reference = account_states(system, [*accounts, fund])
    reference_rewards = system.account(alone.address)["cash_wad"]
    rpc(system, "evm_revert", snapshot)

    start_block = system.chain.w3.eth.block_number
    upstream = system.chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    with FlakyRpc(upstream, delay_s=lambda: random.uniform(0.0, 0.01)) as proxy:
        keepers = [make_keeper(system, i, rpc_url=proxy.url) for i in indices]
        errors: list[BaseException] = []

        def race(k: Keeper) -> None:
            try:
                idle = 0
                for _ in range(40):
                    k.step()
                    idle = idle + 1 if k.last_round.candidates == 0 else 0
                    if idle == 2:
                        return
            except BaseException as exc:  # surfaced below: a thread's failure fails the test
                errors.append(exc)

        threads = [threading.Thread(target=race, args=(k,)) for k in keepers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    assert not errors, errors

    # The state is what one keeper alone leaves: whoever won each race, the contract decided.
    assert account_states(system, [*accounts, fund]) == reference
    assert sum(system.account(k.address)["cash_wad"] for k in keepers) == reference_rewards
    events = system.chain.get_events(
        [system.d.clearinghouse], start_block + 1, system.chain.w3.eth.block_number
    )
    liquidations = [e for e in events if e.name == "Liquidate"]
    states = [(e.args["account"], e.args["accountNonce"]) for e in liquidations]
    assert len(states) == len(set(states))  # ≤ 1 successful liquidation per account state
    # Losers failed cheaply: in the pre-flight (nothing sent) or on the first checks on-chain.
    reverted = []
    for k in keepers:
        for row in k.sender.journal.rows():
            if row.state.value == "reverted":
                receipt = system.chain.w3.eth.get_transaction_receipt(row.mined_hash)  # type: ignore[arg-type]
                reverted.append(int(receipt["gasUsed"]))
    assert all(gas < 100_000 for gas in reverted), reverted
    assert len({e.args["keeper"] for e in liquidations}) > 1  # it was a race
