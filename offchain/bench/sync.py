"""`marginsync bench sync`: the engine on a real Anvil chain (automine).

Figures (all printed, none asserted):
  (a) tick-to-chain latency: from a price tick entering the engine (sanitiser) to the receipt
      of the batch that puts the new requirement in force, p50/p99 over 200 ticks, for ticks that
      affect 1, 100 and 1,000 accounts. Each group holds positions in its own market against the
      insurance fund (a backstop the engine never attests), so a ±1.5% tick on that market's
      asset moves exactly the group's requirements; the selection threshold is 10 bps, so each
      of them is re-attested on every tick and the other groups (whose volatility only decays
      between ticks) are not. The oracle feed is set to the same price before the tick (not
      timed), so the attestation is in force when mined;
  (b) gas per attested account in batches of 100 whose accounts already hold an attestation
      (their slots are non-zero), and the quorum overhead for k = 1, 3 and 5 signatures, on
      verifiers deployed with those thresholds, on a second Anvil that records opcode traces:
      for k = 3 the marginal account is split into parts (`gas.k3.budget`: calldata priced
      from the transactions' bytes, storage, event, hashing, memory and the rest from the
      opcode traces of the 100- and 1-entry batches) against the floor (storage + calldata),
      with the batch's fixed cost (quorum, record, base) amortised over 100 accounts;
  (c) engine throughput with 10,000 accounts in the mirror (synthetic accounts added to the
      mirror directly, not created on-chain): price updates/s, each update being every asset
      printed by three sources (9 ticks through the sanitiser) and one full pass (mirror poll,
      risk and policy over all accounts), with nothing selected for submission;
  (d) the Gen-2 comparison: gas to check one account's health on-chain (`accountHealth`,
      estimate_gas − 21,000) with 1 and 8 positions under static margin, and with 1 position
      under an attestation in force (the Gen-3 check).
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from web3.types import RPCEndpoint

from offchain.attest import Batch, Domain, Entry, address_of, sign
from offchain.bench.gas import bench_spec
from offchain.chain import Chain, checksum
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles, deploy_system, dev_engine_keys
from offchain.chain.mirror import MirroredAccount
from offchain.feeds import SanitizerConfig, Tick
from offchain.models import AttestationSpec, SystemSpec
from offchain.settings import Settings
from offchain.sync import Engine, EngineConfig, dev_submitter_key
from offchain.sync.keys import LocalSigner

GOALS = {
    "p99_ms_100_accounts": 250.0,
    "p99_ms_1000_accounts": 1_000.0,
    "gas_per_account": 6_500,
    "gas_first_write_per_account": 15_000,
}
# Opcode families of the budget; every other opcode is "execution" (stack, jumps, arithmetic,
# calldata reads). A call's trace cost includes the gas it forwards, so calls are left out: the
# only call is the ecrecover precompile, a fixed cost of the batch.
_PARTS = {
    "storage": ("SLOAD", "SSTORE"),
    "event": ("LOG0", "LOG1", "LOG2", "LOG3", "LOG4"),
    "hashing": ("KECCAK256",),
    "memory": ("MLOAD", "MSTORE", "MSTORE8", "MCOPY", "CALLDATACOPY"),
}
_CALLS = ("CALL", "STATICCALL", "DELEGATECALL", "CALLCODE")
TICKS = int(os.environ.get("MARGINSYNC_BENCH_SYNC_TICKS", "200"))
GROUPS = {
    "SOL": (1, "SOL-PERP", "20"),
    "BTC": (100, "BTC-PERP", "0.05"),
    "ETH": (1_000, "ETH-PERP", "1"),
}
_SOURCES = ("a", "b", "c")


def _populate(client: Client, size_by_group: dict[str, tuple[int, str, str]]) -> None:
    """Accounts (fresh addresses, no keys needed) funded by the owner and trading against the
    insurance fund through the matcher; raw unlocked sends without pre-flight, for speed."""
    d, ch = client.d, client.ch
    owner = checksum(d.owner)
    total = sum(n for n, _, _ in size_by_group.values())
    client.mint(owner, "USDC", 20_000 * total + 50_000_000)
    client.chain.send(client.tokens["USDC"].functions.approve(ch.address, 2**255), owner, "approve")
    client.chain.send(
        ch.functions.deposit(checksum(d.insurance_fund), 0, 50_000_000 * 10**6), owner, "fund"
    )
    for symbol, (n, market, size) in size_by_group.items():
        m = d.market(market)
        price = client.price_e18(symbol)
        for _ in range(n):
            account = checksum("0x" + os.urandom(20).hex())
            ch.functions.deposit(account, 0, 20_000 * 10**6).transact(
                {"from": owner, "gas": 200_000}
            )
            ch.functions.settleTrade(
                m.id, account, checksum(d.insurance_fund), wad(size), price
            ).transact({"from": checksum(d.matcher), "gas": 400_000})


def _percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values_ms)
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "ticks": float(arr.size),
    }


def _latency(engine: Engine, client: Client, symbol: str, n_ticks: int) -> dict[str, float]:
    """Tick → receipt for `n_ticks` alternating ±1.5% moves of `symbol` (beyond the verifier's
    1% price band, so the previous attestation lapses and every account of the group needs a new
    one)."""
    base = client.price_e18(symbol) / 1e18
    latencies_ms: list[float] = []
    applied: list[int] = []
    for i in range(n_ticks + 2):  # two warm-up ticks are not counted
        price = round(base * (1.015 if i % 2 == 0 else 0.985), 6)
        client.set_price(symbol, price)
        now = time.time()
        entered = time.time()
        for k, src in enumerate(_SOURCES):
            engine.ingest(Tick(symbol, price, now + 1e-4 * k, src), entered_at_s=entered)
        report = engine.step()
        done = [o for o in report.outcomes if o.state == "confirmed"]
        if len(done) != len(report.rows) or not done:
            raise RuntimeError(f"tick {i} on {symbol}: {report.summary()}")
        if i >= 2:
            latencies_ms.append((max(o.done_at for o in done) - entered) * 1e3)
            applied.append(sum(o.applied for o in done))
    out = _percentiles(latencies_ms)
    out["accounts_per_tick"] = float(statistics.median(applied))
    return out


def _calldata_gas(data: bytes) -> int:
    return sum(4 if byte == 0 else 16 for byte in data)


def _opcode_gas(chain: Chain, tx_hash: bytes) -> dict[str, int]:
    """Gas by budget part from the transaction's opcode trace (Anvil `--steps-tracing`)."""
    trace = chain.w3.provider.make_request(
        RPCEndpoint("debug_traceTransaction"), ["0x" + tx_hash.hex(), {"disableStack": True}]
    )["result"]
    family = {op: part for part, ops in _PARTS.items() for op in ops}
    out = dict.fromkeys([*_PARTS, "execution"], 0)
    for step in trace["structLogs"]:
        if step["op"] not in _CALLS:
            out[family.get(step["op"], "execution")] += int(step["gasCost"])
    return out


