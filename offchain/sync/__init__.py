"""The synchronisation engine: keeps on-chain margin requirements in step with the market.

`engine.Engine` is the service (`marginsync engine`); `policy` decides which accounts to attest
(pure numpy); `outbox` makes every attestation durable before it is signed or sent; `delivery`
gets it on-chain through the one transaction sender (`offchain.chain.sender`); `keys` loads the
k-of-n signing keys; `metrics` exposes Prometheus metrics and key=value logs.
"""

from offchain.sync.batching import CRASH_ENV
from offchain.sync.config import EngineConfig, default_risk_config
from offchain.sync.delivery import Delivery, Outcome
from offchain.sync.engine import Engine, EngineHalted, StepReport, build_engine, dev_submitter_key
from offchain.sync.keys import (
    EngineKeyError,
    LocalSigner,
    Quorum,
    Signer,
    SignerUnavailable,
    load_signers,
)
from offchain.sync.metrics import EngineMetrics
from offchain.sync.mirror import EngineMirror
from offchain.sync.outbox import Outbox, Row, State
from offchain.sync.policy import PolicyConfig, PolicyInputs, Selection, select
from offchain.sync.prices import Prices, build_source, sim_source, source_sanitizer_config

__all__ = [
    "CRASH_ENV",
    "Delivery",
    "Engine",
    "EngineConfig",
    "EngineHalted",
    "EngineKeyError",
    "EngineMetrics",
    "EngineMirror",
    "LocalSigner",
    "Outbox",
    "Outcome",
    "PolicyConfig",
    "PolicyInputs",
    "Prices",
    "Quorum",
    "Row",
    "Selection",
    "Signer",
    "SignerUnavailable",
    "State",
    "StepReport",
    "build_engine",
    "build_source",
    "default_risk_config",
    "dev_submitter_key",
    "load_signers",
    "select",
    "sim_source",
    "source_sanitizer_config",
]
