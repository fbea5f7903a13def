"""Validated parameters of every risk model (pydantic v2; the only risk module that imports it).

Models are frozen and reject unknown keys, so a typo in a config file fails loudly with the
field's path instead of silently falling back to a default. `load_risk_config` turns pydantic's
error into a `RiskInputError` listing each bad field and what it expected.

Defaults and where they come from (see docs/risk-models.md):
standard perps IM 10% / MM 6.5% (Derive SRM), RiskMetrics λ = 0.94 per day, Derive v2 scenario
law (±18% in 4.5% steps, vol shock 1 + 0.6·(30d/DTE)^p, min vol-up 40%, contingencies perp 3% /
naked short option 2% of spot, IM = 1.25 × MM), VaR 99% and ES 97.5% (Basel FRTB levels).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from offchain.risk.checks import RiskInputError

MarginModel = Literal["standard", "volatility", "portfolio"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TierConfig(_Model):
    """Rates that apply to the slice of a position's notional at or above `notional_floor_usd`."""

    notional_floor_usd: float = Field(ge=0.0)
    im_rate: float = Field(gt=0.0, le=1.0)
    mm_rate: float = Field(gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _mm_not_above_im(self) -> TierConfig:
        if self.mm_rate > self.im_rate:
            raise ValueError(f"mm_rate {self.mm_rate} must not exceed im_rate {self.im_rate}")
        return self


# Tier 0 is Derive's standard perp IM 10% / MM 6.5%; larger slices pay more, with MM kept at
# 65% of IM in every tier as in tier 0. The $1M and $5M boundaries are our choice.
DEFAULT_TIERS: tuple[TierConfig, ...] = (
    TierConfig(notional_floor_usd=0.0, im_rate=0.10, mm_rate=0.065),
    TierConfig(notional_floor_usd=1_000_000.0, im_rate=0.15, mm_rate=0.0975),
    TierConfig(notional_floor_usd=5_000_000.0, im_rate=0.25, mm_rate=0.1625),
)


class StandardMarginConfig(_Model):
    """Progressive notional tiers: each tier's rates apply to the notional inside that tier, so
    the requirement is continuous, convex and increasing in position size."""

    tiers: tuple[TierConfig, ...] = DEFAULT_TIERS

    @model_validator(mode="after")
    def _tiers_well_formed(self) -> StandardMarginConfig:
        if not self.tiers:
            raise ValueError("tiers must list at least one tier")
        if self.tiers[0].notional_floor_usd != 0.0:
            raise ValueError("tiers[0].notional_floor_usd must be 0 so every notional has a rate")
        for prev, tier in zip(self.tiers, self.tiers[1:], strict=False):
            if tier.notional_floor_usd <= prev.notional_floor_usd:
                raise ValueError("tiers must have strictly increasing notional_floor_usd")
            if tier.im_rate < prev.im_rate or tier.mm_rate < prev.mm_rate:
                raise ValueError("tier rates must not decrease as notional grows")
        return self


class VolatilityMarginConfig(_Model):
    """EWMA volatility margin: MM = clip(z(confidence)·σ·√horizon, floor, cap) × notional.

    σ is the larger of a RiskMetrics EWMA (λ per day, rescaled to each tick's Δt) and an optional
    fast EWMA with the given half-life, which makes the requirement react within minutes of a
    volatility jump instead of days.
    """

    lambda_per_day: float = Field(0.94, gt=0.0, lt=1.0)
    fast_half_life_s: float | None = Field(300.0, gt=0.0)
    confidence: float = Field(0.99, ge=0.5, lt=1.0)
    liquidation_horizon_s: float = Field(3600.0, gt=0.0)
    im_multiplier: float = Field(1.5, ge=1.0)
    floor_mm_rate: float = Field(0.01, gt=0.0, le=1.0)
    cap_mm_rate: float = Field(0.5, gt=0.0, le=1.0)
    initial_sigma_annual: float = Field(0.8, gt=0.0)

    @model_validator(mode="after")
    def _floor_below_cap(self) -> VolatilityMarginConfig:
        if self.floor_mm_rate > self.cap_mm_rate:
            raise ValueError(
                f"floor_mm_rate {self.floor_mm_rate} must not exceed cap_mm_rate {self.cap_mm_rate}"
            )
        return self


class MarketConfig(_Model):
    """One underlying: which margin model its positions use, and that model's parameters.

    The standard tiers also give the static fallback requirement reported for every market.
    """

    underlying: str = Field(min_length=1)
    model: MarginModel = "standard"
    standard: StandardMarginConfig = StandardMarginConfig()
    volatility: VolatilityMarginConfig = VolatilityMarginConfig()


class ScenarioMarginConfig(_Model):
    """Portfolio margin by scenarios (Derive v2 / Paradex law) and cross-underlying offsets.

    Default grid (33 scenarios): spot ±18% in 4.5% steps × vol {up, none, down}, keeping only
    vol-up at the two extremes (23), 8 dampened tails, 2 skew scenarios.
    """

    spot_step: float = Field(0.045, gt=0.0, lt=1.0)
    spot_steps_each_side: int = Field(4, ge=1, le=20)
    vol_range_up: float = Field(0.6, ge=0.0)
    vol_range_down: float = Field(0.3, ge=0.0)
    short_term_power: float = Field(0.3, ge=0.0)
    long_term_power: float = Field(0.13, ge=0.0)
    power_switch_days: float = Field(30.0, gt=0.0)
    dte_floor_days: float = Field(1.0, gt=0.0)
    min_vol_up_annual: float = Field(0.40, ge=0.0)
    tail_spot_multipliers: tuple[float, ...] = (0.34, 0.5, 0.66, 0.75, 1.33, 1.5, 2.0, 6.0)
    tail_linear_equivalent: float = Field(0.15, gt=0.0, le=1.0)
    skew_scenarios: bool = True
    skew_cap: float = Field(0.3, ge=0.0, lt=1.0)
    skew_kstar_per_sqrt_year: float = Field(0.5, gt=0.0)
    skew_min_kstar: float = Field(0.05, gt=0.0)
    perp_contingency_rate: float = Field(0.03, ge=0.0, le=1.0)
    short_option_contingency_rate: float = Field(0.02, ge=0.0, le=1.0)
    im_factor: float = Field(1.25, ge=1.0)
    correlations: dict[str, float] = Field(default_factory=dict)
    floor_fraction: float = Field(0.3, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check_lists(self) -> ScenarioMarginConfig:
        if self.spot_step * self.spot_steps_each_side >= 1.0:
            raise ValueError("spot_step × spot_steps_each_side must be < 1 (spot stays > 0)")
        if any(m <= 0.0 or m == 1.0 for m in self.tail_spot_multipliers):
            raise ValueError("tail_spot_multipliers must be > 0 and != 1")
        for pair, rho in self.correlations.items():
            if len(pair.split("/")) != 2:
                raise ValueError(f"correlations key {pair!r} must look like 'BTC/ETH'")
            if not -1.0 <= rho <= 1.0:
                raise ValueError(f"correlations[{pair!r}] = {rho} must be in [-1, 1]")
        return self


class VarConfig(_Model):
    """Value-at-risk and expected shortfall (historical simulation and Monte Carlo)."""

    var_confidence: float = Field(0.99, ge=0.5, lt=1.0)
    es_confidence: float = Field(0.975, ge=0.5, lt=1.0)
    mc_scenarios: int = Field(2000, ge=100)
    seed: int = Field(0, ge=0)
    min_eigenvalue: float = Field(1e-10, gt=0.0, lt=1.0)


class RiskConfig(_Model):
    markets: tuple[MarketConfig, ...] = Field(min_length=1)
    scenario: ScenarioMarginConfig = ScenarioMarginConfig()
    var: VarConfig = VarConfig()

    @model_validator(mode="after")
    def _names_consistent(self) -> RiskConfig:
        names = [m.underlying for m in self.markets]
        if len(set(names)) != len(names):
            raise ValueError(f"markets must name each underlying once; got {names}")
        for pair in self.scenario.correlations:
            unknown = [n for n in pair.split("/") if n not in names]
            if unknown:
                raise ValueError(f"scenario.correlations[{pair!r}] names unknown markets {unknown}")
        return self

    def market(self, underlying: str) -> MarketConfig:
        for market in self.markets:
            if market.underlying == underlying:
                return market
        raise RiskInputError(f"no market config for underlying {underlying!r}; add it to markets")


def load_risk_config(data: Mapping[str, Any]) -> RiskConfig:
    """Validate a plain mapping (e.g. parsed TOML/JSON) into a `RiskConfig`.

    Raises `RiskInputError` whose message lists every bad field as `path.to.field: problem`.
    """
    try:
        return RiskConfig.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise RiskInputError("invalid risk config:\n  " + "\n  ".join(lines)) from exc
