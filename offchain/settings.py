"""Runtime settings from the environment (prefix `MARGINSYNC_`) or CLI flags; no keys in code."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Where to find the chain, the deployment and the keys.

    `private_key` signs transactions on a real network. Left unset on a local Anvil chain, the
    node's unlocked development accounts are used instead. `prover_key` sends the proofs of the
    engine's prove mode (`marginsync engine --prove`), a key of their own.
    """

    model_config = SettingsConfigDict(env_prefix="MARGINSYNC_", extra="ignore")

    rpc_url: str = "http://127.0.0.1:8545"
    private_key: SecretStr | None = None
    prover_key: SecretStr | None = None
    deployments_dir: Path = PROJECT_ROOT / "deployments"
    runs_dir: Path = PROJECT_ROOT / "runs"
    artifacts: Path = PROJECT_ROOT / ".build" / "__local__.json"
    anvil_bin: str | None = None
    rpc_timeout_s: float = 10.0
