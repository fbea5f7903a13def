"""The three generations of margin rules the lab compares, and Gen 3's engine.

* **Gen 1, static.** Fixed rates (IM 10%, MM 6.5% of notional at the oracle price), the contracts
  deployed without an attestation verifier, and a keeper that looks only every 10th price update
  (a slow off-chain cadence, as keepers stalled on 2020-03-12).
* **Gen 2, block-based.** The same static rules, checked after every price update: the fallback
  rules (S2) with a keeper that never sleeps.
* **Gen 3, synchronised.** The same contracts with the `AttestationVerifier`, and the product's
  streaming engine (`offchain.sync.Engine`) built by `build_engine` as `marginsync engine
  --source chain --dev-keys --risk-config FILE` builds it: after every oracle update one poll of
  the feeds goes through its sanitiser, then one pass (risk tick for every account, policy,
  signed batches, outbox, the one transaction sender). The lab supplies only what a simulation
  must: the scenario's clock, and a block mined at that clock once the batches are broadcast
  (the lab's chain mines on demand). The keeper runs after every update.

The engine's configuration is what a user would pass: the default `EngineConfig`, and as
`--risk-config` volatility margin on every underlying calibrated to the history the scenario
starts from (`risk_config`).
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from offchain.chain import Chain
from offchain.feeds import YEAR_S, Scenario, Tick
from offchain.models import Deployment
from offchain.risk import MarketConfig, RiskConfig, VolatilityMarginConfig
from offchain.sync import EngineConfig, EngineHalted, State, build_engine, build_source

# The volatility model's default liquidation horizon, and the floor the lab puts under it: a
# keeper closes at most half a position per update (close factor 50%), so getting out takes two
# updates; the requirement must cover the move over that time.
MIN_LIQUIDATION_HORIZON_S = 3_600.0
UPDATES_TO_LIQUIDATE = 2


@dataclass(frozen=True)
class Generation:
    key: str
    label: str
    rules: str
    keeper_every: int  # the keeper checks after every n-th price update
    attested: bool
    attest_every: int = 1  # Gen 3: the engine posts after every n-th update

    def keeper_checks(self, update: int) -> bool:
        return update % self.keeper_every == 0

    def engine_posts(self, update: int) -> bool:
        return self.attested and update % self.attest_every == 0


GEN1 = Generation(
    "gen1",
    "Gen 1 static",
    "static IM 10% / MM 6.5%; keeper checks every 10th update",
    keeper_every=10,
    attested=False,
)
GEN2 = Generation(
    "gen2",
    "Gen 2 block-based",
    "static IM 10% / MM 6.5% at oracle prices; keeper checks every update",
    keeper_every=1,
    attested=False,
)
GEN3 = Generation(
    "gen3",
    "Gen 3 synchronised",
    "the product engine's attested EWMA-volatility margin (clamped to 50-500% of static, "
    "S1 fallback); engine and keeper every update",
    keeper_every=1,
    attested=True,
)
GENERATIONS = (GEN1, GEN2, GEN3)


# ---------------------------------------------------------------------------- Gen 3's engine
def risk_config(underlyings: list[str], interval_s: float, warmup: Scenario) -> RiskConfig:
    """Gen 3's `--risk-config`: volatility margin on every underlying, starting from the
    realised volatility of the history before the scenario (the warm-up, never put on chain)."""
    history = np.column_stack([warmup.prices_usd[u] for u in underlyings])
    sigma0 = np.diff(np.log(history), axis=0).std(axis=0, ddof=1) / math.sqrt(interval_s / YEAR_S)
    horizon_s = max(MIN_LIQUIDATION_HORIZON_S, UPDATES_TO_LIQUIDATE * interval_s)
    return RiskConfig(
        markets=tuple(
            MarketConfig(
                underlying=u,
                model="volatility",
                volatility=VolatilityMarginConfig(
                    liquidation_horizon_s=horizon_s, initial_sigma_annual=float(s)
                ),
            )
            for u, s in zip(underlyings, sigma0, strict=True)
        )
    )


@dataclass(frozen=True)
class SyncStats:
    """What one engine step did, as the lab's metrics need it."""

    gas: int
    lag_ms: float  # from the oracle update's receipt to the last batch's receipt
    accounts_updated: int
    batches: int = 0


class Gen3Engine:
    """`offchain.sync.Engine` on the lab's chain. Build it once the chain's clock is the
    scenario's (after the opening block); then, per oracle update, `poll()` and, when the
    engine's turn, `step()`; `close()` at the end."""

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        risk: RiskConfig,
        *,
        clock: Callable[[], int],
        mine: Callable[[], None],
    ) -> None:
        self.chain = chain
        self.d = deployment
        self.mine = mine
        # The outbox and journal live as long as the run's chain does.
        self._dir = tempfile.TemporaryDirectory(prefix="marginsync-lab-")
        risk_path = Path(self._dir.name) / "risk.json"
        risk_path.write_text(risk.model_dump_json())
        self.engine = build_engine(
            chain,
            deployment,
            source="chain",
            dev_keys=True,
            outbox_path=Path(self._dir.name) / "outbox.sqlite",
            config=EngineConfig(),
            submitter_key=None,
            risk_config_path=risk_path,
            clock=lambda: float(clock()),
        )
        self.engine.start()

    def poll(self) -> None:
        """One poll of the deployed feeds into the sanitiser (the `--source chain` path)."""
        for tick in asyncio.run(self._ticks()):
            self.engine.ingest(tick)

    async def _ticks(self) -> list[Tick]:
        source = build_source("chain", self.chain, self.d, interval_s=0.0, ws_url=None, once=True)
        return [tick async for tick in source]

    def step(self, since: float) -> SyncStats:
        """One pass and its batches, mined at the lab's clock; `since` is the oracle update's
        `perf_counter` time. An engine that stops attesting or a batch that does not land is a
        fault of the lab's set-up (its chain, clock and prices are the engine's own inputs), so
        it stops the run rather than being measured."""
        report = self.engine.step(mine=self.mine)
        confirmed = all(o.state == State.CONFIRMED for o in report.outcomes)
        if report.halted or report.blocked_accounts or not confirmed:
            raise EngineHalted(
                f"Gen 3's engine did not attest as it should: {report.summary()}",
                "a fault in the lab's set-up: its chain, clock and prices are the engine's inputs",
            )
        return SyncStats(
            gas=sum(o.gas_used for o in report.outcomes),
            lag_ms=(time.perf_counter() - since) * 1000.0,
            accounts_updated=sum(o.applied for o in report.outcomes),
            batches=len(report.outcomes),
        )

    def close(self) -> None:
        self.engine.close()
        self._dir.cleanup()
