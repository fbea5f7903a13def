"""Factories for small books: instruments by name, engines by market model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from offchain.risk import (
    Instruments,
    MarketConfig,
    Positions,
    RiskConfig,
    RiskEngine,
    ScenarioMarginConfig,
)

NOW_S = 1_750_000_000.0
DAY_S = 86_400.0
SPOT_USD = {"BTC": 60_000.0, "ETH": 3_000.0}


@pytest.fixture(scope="session")
def market_instruments() -> Instruments:
    """BTC and ETH perps plus a 30-day BTC strip (calls and puts at 54k, 60k, 66k)."""
    ids = ["BTC-PERP", "ETH-PERP"]
    kinds = ["perp", "perp"]
    underlying_of = ["BTC", "ETH"]
    strikes = [np.nan, np.nan]
    expiries = [np.nan, np.nan]
    for strike in (54_000.0, 60_000.0, 66_000.0):
        for kind in ("call", "put"):
            ids.append(f"BTC-30D-{int(strike)}-{kind[0].upper()}")
            kinds.append(kind)
            underlying_of.append("BTC")
            strikes.append(strike)
            expiries.append(NOW_S + 30 * DAY_S)
    return Instruments.build(["BTC", "ETH"], ids, kinds, underlying_of, strikes, expiries)


EngineFactory = Callable[..., RiskEngine]


@pytest.fixture(scope="session")
def make_engine(market_instruments: Instruments) -> EngineFactory:
    """Build an engine over `market_instruments` from {account: {instrument id: size}}."""

    def make(
        book: dict[int, dict[str, float]],
        models: Sequence[str] = ("portfolio", "portfolio"),
        n_accounts: int | None = None,
        scenario: ScenarioMarginConfig | None = None,
    ) -> RiskEngine:
        accounts, ids, sizes = [], [], []
        for account, holdings in book.items():
            for iid, size in holdings.items():
                accounts.append(account)
                ids.append(iid)
                sizes.append(size)
        n = n_accounts if n_accounts is not None else max(book, default=-1) + 1
        positions = Positions.from_ids(market_instruments, n, accounts, ids, sizes)
        config = RiskConfig(
            markets=tuple(
                MarketConfig(underlying=name, model=model)  # type: ignore[arg-type]
                for name, model in zip(("BTC", "ETH"), models, strict=True)
            ),
            scenario=scenario or ScenarioMarginConfig(correlations={"BTC/ETH": 0.8}),
        )
        return RiskEngine(config, market_instruments, positions)

    return make


@pytest.fixture(scope="session")
def spot_usd() -> np.ndarray:
    return np.array([SPOT_USD["BTC"], SPOT_USD["ETH"]])


@pytest.fixture(scope="session")
def option_vols(market_instruments: Instruments) -> np.ndarray:
    vols = np.full(market_instruments.n_instruments, 0.6)
    vols[~market_instruments.is_option] = np.nan
    return vols
