"""The README's "Using it" walkthrough, command by command, as a user runs it.

The `marginsync` lines are read from the README's first code block, so the README cannot
describe commands that do not work. Each runs as a real process against a real Anvil, from a
scratch directory (the engine's outbox and the keeper's journal land there), with the registry
in a scratch folder through MARGINSYNC_DEPLOYMENTS_DIR; a line ending in `&` runs in the
background as the user's shell would.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from service import Service, run

from offchain.chain.anvil import Anvil
from offchain.settings import PROJECT_ROOT


def walkthrough() -> list[list[str]]:
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text[text.index("### Using it") :]
    block = section[section.index("```bash") + len("```bash") : section.index("```\n", 8)]
    commands = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "marginsync":
            commands.append(words[1:])
    return commands


def test_readme_walkthrough__shows_positions_attestations_and_liquidations(
    tmp_path: Path,
) -> None:
    commands = walkthrough()
    assert [c[0] for c in commands] == [
        "deploy",
        "populate",
        "deposit",
        "trade",
        "withdraw",
        "account",
        "engine",
        "feed",
        "keeper",
        "deposit",
        "backstop",
        "status",
        "account",
    ]
    out: dict[str, list[str]] = {}
    services: list[Service] = []
    with Anvil(accounts=10) as node:
        env = {"MARGINSYNC_RPC_URL": node.url, "MARGINSYNC_DEPLOYMENTS_DIR": str(tmp_path)}
        try:
            for words in commands:
                if words[-1] == "&":
                    service = Service(*words[:-1], env=env, cwd=tmp_path)
                    services.append(service)
                    # A user sees the engine attest the population before moving on.
                    out.setdefault(words[0], []).append(service.wait_for(" applied"))
                    continue
                out.setdefault(words[0], []).append(run(*words, env=env, cwd=tmp_path)[1])
            engine_status = services[0].wait_for("engine: block ")
        finally:
            codes = [s.stop() for s in services]
    assert codes == [0]
    assert "populate: 50 traders" in out["populate"][0]
    assert "ETH-PERP" in out["account"][0]
    assert "liquidation price" in out["account"][0]
    applied = re.search(r"batch #\d+: (\d+) applied", out["engine"][0])
    assert applied, out["engine"][0]
    assert int(applied[1]) > 0
    assert "accounts mirrored" in engine_status
    assert "liquidated 0x" in out["keeper"][0]
    assert re.search(r"took [+-][\d,.]+ on market \d", out["backstop"][0]), out["backstop"][0]
    assert "engine signers: 2 of 3" in out["status"][0]
