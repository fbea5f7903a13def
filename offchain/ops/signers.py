"""Which engine signer addresses a deployment registers, and with what threshold.

Only addresses ever go on-chain. They come, in order, from `--engine-signer` flags, from the keys
the engine itself will load (`MARGINSYNC_ENGINE_KEYS` or keystores, through `sync.keys`), or, on a
local chain id only, from the public development keys: anyone can sign with those, so a deploy
anywhere else that names no signers is refused rather than left open.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from eth_utils import is_address

from offchain.chain import checksum
from offchain.errors import ConfigError
from offchain.models import AttestationSpec, SystemSpec
from offchain.sync.keys import ENV_KEYS, ENV_KEYSTORES, LOCAL_CHAIN_IDS, load_signers


def engine_signer_addresses(
    chain_id: int, given: Sequence[str], env: Mapping[str, str] | None = None
) -> list[str] | None:
    """The operator's signer addresses, or None for the development keys (local chains only)."""
    env = os.environ if env is None else env
    if given:
        bad = [a for a in given if not is_address(a)]
        if bad:
            raise ConfigError(
                f"--engine-signer {bad[0]!r} is not an address",
                "give 0x-prefixed 40-hex-digit addresses (one flag per signer)",
            )
        return list(dict.fromkeys(checksum(a) for a in given))
    if env.get(ENV_KEYS, "").strip() or env.get(ENV_KEYSTORES, "").strip():
        return [s.address for s in load_signers(chain_id=chain_id, dev_keys=False, env=env)]
    if chain_id in LOCAL_CHAIN_IDS:
        return None
    raise ConfigError(
        f"chain {chain_id} is not a local chain, and the development engine keys are public",
        "name your engine signers: --engine-signer 0x… (once per signer) --threshold k, "
        f"or set {ENV_KEYS} / {ENV_KEYSTORES} as the engine will",
    )


def with_signers(spec: SystemSpec, signers: int | None, threshold: int | None) -> SystemSpec:
    """`spec` with its attestation quorum set to `signers` keys and `threshold`."""
    att = spec.attestation
    if att is None:
        if signers or threshold:
            raise ConfigError(
                "the spec deploys no AttestationVerifier (attestation: null)",
                "drop --engine-signer / --threshold, or give the spec an attestation section",
            )
        return spec
    count = signers or att.signers
    k = threshold or min(att.threshold, count)
    if k > count:
        raise ConfigError(
            f"--threshold {k} exceeds the {count} engine signer(s)",
            f"give at least {k} signers or a threshold of at most {count}",
        )
    quorum = AttestationSpec.model_validate(att.model_dump() | {"signers": count, "threshold": k})
    return spec.model_copy(update={"attestation": quorum})