def _budget(
    batch_100: dict[str, Any], batch_1: dict[str, Any], k: int, per_sig: float
) -> dict[str, float]:
    """The marginal account of a 100-entry batch over a 1-entry one, split into parts."""
    parts: dict[str, float] = {
        "calldata": (batch_100["calldata_gas"] - batch_1["calldata_gas"]) / 99,
        **{
            name: (batch_100["opcodes"][name] - batch_1["opcodes"][name]) / 99
            for name in batch_100["opcodes"]
        },
    }
    marginal = (batch_100["gas"] - batch_1["gas"]) / 99
    floor = parts["storage"] + parts["calldata"]
    fixed = batch_1["gas"] - marginal
    return {
        **parts,
        "unattributed": marginal - sum(parts.values()),
        "marginal": marginal,
        "floor": floor,
        "above_floor": marginal - floor,
        "fixed_per_batch": fixed,
        "fixed_amortised_per_account_batch_100": fixed / 100,
        "quorum_amortised_per_account_batch_100": k * per_sig / 100,
    }


def _gas_per_account(eth_price_e18: int) -> dict[str, Any]:
    keys = dev_engine_keys(5)
    signers = sorted((address_of(bytes.fromhex(k[2:])) for k in keys), key=str.lower)
    params = AttestationSpec(max_batch_size=1_000).params_tuple()
    accounts = [checksum("0x" + os.urandom(20).hex()) for _ in range(100)]
    out: dict[str, Any] = {}
    traced: dict[int, dict[str, dict[str, Any]]] = {}
    with Anvil(accounts=2, extra_args=("--steps-tracing",)) as node:
        chain = Chain.connect(Settings(rpc_url=node.url))
        owner = chain.accounts[0]
        for k in (1, 3, 5):
            verifier = chain.deploy("AttestationVerifier", owner, signers, k, params, sender=owner)
            domain = Domain(chain.chain_id, verifier.address)
            now = int(chain.w3.eth.get_block("latest")["timestamp"])

            def submit(
                seq: int,
                who: Sequence[str],
                bump: int,
                verifier: Any = verifier,
                domain: Domain = domain,
                k: int = k,
                now: int = now,
            ) -> dict[str, Any]:
                batch = Batch(
                    seq,
                    now,
                    1,
                    (eth_price_e18,),
                    tuple(Entry(a, 1, 2_000_000_000 + bump, 1_000_000_000 + bump) for a in who),
                )
                args = [batch.as_tuple(), sign(batch, domain, keys[:k])]
                receipt = chain.send(verifier.functions.submit(*args), owner, "gas")
                data = bytes.fromhex(verifier.encode_abi("submit", args=args)[2:])
                tx_hash = bytes(receipt["transactionHash"])
                return {
                    "gas": int(receipt["gasUsed"]),
                    "calldata_gas": _calldata_gas(data),
                    "opcodes": _opcode_gas(chain, tx_hash) if k == 3 else {},
                }

            first_100 = submit(1, accounts, 0)  # fresh slots (zero → non-zero)
            existing_100 = submit(2, accounts, 1)  # the same accounts again: slots already set
            existing_1 = submit(3, accounts[:1], 2)
            first_1 = submit(4, [checksum("0x" + os.urandom(20).hex())], 3)
            traced[k] = {"existing_100": existing_100, "existing_1": existing_1}
            out[f"k{k}"] = {
                "batch_100_fresh_slots": first_100["gas"],
                "batch_100_existing_slots": existing_100["gas"],
                "per_account_existing": existing_100["gas"] / 100,
                "marginal_per_account_existing": (existing_100["gas"] - existing_1["gas"]) / 99,
                "batch_1_existing": existing_1["gas"],
                "batch_1_fresh_slot": first_1["gas"],
                "marginal_per_account_fresh": (first_100["gas"] - first_1["gas"]) / 99,
            }
    for k in (3, 5):
        out[f"k{k}"]["quorum_overhead_vs_k1"] = (
            out[f"k{k}"]["batch_100_existing_slots"] - out["k1"]["batch_100_existing_slots"]
        )
        out[f"k{k}"]["overhead_per_signature"] = out[f"k{k}"]["quorum_overhead_vs_k1"] / (k - 1)
    out["k3"]["budget"] = _budget(
        traced[3]["existing_100"],
        traced[3]["existing_1"],
        3,
        out["k3"]["overhead_per_signature"],
    )
    return out


