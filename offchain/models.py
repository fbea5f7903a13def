"""Typed data that crosses a boundary: system configuration and the deployments registry."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from offchain.errors import ConfigError, DeploymentMissing

WAD = 10**18
BPS = 10_000


def to_units(amount: float | int | str | Decimal, decimals: int) -> int:
    """A human amount in integer units of `decimals` (18 for wad), exact: through the decimal
    string, so 1e6 becomes 10**24 and not 999999.99999999998 × 10**18."""
    return int(Decimal(str(amount)).scaleb(decimals).to_integral_value(rounding=ROUND_DOWN))


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OracleAssetSpec(Frozen):
    """A priced asset: one mock Chainlink feed on local chains."""

    symbol: str
    price_usd: float = Field(gt=0)
    feed_decimals: int = Field(default=8, ge=0, le=18)
    heartbeat_s: int = Field(default=3600, gt=0)
    # How fast a broken feed's quote widens (SPEC I18): 2% an hour, about a 43%-a-day crash.
    outage_drift_bps_per_hour: int = Field(default=200, gt=0, le=BPS)
    min_price_usd: float = Field(default=1e-6, gt=0)
    max_price_usd: float = Field(default=1e9, gt=0)


class CollateralSpec(Frozen):
    symbol: str
    decimals: int = Field(ge=0, le=18)
    oracle_symbol: str | None = None  # None for the quote token (worth exactly 1 USD)
    weight_bps: int = Field(gt=0, le=BPS)
    deposit_cap_tokens: float = Field(gt=0)


class MarketSpec(Frozen):
    symbol: str
    underlying: str
    im_bps: int = Field(gt=0, le=BPS)
    mm_bps: int = Field(gt=0, le=BPS)
    liquidation_penalty_bps: int = Field(gt=0)
    price_band_bps: int = Field(gt=0)
    max_position_size: float = Field(gt=0)
    open_interest_cap: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> MarketSpec:
        if not (self.liquidation_penalty_bps < self.mm_bps < self.im_bps):
            raise ValueError(
                f"market {self.symbol}: need liquidation_penalty_bps < mm_bps < im_bps, got "
                f"{self.liquidation_penalty_bps} / {self.mm_bps} / {self.im_bps}"
            )
        if self.price_band_bps >= self.im_bps:
            raise ValueError(f"market {self.symbol}: price_band_bps must be below im_bps")
        return self


class LiquidationSpec(Frozen):
    close_factor_bps: int = Field(default=5_000, gt=0, le=BPS)
    full_liquidation_health_bps: int = Field(default=5_000, ge=0, le=BPS)
    keeper_share_bps: int = Field(default=3_000, ge=0, le=BPS)
    max_positions_per_account: int = Field(default=8, gt=0, le=32)
    min_position_notional_usd: float = Field(default=50.0, ge=0)
    keeper_reward_cap_usd: float = Field(default=1_000.0, ge=0)

    def as_tuple(self) -> tuple[int, int, int, int, int, int]:
        """The contract's `LiquidationConfig` struct, in field order."""
        return (
            self.close_factor_bps,
            self.full_liquidation_health_bps,
            self.keeper_share_bps,
            self.max_positions_per_account,
            to_units(self.min_position_notional_usd, 18),
            to_units(self.keeper_reward_cap_usd, 18),
        )


class AttestationSpec(Frozen):
    """The engine's key set and the S1 parameters of the attestation verifier."""

    signers: int = Field(default=3, ge=1, le=32)
    threshold: int = Field(default=2, ge=1, le=32)
    max_age_s: int = Field(default=300, gt=0, le=86_400)
    price_band_bps: int = Field(default=100, gt=0, le=2_000)
    floor_bps: int = Field(default=5_000, ge=5_000, le=BPS)
    cap_bps: int = Field(default=50_000, ge=BPS, le=10 * BPS)
    max_batch_size: int = Field(default=500, gt=0, le=1_000)

    @model_validator(mode="after")
    def _quorum(self) -> AttestationSpec:
        if self.threshold > self.signers:
            raise ValueError(f"threshold {self.threshold} exceeds the {self.signers} signers")
        return self

    def params_tuple(self) -> tuple[int, int, int, int, int]:
        """The contract's `Params` struct, in field order."""
        return (
            self.max_age_s,
            self.price_band_bps,
            self.floor_bps,
            self.cap_bps,
            self.max_batch_size,
        )


