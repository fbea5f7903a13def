"""The `marginsync` command as users run it: real processes against a real Anvil."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from offchain.chain.anvil import Anvil


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "offchain.cli", *args], capture_output=True, text=True, timeout=120
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def node() -> Anvil:
    with Anvil(accounts=12) as anvil:
        yield anvil


def test_deploy_feed_keeper__on_a_fresh_chain__work_end_to_end(node: Anvil, tmp_path: Path) -> None:
    common = ("--rpc-url", node.url, "--deployments-dir", str(tmp_path))
    out = run(*common, "deploy").stdout
    registry = json.loads((tmp_path / "31337.json").read_text())
    assert registry["clearinghouse"] in out
    assert [m["symbol"] for m in registry["markets"]] == ["ETH-PERP", "BTC-PERP", "SOL-PERP"]

    feed = run(
        *common,
        "feed",
        "--mode",
        "crash",
        "--asset",
        "ETH",
        "--steps",
        "3",
        "--interval",
        "0",
        "--drop",
        "0.2",
    )
    assert "[3/3] ETH 2,400.00" in feed.stdout

    keeper = run(*common, "keeper", "--once")
    assert "round 1: 0 liquidation(s)" in keeper.stdout


def test_cli__unreachable_rpc__one_line_error_with_fix(tmp_path: Path) -> None:
    proc = run(
        "--rpc-url", "http://127.0.0.1:9", "--deployments-dir", str(tmp_path), "deploy", check=False
    )
    assert proc.returncode == 1
    assert "cannot reach an Ethereum node at http://127.0.0.1:9" in proc.stdout
    assert "--rpc-url" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli__no_deployment_on_chain__says_to_deploy_first(node: Anvil, tmp_path: Path) -> None:
    proc = run(
        "--rpc-url",
        node.url,
        "--deployments-dir",
        str(tmp_path / "empty"),
        "keeper",
        "--once",
        check=False,
    )
    assert proc.returncode == 1
    assert "run `marginsync deploy`" in proc.stdout


def test_cli__unknown_asset__names_the_valid_ones(node: Anvil, tmp_path: Path) -> None:
    common = ("--rpc-url", node.url, "--deployments-dir", str(tmp_path))
    run(*common, "deploy")
    proc = run(*common, "feed", "--asset", "DOGE", "--steps", "1", "--interval", "0", check=False)
    assert proc.returncode == 1
    assert "unknown oracle asset 'DOGE'" in proc.stdout
    assert "ETH, BTC, SOL" in proc.stdout


def test_cli__bad_config_file__names_the_field(node: Anvil, tmp_path: Path) -> None:
    bad = tmp_path / "spec.json"
    bad.write_text(json.dumps({"liquidation": {"close_factor_bps": 0}}))
    proc = run(
        "--rpc-url",
        node.url,
        "--deployments-dir",
        str(tmp_path),
        "deploy",
        "--config",
        str(bad),
        check=False,
    )
    assert proc.returncode == 1
    assert "liquidation.close_factor_bps" in proc.stdout
