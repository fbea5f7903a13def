"""`marginsync deploy` and `ape run deploy`: one deployment path with the operator's keys.

The engine signers are the operator's (`signers.engine_signer_addresses`: development keys only
on local chain ids), the deployer's balance is checked before the first transaction, and
`chain.deploy.deploy_system` does the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from offchain.chain import Chain
from offchain.chain.deploy import Roles, deploy_system
from offchain.errors import ConfigError
from offchain.models import Deployment, SystemSpec
from offchain.ops.funds import DEPLOY_GAS, require_funds
from offchain.ops.signers import engine_signer_addresses, with_signers


@dataclass(frozen=True)
class Deployed:
    deployment: Deployment
    threshold: int | None  # None: no AttestationVerifier
    development_keys: bool  # the public development engine keys are registered (local chains)

    def signers_line(self) -> str:
        if self.threshold is None:
            return "no attestation verifier: static margin only"
        whose = "public development keys, local chains only" if self.development_keys else "yours"
        signers = ", ".join(self.deployment.engine_signers)
        return f"engine signers {self.threshold} of {signers} ({whose})"


def deploy(
    chain: Chain,
    spec: SystemSpec,
    *,
    engine_signers: Sequence[str] = (),
    threshold: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Deployed:
    if not chain.accounts:
        raise ConfigError(
            "no deployer key: MARGINSYNC_PRIVATE_KEY is unset and the node unlocks no account",
            "export MARGINSYNC_PRIVATE_KEY=0x… (the deployer's funded key)",
        )
    signers = engine_signer_addresses(chain.chain_id, engine_signers)
    spec = with_signers(spec, len(signers) if signers else None, threshold)
    roles = Roles.from_accounts(chain.accounts)
    require_funds(chain, roles.owner, "deployer", DEPLOY_GAS, "MARGINSYNC_PRIVATE_KEY")
    d = deploy_system(chain, spec, roles, progress=progress, engine_signers=signers)
    k = spec.attestation.threshold if spec.attestation else None
    return Deployed(d, k, signers is None)


def started_by_ape(provider: object) -> bool:
    """For ape scripts: True when ape started the node for this one script (no `--network`), a
    throwaway chain whose deployment must not overwrite the registry of a real one."""
    return getattr(provider, "process", None) is not None
