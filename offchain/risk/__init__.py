"""marginsync risk library: pure numpy margin models, vectorised over all accounts.

Entry point: `RiskEngine(config, instruments, positions).tick(prices_usd, now_s, vols)` returns a
`MarginResult` (IM, MM, standard fallback, greeks). The model functions underneath are pure and
usable on their own (tests and the lab call them directly). `health.py` (the integer mirror of
the contract's health check) is separate and imports nothing from here.
"""

from offchain.risk.checks import RiskInputError
from offchain.risk.config import (
    MarketConfig,
    RiskConfig,
    ScenarioMarginConfig,
    StandardMarginConfig,
    TierConfig,
    VarConfig,
    VolatilityMarginConfig,
    load_risk_config,
)
from offchain.risk.engine import AccountGreeks, MarginResult, RiskEngine
from offchain.risk.instruments import InstrumentKind, Instruments, Positions
from offchain.risk.normal import norm_cdf, norm_pdf, norm_ppf
from offchain.risk.options import OptionGreeks, black76_greeks, black76_price
from offchain.risk.portfolio import ScenarioGrid, VolShockLaw, build_scenario_grid
from offchain.risk.standard import TierSchedule, tiered_margin
from offchain.risk.var import (
    VarEs,
    correlated_normal_returns,
    estimate_correlation,
    historical_var_es,
    monte_carlo_var_es,
    nearest_correlation_psd,
    scenario_var_es,
)
from offchain.risk.volatility import EwmaState, ewma_update, volatility_mm_rate

__all__ = [
    "AccountGreeks",
    "EwmaState",
    "InstrumentKind",
    "Instruments",
    "MarginResult",
    "MarketConfig",
    "OptionGreeks",
    "Positions",
    "RiskConfig",
    "RiskEngine",
    "RiskInputError",
    "ScenarioGrid",
    "ScenarioMarginConfig",
    "StandardMarginConfig",
    "TierConfig",
    "TierSchedule",
    "VarConfig",
    "VarEs",
    "VolShockLaw",
    "VolatilityMarginConfig",
    "black76_greeks",
    "black76_price",
    "build_scenario_grid",
    "correlated_normal_returns",
    "estimate_correlation",
    "ewma_update",
    "historical_var_es",
    "load_risk_config",
    "monte_carlo_var_es",
    "nearest_correlation_psd",
    "norm_cdf",
    "norm_pdf",
    "norm_ppf",
    "scenario_var_es",
    "tiered_margin",
    "volatility_mm_rate",
]
