"""ape as ape users run it, from the README's environment alone (no Makefile variables)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from offchain.chain.anvil import find_anvil
from offchain.settings import PROJECT_ROOT

APE = str(Path(sys.executable).parent / "ape")


def readme_env() -> dict[str, str]:
    """The README's `export PATH=…` (the venv, then Anvil) and no Makefile variables."""
    env = {k: v for k, v in os.environ.items() if k != "SOLCX_BINARY_PATH"}
    anvil_dir = str(Path(find_anvil()).parent)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), anvil_dir, env["PATH"]])
    return env


def ape(*args: str, deployments: Path) -> str:
    env = readme_env()
    env["MARGINSYNC_DEPLOYMENTS_DIR"] = str(deployments)
    proc = subprocess.run(
        [APE, *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc.stdout


def test_solc__found_where_py_solc_x_looks_by_default() -> None:
    env = readme_env()
    code = "import solcx; print([str(v) for v in solcx.get_installed_solc_versions()])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "0.8.37" in out


def test_ape_run_deploy__on_a_throwaway_chain__leaves_the_registry_alone(tmp_path: Path) -> None:
    out = ape("run", "deploy", deployments=tmp_path)
    assert "clearinghouse 0x" in out
    assert "registry not written" in out
    assert list(tmp_path.iterdir()) == []


def test_ape_run_simulate_oracle__crash_as_the_readme_writes_it(tmp_path: Path) -> None:
    out = ape("run", "simulate_oracle", "--mode", "crash", deployments=tmp_path)
    assert "ETH: 3,000.00 -> 1,710.00 over 10 updates" in out
    assert list(tmp_path.iterdir()) == []