def _throughput(
    engine: Engine, base: dict[str, float], n_accounts: int, n_updates: int
) -> dict[str, float]:
    """Price updates/s with `n_accounts` synthetic accounts added to the mirror (not on-chain).
    One update = every asset printed by three sources (9 ticks) and one full pass."""
    mirror = engine.mirror
    rng = np.random.default_rng(7)
    for i in range(n_accounts):
        acct = MirroredAccount()
        acct.cash_wad = 10_000 * 10**18
        acct.nonce = 1
        for market in rng.choice(3, size=int(rng.integers(1, 4)), replace=False):
            acct.positions[int(market)] = int(rng.normal(0, 5) * 10**17) or 10**17
        mirror.accounts[f"0x{i:040x}"] = acct
    mirror.state_version += 1
    passes: list[float] = []
    started = time.perf_counter()
    for i in range(n_updates):
        now = time.time()
        factor = 1.001 if i % 2 == 0 else 0.999
        t0 = time.perf_counter()
        for symbol, price in base.items():
            for k, src in enumerate(_SOURCES):
                engine.ingest(Tick(symbol, price * factor, now + 1e-4 * k, src))
        report = engine.run_pass()
        passes.append((time.perf_counter() - t0) * 1e3)
        if report.rows:
            raise RuntimeError("throughput pass selected accounts; raise the threshold")
    elapsed = time.perf_counter() - started
    return {
        "accounts": float(len(engine.book.accounts)),
        "updates_per_s": n_updates / elapsed,
        "source_ticks_per_s": n_updates * len(base) * len(_SOURCES) / elapsed,
        "p50_pass_ms": float(np.percentile(passes, 50)),
        "p99_pass_ms": float(np.percentile(passes, 99)),
    }


