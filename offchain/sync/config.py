"""How the engine selects, batches and guards (`EngineConfig`), and the risk model it runs when
the operator gives none (`default_risk_config`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from offchain.models import Deployment
from offchain.risk import MarketConfig, RiskConfig


class EngineConfig(BaseModel):
    """How the engine selects, batches and guards. Validated at the CLI door."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: float = Field(default=1.0, gt=0)
    threshold_bps: float = Field(default=500.0, ge=0)
    min_change_usd: float = Field(default=1.0, ge=0)
    refresh_window_s: float = Field(default=60.0, ge=0)
    near_health: float = Field(default=1.25, ge=1.0)
    max_batch_size: int = Field(default=500, ge=1, le=1_000)
    max_batches_per_pass: int = Field(default=4, ge=1)
    max_clock_skew_s: float = Field(default=120.0, gt=0)
    skew_check_interval_s: float = Field(default=30.0, gt=0)
    signer_timeout_s: float = Field(default=2.0, gt=0)
    signer_retry_s: float = Field(default=10.0, gt=0)
    once_timeout_s: float = Field(default=20.0, gt=0)
    receipt_timeout_s: float = Field(default=120.0, gt=0)
    # The node unreachable: passes retry with backoff up to `max_backoff_s` apart; after
    # `max_outage_s` without the chain the service stops with a one-line reason.
    max_backoff_s: float = Field(default=30.0, gt=0)
    max_outage_s: float = Field(default=600.0, gt=0)


def default_risk_config(deployment: Deployment) -> RiskConfig:
    """Volatility margin on every underlying: low in calm markets, within a few ticks of a
    volatility jump far above static (the verifier clamps it to [50%, 500%] of static)."""
    return RiskConfig(
        markets=tuple(
            MarketConfig(underlying=a.symbol, model="volatility") for a in deployment.assets
        )
    )
