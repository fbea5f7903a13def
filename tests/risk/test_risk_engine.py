"""The entry point: mixed models, state across ticks, equality with per-account loops, errors."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from offchain.bench.risk import (
    NOW_S,
    PM_SPOT_USD,
    loop_linear_margin,
    loop_portfolio_mm,
    options_workload,
    perp_workload,
)
from offchain.risk import (
    Instruments,
    MarketConfig,
    Positions,
    RiskConfig,
    RiskEngine,
    RiskInputError,
    correlated_normal_returns,
    load_risk_config,
    scenario_var_es,
)

EngineFactory = Callable[..., RiskEngine]
T0 = 1_750_000_000.0


def test_engine__random_perp_book__equals_the_per_account_loop() -> None:
    engine, prices = perp_workload(300, n_markets=5, seed=9)
    result = engine.tick(prices, NOW_S)
    vol_mm, std_mm = loop_linear_margin(engine, prices, 300)
    assert result.mm_usd == pytest.approx(vol_mm, rel=1e-12)
    assert result.standard_mm_usd == pytest.approx(std_mm, rel=1e-12)
    assert result.im_usd == pytest.approx(1.5 * result.mm_usd, rel=1e-12)


def test_engine__random_options_book__equals_the_per_account_loop() -> None:
    engine, vols = options_workload(150, seed=5)
    result = engine.tick(PM_SPOT_USD, NOW_S, vols)
    assert result.mm_usd == pytest.approx(
        loop_portfolio_mm(engine, PM_SPOT_USD, vols, 150), rel=1e-10
    )
    assert result.im_usd == pytest.approx(1.25 * result.mm_usd, rel=1e-12)


def test_engine__mixed_models__sum_each_markets_requirement(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    book = {0: {"BTC-PERP": 3.0, "ETH-PERP": -40.0}, 1: {"BTC-PERP": 3.0}, 2: {"ETH-PERP": -40.0}}
    mixed = make_engine(book, models=("portfolio", "volatility")).tick(spot_usd, T0, option_vols)
    assert mixed.mm_usd[0] == pytest.approx(mixed.mm_usd[1] + mixed.mm_usd[2])
    assert mixed.mm_usd[1] == pytest.approx(0.21 * 3.0 * 60_000.0)


def test_engine__account_without_positions__requires_zero(
    make_engine: EngineFactory, spot_usd: np.ndarray
) -> None:
    result = make_engine({1: {"BTC-PERP": 1.0}}, n_accounts=3).tick(spot_usd, T0)
    assert result.mm_usd[0] == 0.0
    assert result.mm_usd[2] == 0.0
    assert result.mm_usd[1] > 0.0


def test_engine__duplicate_entries__are_netted(
    market_instruments: Instruments, spot_usd: np.ndarray
) -> None:
    config = RiskConfig(markets=(MarketConfig(underlying="BTC"), MarketConfig(underlying="ETH")))
    split = Positions.build(
        1, [0, 0, 0], [0, 0, 1], [2.0, 3.0, 0.0], market_instruments.n_instruments
    )
    whole = Positions.build(1, [0], [0], [5.0], market_instruments.n_instruments)
    a = RiskEngine(config, market_instruments, split).tick(spot_usd, T0)
    b = RiskEngine(config, market_instruments, whole).tick(spot_usd, T0)
    assert a.mm_usd == pytest.approx(b.mm_usd)


def test_engine__with_positions__keeps_the_ewma_state(
    make_engine: EngineFactory, spot_usd: np.ndarray
) -> None:
    engine = make_engine({0: {"ETH-PERP": 1.0}}, models=("volatility", "volatility"))
    engine.tick(spot_usd, T0)
    engine.tick(spot_usd * np.array([1.0, 0.9]), T0 + 60.0)
    moved = engine.ewma_state.sigma_annual.copy()
    rebuilt = engine.with_positions(
        Positions.build(2, [1], [1], [2.0], engine.instruments.n_instruments)
    )
    assert rebuilt.ewma_state.sigma_annual == pytest.approx(moved)
    assert moved[1] > moved[0]


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("prices", "field"),
    [([60_000.0, math.nan], "prices_usd"), ([60_000.0, -1.0], "prices_usd"), ([1.0], "prices_usd")],
)
def test_tick__bad_prices__raise_naming_prices_usd(
    make_engine: EngineFactory, prices: list[float], field: str
) -> None:
    engine = make_engine({0: {"BTC-PERP": 1.0}})
    with pytest.raises(RiskInputError, match=field):
        engine.tick(prices, T0)


def test_tick__held_option_after_expiry__raises_naming_the_option(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    engine = make_engine({0: {"BTC-30D-60000-C": -1.0}})
    with pytest.raises(RiskInputError, match=r"BTC-30D-60000-C.*expired.*with_positions"):
        engine.tick(spot_usd, T0 + 31 * 86_400.0, option_vols)


def test_tick__held_option_without_vols__raises_naming_option_vols_annual(
    make_engine: EngineFactory, spot_usd: np.ndarray, option_vols: np.ndarray
) -> None:
    engine = make_engine({0: {"BTC-30D-54000-P": 2.0}})
    with pytest.raises(RiskInputError, match="option_vols_annual is required"):
        engine.tick(spot_usd, T0)
    bad = option_vols.copy()
    bad[engine.instruments.ids.index("BTC-30D-54000-P")] = math.nan
    with pytest.raises(RiskInputError, match=r"option_vols_annual.*BTC-30D-54000-P"):
        engine.tick(spot_usd, T0, bad)


def test_positions__unknown_instrument_id__raises_naming_it(
    market_instruments: Instruments,
) -> None:
    with pytest.raises(RiskInputError, match="SOL-PERP"):
        Positions.from_ids(market_instruments, 1, [0], ["SOL-PERP"], [1.0])


@pytest.mark.parametrize(
    ("accounts", "instruments", "sizes", "field"),
    [
        ([0, 5], [0, 0], [1.0, 1.0], "account_idx"),
        ([0], [99], [1.0], "instrument_idx"),
        ([0, 0], [0, 1], [1.0], "equal length"),
        ([0], [0], [math.inf], "size"),
    ],
)
def test_positions__malformed_arrays__raise_naming_the_field(
    market_instruments: Instruments,
    accounts: list[int],
    instruments: list[int],
    sizes: list[float],
    field: str,
) -> None:
    with pytest.raises(RiskInputError, match=field):
        Positions.build(2, accounts, instruments, sizes, market_instruments.n_instruments)


def test_engine__options_in_a_volatility_market__are_refused_with_the_fix(
    make_engine: EngineFactory,
) -> None:
    with pytest.raises(RiskInputError, match=r"volatility.*'portfolio'"):
        make_engine({0: {"BTC-30D-60000-C": 1.0}}, models=("volatility", "standard"))


def test_engine__underlying_without_market_config__raises_naming_it(
    market_instruments: Instruments,
) -> None:
    config = RiskConfig(markets=(MarketConfig(underlying="BTC"),))
    positions = Positions.build(1, [0], [0], [1.0], market_instruments.n_instruments)
    with pytest.raises(RiskInputError, match="'ETH'"):
        RiskEngine(config, market_instruments, positions)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (
            {"markets": [{"underlying": "BTC", "volatility": {"lambda_per_day": 1.5}}]},
            "markets.0.volatility.lambda_per_day",
        ),
        ({"markets": [{"underlying": "BTC", "model": "magic"}]}, "markets.0.model"),
        (
            {
                "markets": [
                    {
                        "underlying": "BTC",
                        "standard": {
                            "tiers": [
                                {"notional_floor_usd": 0, "im_rate": 0.2, "mm_rate": 0.1},
                                {"notional_floor_usd": 1e6, "im_rate": 0.1, "mm_rate": 0.05},
                            ]
                        },
                    }
                ]
            },
            "markets.0.standard",
        ),
        (
            {"markets": [{"underlying": "BTC"}], "scenario": {"correlations": {"BTC/ETH": 0.5}}},
            "unknown markets",
        ),
        ({"markets": [{"underlying": "BTC", "volatilty": {}}]}, "markets.0.volatilty"),
        ({"markets": []}, "markets"),
    ],
)
def test_load_risk_config__bad_field__raises_naming_its_path(
    config: dict[str, object], field: str
) -> None:
    with pytest.raises(RiskInputError, match=field.replace(".", r"\.")):
        load_risk_config(config)


def test_load_risk_config__defaults__match_the_reference_figures() -> None:
    config = load_risk_config({"markets": [{"underlying": "BTC"}]})
    tier0 = config.markets[0].standard.tiers[0]
    assert (tier0.im_rate, tier0.mm_rate) == (0.10, 0.065)
    assert config.markets[0].volatility.lambda_per_day == 0.94
    assert (config.var.var_confidence, config.var.es_confidence) == (0.99, 0.975)
    assert (config.scenario.spot_step * config.scenario.spot_steps_each_side) == pytest.approx(0.18)
    assert config.scenario.im_factor == 1.25


def test_engine_var_es__historical_and_monte_carlo__use_the_configured_levels(
    make_engine: EngineFactory, spot_usd: np.ndarray
) -> None:
    engine = make_engine({0: {"BTC-PERP": 1.0, "ETH-PERP": -20.0}, 1: {"ETH-PERP": 5.0}})
    greeks = engine.tick(spot_usd, T0).greeks
    assert greeks is not None
    window = correlated_normal_returns([0.03, 0.04], [[1.0, 0.8], [0.8, 1.0]], 500, seed=4)
    historical = engine.var_es(greeks, spot_usd, window)
    direct = scenario_var_es(greeks.delta_exposure_usd(spot_usd), window, 0.99, 0.975)
    assert np.array_equal(historical.es_usd, direct.es_usd)
    first = engine.var_es(greeks, spot_usd, window, "monte_carlo")
    again = engine.var_es(greeks, spot_usd, window, "monte_carlo")
    assert np.array_equal(first.var_usd, again.var_usd)
    # Long BTC / short ETH of equal notional is a hedge: its ES is below the lone ETH position's
    # scaled to the same notional.
    assert first.es_usd[0] < 4.0 * first.es_usd[1]
