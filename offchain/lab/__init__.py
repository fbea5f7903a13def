"""The simulation lab: one market scenario replayed on real Anvil chains under three generations
of margin rules (static / block-based / synchronised), measuring bad debt, liquidations, capital
efficiency, sync lag and gas. See docs/lab.md for how to read the report.

Modules, in the order data flows: `scenarios` (named price paths from `offchain.feeds`),
`population` (seeded traders), `generations` (the three rule sets; Gen 3 runs the product's
engine, `offchain.sync`, through `Gen3Engine`), `transport` and `ledger` (batched JSON-RPC and
the event-only view of a chain), `keeper` (keeper rounds; the wire the shipped `offchain.backstop`
runs on), `runner` (one generation on its own Anvil), `metrics`, `report`, and `main` (`run_lab`).
Across venues (`marginsync lab --venues N`): `venues_population` (books split across venues),
`venues` (isolated and linked venues in lockstep, `run_venues`) and `venues_metrics`.
"""

from offchain.lab.generations import (
    GEN1,
    GEN2,
    GEN3,
    GENERATIONS,
    Gen3Engine,
    Generation,
    SyncStats,
    risk_config,
)
from offchain.lab.main import DEFAULT_STEPS, SWEEPS, run_lab
from offchain.lab.scenarios import SCENARIOS
from offchain.lab.venues import run_venues

__all__ = [
    "DEFAULT_STEPS",
    "GEN1",
    "GEN2",
    "GEN3",
    "GENERATIONS",
    "SCENARIOS",
    "SWEEPS",
    "Gen3Engine",
    "Generation",
    "SyncStats",
    "risk_config",
    "run_lab",
    "run_venues",
]
