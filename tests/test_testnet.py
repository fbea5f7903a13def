"""The test-network path with the operator's own keys, as real processes.

An Anvil started with Sepolia's chain id and no unlocked accounts stands in for a public test
network: every transaction is signed by a key the operator holds. The deploy registers the
operator's engine signer addresses (never the public development keys), the engine signs with
the operator's keys, and a keeper with its own key liquidates what a crash puts under water.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from service import Service, run

from offchain.chain.anvil import Anvil
from offchain.models import Deployment

SEPOLIA = 11155111


def key(name: str) -> str:
    return "0x" + keccak(text=f"marginsync test-network {name}").hex()


DEPLOYER, SUBMITTER, KEEPER, SIGNER_1, SIGNER_2, UNFUNDED = (
    key(n) for n in ("deployer", "submitter", "keeper", "signer 1", "signer 2", "unfunded")
)


def address(k: str) -> str:
    return str(Account.from_key(k).address)


@pytest.fixture(scope="module")
def testnet() -> Iterator[Anvil]:
    with Anvil(accounts=0, chain_id=SEPOLIA) as node:
        for k in (DEPLOYER, SUBMITTER, KEEPER):
            node_rpc(node, "anvil_setBalance", [address(k), hex(100 * 10**18)])
        yield node


def node_rpc(node: Anvil, method: str, params: list[str]) -> None:
    import requests

    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    assert "error" not in requests.post(node.url, json=body, timeout=10).json()


def test_deploy__a_non_local_chain_without_signers__is_refused(
    testnet: Anvil, tmp_path: Path
) -> None:
    code, out = run(
        "--rpc-url",
        testnet.url,
        "--deployments-dir",
        str(tmp_path),
        "deploy",
        env={"MARGINSYNC_PRIVATE_KEY": DEPLOYER},
        ok=False,
    )
    assert code == 1
    assert f"chain {SEPOLIA} is not a local chain" in out
    assert "--engine-signer" in out
    assert not (tmp_path / f"{SEPOLIA}.json").exists()


def test_deploy__no_key_and_no_unlocked_account__says_which_variable(
    testnet: Anvil, tmp_path: Path
) -> None:
    code, out = run(
        "--rpc-url", testnet.url, "--deployments-dir", str(tmp_path), "deploy", ok=False
    )
    assert code == 1
    assert "no deployer key: MARGINSYNC_PRIVATE_KEY is unset" in out


def test_operator_keys__deploy_engine_keeper__attest_and_liquidate(
    testnet: Anvil, tmp_path: Path
) -> None:
    common = ("--rpc-url", testnet.url, "--deployments-dir", str(tmp_path))
    operator = {"MARGINSYNC_PRIVATE_KEY": DEPLOYER}
    signers = [address(SIGNER_1), address(SIGNER_2)]
    run(
        *common,
        "deploy",
        "--engine-signer",
        signers[0],
        "--engine-signer",
        signers[1],
        "--threshold",
        "2",
        env=operator,
    )
    d = Deployment.load(tmp_path, SEPOLIA)
    assert list(d.engine_signers) == signers
    assert d.owner == d.matcher == address(DEPLOYER)
    _, status = run(*common, "status")
    assert "engine signers: 2 of 2" in status
    code, out = run(*common, "deposit", "10", "--mint", ok=False)  # no key, no unlocked account
    assert code == 1
    assert "no trader account" in out
    code, out = run(*common, "keeper", "--once", ok=False)
    assert code == 1
    assert "no keeper key: MARGINSYNC_PRIVATE_KEY is unset" in out
    # Balances are checked before any work, naming the address to fund.
    unfunded = {"MARGINSYNC_PRIVATE_KEY": UNFUNDED, "MARGINSYNC_ENGINE_KEYS": SIGNER_1}
    code, out = run(*common, "engine", "--once", env=unfunded, ok=False)
    assert code == 1
    assert f"the engine submitter {address(UNFUNDED)} cannot pay for gas" in out
    code, out = run(*common, "keeper", "--once", env=unfunded, ok=False)
    assert code == 1
    assert f"the keeper {address(UNFUNDED)} cannot pay for gas" in out

    # The public development keys sign nothing here, though the engine is asked to use them.
    code, out = run(
        *common,
        "engine",
        "--dev-keys",
        "--once",
        env={"MARGINSYNC_PRIVATE_KEY": SUBMITTER},
        ok=False,
    )
    assert code == 1
    assert "the development keys are public" in out

    run(*common, "populate", "--traders", "20", env=operator)
    engine = Service(
        *common,
        "engine",
        "--interval",
        "0.2",
        "--outbox",
        str(tmp_path / "outbox.sqlite"),
        env={
            "MARGINSYNC_PRIVATE_KEY": SUBMITTER,
            "MARGINSYNC_ENGINE_KEYS": f"{SIGNER_1},{SIGNER_2}",
        },
    )
    try:
        applied = re.search(r"batch #\d+: (\d+) applied", engine.wait_for(" applied"))
        assert applied
        assert int(applied[1]) > 0
        run(
            *common,
            "feed",
            "--mode",
            "crash",
            "--drop",
            "0.35",
            "--steps",
            "4",
            "--interval",
            "0",
            env=operator,
        )
        _, out = run(
            *common,
            "keeper",
            "--once",
            "--key-env",
            "MARGINSYNC_KEEPER_KEY",
            "--journal",
            str(tmp_path / "keeper.sqlite"),
            env={"MARGINSYNC_KEEPER_KEY": KEEPER},
        )
    finally:
        assert engine.stop() in (0, 130, 143), "\n".join(engine.lines)
    assert f"keeper {address(KEEPER)} on chain {SEPOLIA}" in out
    assert "liquidated 0x" in out