def _health_gas(chain: Chain, client: Client, attested_account: str) -> dict[str, int]:
    """Gen 2: the static health check (8-market system, no verifier); Gen 3: the same call
    when an attestation is in force."""
    roles = Roles.from_accounts(chain.accounts)
    spec = bench_spec(8).model_copy(update={"attestation": None})
    d8 = deploy_system(chain, spec, roles)
    c8 = Client(chain, d8)
    one, eight, maker = (checksum("0x" + os.urandom(20).hex()) for _ in range(3))
    owner = checksum(d8.owner)
    c8.mint(owner, "USDC", 100_000_000)
    chain.send(c8.tokens["USDC"].functions.approve(c8.ch.address, 2**255), owner, "approve")
    for who, amount in ((one, 10_000), (eight, 80_000), (maker, 10_000_000)):
        chain.send(c8.ch.functions.deposit(who, 0, amount * 10**6), owner, "deposit")
    for m in d8.markets:
        price = c8.price_e18(d8.asset(m.oracle_asset).symbol)
        if m.id == 0:
            c8.trade(m.id, one, maker, wad(10), price)
        c8.trade(m.id, eight, maker, wad(10), price)

    def health_gas(c: Client, who: str) -> int:
        return int(c.ch.functions.accountHealth(checksum(who)).estimate_gas()) - 21_000

    return {
        "gen2_health_1_position": health_gas(c8, one),
        "gen2_health_8_positions": health_gas(c8, eight),
        "gen3_health_1_position_attested": health_gas(client, attested_account),
    }


def run(json_path: Path | None = None, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    started = time.perf_counter()
    console.print("bench sync: starting Anvil, deploying, opening 1,101 positions…")
    with Anvil(accounts=12) as node, tempfile.TemporaryDirectory() as tmp:
        chain = Chain.connect(Settings(rpc_url=node.url))
        roles = Roles.from_accounts(chain.accounts)
        d = deploy_system(chain, SystemSpec(), roles)
        client = Client(chain, d)
        _populate(client, GROUPS)
        engine = Engine(
            chain,
            d,
            signers=[LocalSigner(bytes.fromhex(k[2:])) for k in dev_engine_keys(3)],
            submitter_key=dev_submitter_key(),
            outbox_path=Path(tmp) / "outbox.sqlite",
            config=EngineConfig(threshold_bps=10.0, min_change_usd=0.0, max_batch_size=500),
            sanitizer_config=SanitizerConfig(),
        )
        engine.start()
        now = time.time()
        for symbol in engine.symbols:
            price = client.price_e18(symbol) / 1e18
            for k, src in enumerate(_SOURCES):
                engine.ingest(Tick(symbol, price, now + 1e-4 * k, src))
        engine.step()  # first attestation of everyone: slots exist from here on

        latency: dict[str, dict[str, float]] = {}
        for symbol, (n, _, _) in GROUPS.items():
            console.print(f"latency: {TICKS} ticks affecting {n:,} account(s)…")
            latency[f"{n}_accounts"] = _latency(engine, client, symbol, TICKS)
        console.print("gas per account, k = 1, 3, 5 (a second Anvil, with opcode traces)…")
        gas = _gas_per_account(client.price_e18("ETH"))
        sol_account = next(
            a
            for a, s in engine.mirror.accounts.items()
            if s.positions.get(2) and a != d.insurance_fund
        )
        health = _health_gas(chain, client, sol_account)
        console.print("throughput with 10,000 mirrored accounts (synthetic)…")
        assert engine.guards.policy_config is not None
        engine.guards.policy_config = replace(engine.guards.policy_config, threshold_bps=1e12)
        prices = {s: client.price_e18(s) / 1e18 for s in engine.symbols}
        throughput = _throughput(engine, prices, 10_000 - len(engine.mirror.accounts), 200)
        engine.close()

    result: dict[str, Any] = {
        "latency": latency,
        "gas": gas,
        "throughput": throughput,
        "health_check_gas": health,
        "goals": GOALS,
        "goals_met": {
            "p99_ms_100_accounts": latency["100_accounts"]["p99_ms"]
            <= GOALS["p99_ms_100_accounts"],
            "p99_ms_1000_accounts": latency["1000_accounts"]["p99_ms"]
            <= GOALS["p99_ms_1000_accounts"],
            "gas_per_account": gas["k3"]["marginal_per_account_existing"]
            <= GOALS["gas_per_account"],
            "gas_first_write_per_account": gas["k3"]["marginal_per_account_fresh"]
            <= GOALS["gas_first_write_per_account"],
        },
        "notes": [
            "Anvil automine: a receipt is available as soon as the transaction is accepted",
            "throughput accounts are synthetic entries in the mirror, not on-chain accounts",
            "batch records: first lap of the verifier's 4,096-slot ring (fresh record slots)",
        ],
        "seconds": time.perf_counter() - started,
        "load_average_1m": os.getloadavg()[0],
        "cpus": os.cpu_count(),
    }
    _print(console, result)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_path}")
    return result


