"""`marginsync bench prove`: constraints, witness and proving time, on-chain verification gas and
Python verification time, for one account with 1 and 8 positions and for a full batch, on a
fresh Anvil chain with 8 markets; and the development ceremony's time from this machine's build.

`verify_gas` is the gas of a transaction calling the Groth16 verifier alone (21,000 intrinsic
included); `submit_gas` is the whole `MarginProofs.submit`: reading the book and the oracle,
verifying, recording.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from offchain.bench.gas import bench_spec
from offchain.chain import Chain
from offchain.chain.anvil import Anvil
from offchain.chain.client import Client, wad
from offchain.chain.deploy import Roles, deploy_system
from offchain.prove.layout import ACCOUNT, BATCH, CircuitShape
from offchain.prove.model import ProvenModel
from offchain.prove.onchain import circuit_id, deploy_margin_proofs, prove_accounts, submit
from offchain.prove.prover import ZK_DIR, Prover
from offchain.prove.verifier import VerifyingKey, verify
from offchain.risk.config import ScenarioMarginConfig
from offchain.settings import Settings

GOALS = {"account_8_positions.prove_s": 2.0, "account_8_positions.verify_gas": 300_000}
BATCH_GOAL_GAS_PER_ACCOUNT = 25_000


def constraints(shape: CircuitShape) -> int:
    setup = json.loads((ZK_DIR / f"{shape.name}.setup.json").read_text())
    return int(setup["constraints"])


def _measure(
    chain: Chain,
    client: Client,
    registry: str,
    model: ProvenModel,
    prover: Prover,
    shape: CircuitShape,
    accounts: list[str],
    sender: str,
) -> dict[str, Any]:
    submission = prove_accounts(chain, client.d, model, prover, shape, accounts)
    proofs = chain.contract("MarginProofs", registry)
    verifier = chain.contract(
        "Groth16Verifier", proofs.functions.circuit(circuit_id(shape)).call()[0]
    )
    points, public = list(submission.proof.points), list(submission.proof.public)
    # A transaction with a generous limit, not eth_estimateGas: the verifier returns false rather
    # than reverting when a precompile runs out of gas, so an estimate would find that cheaper path.
    check = verifier.functions.verifyProof(points, public)
    verify_gas = int(chain.send(check, sender, "verify", gas=3_000_000)["gasUsed"])
    started = time.perf_counter()
    assert verify(VerifyingKey.load(ZK_DIR / f"{shape.name}.vkey.json"), points, public)
    python_verify_s = time.perf_counter() - started
    submit_gas = int(submit(chain, registry, submission, sender)["gasUsed"])
    return {
        "constraints": constraints(shape),
        "witness_s": round(submission.proof.witness_s, 3),
        "prove_s": round(submission.proof.prove_s, 3),
        "verify_gas": verify_gas,
        "submit_gas": submit_gas,
        "python_verify_s": round(python_verify_s, 3),
    }


def run(json_path: Path | None) -> dict[str, Any]:
    console = Console()
    spec = bench_spec(8, verifier=False)
    symbols = [a.symbol for a in spec.assets]
    model = ProvenModel.from_config(ScenarioMarginConfig(), symbols)
    results: dict[str, Any] = {}
    with Anvil(accounts=BATCH.accounts + 8) as node, Prover() as prover:
        chain = Chain.connect(Settings(rpc_url=node.url))
        roles = Roles.from_accounts(chain.accounts)
        deployment = deploy_margin_proofs(
            chain, deploy_system(chain, spec, roles), model, roles.owner
        )
        client = Client(chain, deployment)
        registry = str(deployment.margin_proofs)
        maker, sender, one, eight, *batch = chain.accounts[4:]
        client.deposit(maker, "USDC", 100_000_000, mint=True)
        price = wad(100)

        def open_positions(trader: str, markets: range) -> None:
            client.deposit(trader, "USDC", 100_000, mint=True)
            for m in markets:
                client.trade(m, trader, maker, wad(10 + m) * (1 if m % 2 else -1), price)

        console.print("proving one account with 1 and with 8 positions…")
        open_positions(one, range(1))
        results["account_1_position"] = _measure(
            chain, client, registry, model, prover, ACCOUNT, [one], sender
        )
        open_positions(eight, range(8))
        results["account_8_positions"] = _measure(
            chain, client, registry, model, prover, ACCOUNT, [eight], sender
        )
        console.print(f"proving a batch of {BATCH.accounts} accounts with 2 positions each…")
        for i, trader in enumerate(batch[: BATCH.accounts]):
            open_positions(trader, range(i % 7, i % 7 + 2))
        row = _measure(
            chain, client, registry, model, prover, BATCH, batch[: BATCH.accounts], sender
        )
        row["verify_gas_per_account"] = row["verify_gas"] // BATCH.accounts
        row["submit_gas_per_account"] = row["submit_gas"] // BATCH.accounts
        results[f"batch_{BATCH.accounts}"] = row
    results["setup_s"] = {
        shape.name: json.loads((ZK_DIR / f"{shape.name}.setup.json").read_text())["seconds"]
        for shape in (ACCOUNT, BATCH)
    }
    _print(console, results)
    if json_path is not None:
        json_path.write_text(json.dumps(results, indent=2))
    return results


def _print(console: Console, results: dict[str, Any]) -> None:
    table = Table(title="marginsync bench prove")
    keys = [
        "constraints",
        "witness_s",
        "prove_s",
        "verify_gas",
        "submit_gas",
        "python_verify_s",
        "verify_gas_per_account",
        "submit_gas_per_account",
    ]
    table.add_column("case")
    for k in keys:
        table.add_column(k, justify="right")
    for name, row in results.items():
        if name == "setup_s":
            continue
        table.add_row(name, *(f"{row[k]:,}" if k in row else "" for k in keys))
    console.print(table)
    console.print(f"development ceremony (this machine's build), seconds: {results['setup_s']}")
    console.print(f"goals: {GOALS}; batch ≤ {BATCH_GOAL_GAS_PER_ACCOUNT:,} gas per account")