class SystemSpec(Frozen):
    """Everything `marginsync deploy` sets up. Defaults follow production venues (standard perps:
    IM 10%, MM 6.5%; Aave-like close factor 50%)."""

    assets: tuple[OracleAssetSpec, ...] = (
        OracleAssetSpec(symbol="ETH", price_usd=3_000.0),
        OracleAssetSpec(symbol="BTC", price_usd=60_000.0),
        OracleAssetSpec(symbol="SOL", price_usd=150.0),
    )
    collaterals: tuple[CollateralSpec, ...] = (
        CollateralSpec(symbol="USDC", decimals=6, weight_bps=BPS, deposit_cap_tokens=1e12),
        CollateralSpec(
            symbol="WETH",
            decimals=18,
            oracle_symbol="ETH",
            weight_bps=8_000,
            deposit_cap_tokens=1e7,
        ),
        CollateralSpec(
            symbol="WBTC", decimals=8, oracle_symbol="BTC", weight_bps=7_500, deposit_cap_tokens=1e5
        ),
    )
    markets: tuple[MarketSpec, ...] = tuple(
        MarketSpec(
            symbol=f"{u}-PERP",
            underlying=u,
            im_bps=1_000,
            mm_bps=650,
            liquidation_penalty_bps=300,
            price_band_bps=200,
            max_position_size=size,
            open_interest_cap=size * 100,
        )
        for u, size in (("ETH", 10_000.0), ("BTC", 500.0), ("SOL", 200_000.0))
    )
    liquidation: LiquidationSpec = LiquidationSpec()
    # None deploys static margin only (the "Gen 2" rules).
    attestation: AttestationSpec | None = AttestationSpec()
    insurance_fund_usd: float = Field(default=100_000.0, ge=0)
    # The fund's standing offer (BackstopOffer): takers get the oracle price less this. Below
    # every market's price band, within the contract's 5% bound; 1% leaves the fund about 1.1%
    # of the 2.1% of notional it keeps from a 3% penalty when a taker unwinds at once.
    backstop_discount_bps: int = Field(default=100, ge=0, le=500)

    @model_validator(mode="after")
    def _consistent(self) -> SystemSpec:
        symbols = {a.symbol for a in self.assets}
        if not self.collaterals or self.collaterals[0].oracle_symbol is not None:
            raise ValueError("the first collateral is the quote token and has no oracle_symbol")
        for c in self.collaterals[1:]:
            if c.oracle_symbol not in symbols:
                raise ValueError(f"collateral {c.symbol}: unknown oracle_symbol {c.oracle_symbol}")
        for m in self.markets:
            if m.underlying not in symbols:
                raise ValueError(f"market {m.symbol}: unknown underlying {m.underlying}")
            if self.backstop_discount_bps >= m.price_band_bps:
                raise ValueError(
                    f"backstop_discount_bps {self.backstop_discount_bps} must be below market "
                    f"{m.symbol}'s price_band_bps {m.price_band_bps}"
                )
        return self


class AssetRecord(Frozen):
    id: int
    symbol: str
    feed: str
    feed_decimals: int


class CollateralRecord(Frozen):
    id: int
    symbol: str
    token: str
    decimals: int
    oracle_asset: int | None
    weight_bps: int


class MarketRecord(Frozen):
    id: int
    symbol: str
    oracle_asset: int
    im_bps: int
    mm_bps: int


class Deployment(Frozen):
    """The registry entry `deployments/<chainId>.json`: everything a client needs to find."""

    chain_id: int
    block: int
    clearinghouse: str
    oracle_router: str
    attestation_verifier: str | None = None
    margin_proofs: str | None = None
    engine_signers: tuple[str, ...] = ()
    owner: str
    matcher: str
    guardian: str
    insurance_fund: str
    backstop_offer: str | None = None
    auto_deleverage: str | None = None
    # The venue's VenueLink when it is linked to venues on other chains (offchain/link/deploy.py);
    # then the clearinghouse's attestor is this link, which falls back to `attestation_verifier`.
    venue_link: str | None = None
    assets: tuple[AssetRecord, ...]
    collaterals: tuple[CollateralRecord, ...]
    markets: tuple[MarketRecord, ...]

    def market(self, ref: str | int) -> MarketRecord:
        for m in self.markets:
            if str(m.id) == str(ref) or m.symbol.upper() == str(ref).upper():
                return m
        names = ", ".join(m.symbol for m in self.markets)
        raise ConfigError(f"unknown market {ref!r}", f"use one of: {names}")

    def collateral(self, ref: str | int) -> CollateralRecord:
        for c in self.collaterals:
            if str(c.id) == str(ref) or c.symbol.upper() == str(ref).upper():
                return c
        names = ", ".join(c.symbol for c in self.collaterals)
        raise ConfigError(f"unknown collateral {ref!r}", f"use one of: {names}")

    def asset(self, ref: str | int) -> AssetRecord:
        for a in self.assets:
            if str(a.id) == str(ref) or a.symbol.upper() == str(ref).upper():
                return a
        names = ", ".join(a.symbol for a in self.assets)
        raise ConfigError(f"unknown oracle asset {ref!r}", f"use one of: {names}")

    @staticmethod
    def path(deployments_dir: Path, chain_id: int) -> Path:
        return deployments_dir / f"{chain_id}.json"

    def save(self, deployments_dir: Path) -> Path:
        deployments_dir.mkdir(parents=True, exist_ok=True)
        path = self.path(deployments_dir, self.chain_id)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)  # atomic: a crash never leaves half a registry
        return path

    @classmethod
    def load(cls, deployments_dir: Path, chain_id: int) -> Deployment:
        path = cls.path(deployments_dir, chain_id)
        if not path.exists():
            raise DeploymentMissing(chain_id, str(path))
        return cls.model_validate_json(path.read_text())