def _print(console: Console, r: dict[str, Any]) -> None:
    t = Table(title="tick-to-chain latency (tick enters the engine → receipt), Anvil automine")
    for col in ("affected accounts", "ticks", "p50 ms", "p99 ms", "max ms", "goal"):
        t.add_column(col, justify="right")
    goals = {
        "100_accounts": GOALS["p99_ms_100_accounts"],
        "1000_accounts": GOALS["p99_ms_1000_accounts"],
    }
    for name, v in r["latency"].items():
        goal = goals.get(name)
        mark = "" if goal is None else f"p99 ≤ {goal:g} {'✓' if v['p99_ms'] <= goal else '✗'}"
        t.add_row(
            f"{v['accounts_per_tick']:,.0f}",
            f"{v['ticks']:.0f}",
            f"{v['p50_ms']:.1f}",
            f"{v['p99_ms']:.1f}",
            f"{v['max_ms']:.1f}",
            mark,
        )
    console.print(t)
    g = Table(title="gas per attested account, batches of 100, slots already set")
    for col in ("k", "batch of 100", "per account", "marginal/account", "quorum overhead"):
        g.add_column(col, justify="right")
    for k in (1, 3, 5):
        v = r["gas"][f"k{k}"]
        g.add_row(
            str(k),
            f"{v['batch_100_existing_slots']:,}",
            f"{v['per_account_existing']:,.0f}",
            f"{v['marginal_per_account_existing']:,.0f}",
            f"{v.get('quorum_overhead_vs_k1', 0):,}",
        )
    console.print(g)
    b = r["gas"]["k3"]["budget"]
    console.print(
        "marginal account, k=3, by part: "
        + ", ".join(
            f"{name} {b[name]:,.0f}"
            for name in ("storage", "calldata", "event", "hashing", "memory", "execution")
        )
        + f" = {b['marginal']:,.0f}; floor (storage + calldata) {b['floor']:,.0f}, above it "
        f"{b['above_floor']:,.0f}; the batch's fixed {b['fixed_per_batch']:,.0f} is "
        f"{b['fixed_amortised_per_account_batch_100']:,.0f} per account over 100 (quorum "
        f"{b['quorum_amortised_per_account_batch_100']:,.0f})"
    )
    met = r["goals_met"]
    k3 = r["gas"]["k3"]
    console.print(
        f"goal ≤ {GOALS['gas_per_account']:,} gas per account, marginal, slots set (k=3): "
        f"{k3['marginal_per_account_existing']:,.0f} {'✓' if met['gas_per_account'] else '✗'}; "
        f"first write ≤ {GOALS['gas_first_write_per_account']:,}: "
        f"{k3['marginal_per_account_fresh']:,.0f} "
        f"{'✓' if met['gas_first_write_per_account'] else '✗'} (a zero → non-zero slot alone "
        "costs 22,100)"
    )
    tp = r["throughput"]
    console.print(
        f"throughput with {tp['accounts']:,.0f} accounts mirrored (synthetic, in the mirror "
        f"only): {tp['updates_per_s']:,.0f} price updates/s, each 9 source ticks through the "
        f"sanitiser + one full pass (mirror poll, risk, policy) = "
        f"{tp['source_ticks_per_s']:,.0f} ticks/s; pass p50 {tp['p50_pass_ms']:.1f} ms, "
        f"p99 {tp['p99_pass_ms']:.1f} ms"
    )
    h = r["health_check_gas"]
    console.print(
        f"health check gas (accountHealth, estimate − 21,000): Gen 2 static 1 position "
        f"{h['gen2_health_1_position']:,}, 8 positions {h['gen2_health_8_positions']:,}; "
        f"Gen 3 attested, 1 position {h['gen3_health_1_position_attested']:,}"
    )
    console.print(
        f"bench sync took {r['seconds']:.0f} s (load average {r['load_average_1m']:.1f} on "
        f"{r['cpus']} CPUs: latencies include waiting for a shared CPU)"
    )
