"""The one entry point: `RiskEngine.tick(prices, now)` → IM, MM and greeks for every account.

The engine is built once per position set (netting, sorting, index arrays, per-market parameter
arrays) and keeps only the EWMA state between ticks, so a tick is a fixed sequence of array
passes over the positions with no Python loop over accounts. When positions change, build the
next engine with `with_positions`, which carries the EWMA state over.

Each market (underlying) uses the model its `MarketConfig.model` names:
* "standard": progressive notional tiers on each position (standard.py); a short option also
  owes its mark value, a long option never more than its mark value;
* "volatility": EWMA σ → z·σ·√horizon rate on the net notional per (account, underlying)
  (volatility.py); perps only, since a linear rate cannot see an option's convexity;
* "portfolio": scenario grid with Black-76 revaluation and cross-underlying offsets among all
  portfolio markets of the account (portfolio.py).
An account's requirement is the sum over its markets' models. The standard requirement of every
position is also reported (`standard_*_usd`): it is the static fallback the contract enforces
when no attestation is in force, and the baseline for capital-efficiency figures.

Options are never given a silent value: an option held by any account needs a finite positive
implied volatility each tick and must not have expired (settle it and rebuild the engine).
Options are priced with Black-76 on the underlying's index price with zero carry and no
discounting (F = S, D = 1), the convention of crypto options settled on a perp's index.

Memory: the linear models keep a dense (2·underlyings × accounts) float64 matrix, e.g. 13 MB for
100,000 accounts × 8 markets; greeks are dense (accounts × underlyings) arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from offchain.risk.checks import (
    FloatArray,
    RiskInputError,
    as_float_array,
    bincount_sum,
    require_positive,
    require_shape,
)
from offchain.risk.config import RiskConfig
from offchain.risk.instruments import (
    SECONDS_PER_DAY,
    SECONDS_PER_YEAR,
    Instruments,
    Positions,
    build_book,
)
from offchain.risk.normal import norm_ppf
from offchain.risk.options import black76_greeks, black76_price
from offchain.risk.portfolio import (
    ScenarioBook,
    VolShockLaw,
    build_scenario_grid,
    combine_across_underlyings,
    group_scenario_losses,
    offset_credit_matrix,
    option_scenario_values,
)
from offchain.risk.standard import (
    SortedSizes,
    TierSchedule,
    tier_excess_entries,
    tiered_margin,
)
from offchain.risk.var import (
    VarEs,
    estimate_correlation,
    historical_var_es,
    monte_carlo_var_es,
)
from offchain.risk.volatility import EwmaState, ewma_update, volatility_mm_rate

_MODEL_CODE = {"standard": 0, "volatility": 1, "portfolio": 2}
STANDARD, VOLATILITY, PORTFOLIO = 0, 1, 2


@dataclass(frozen=True)
class AccountGreeks:
    """Accounts × underlyings sums over each account's positions (options by Black-76).

    delta_units: ∂V/∂S in units of the underlying (a perp counts 1 per unit held);
    gamma_per_usd: ∂²V/∂S²; vega_usd_per_vol: ∂V/∂σ per 1.00 of annualised volatility;
    theta_usd_per_day: value change over one calendar day, spot and vol unchanged.
    """

    delta_units: FloatArray
    gamma_per_usd: FloatArray
    vega_usd_per_vol: FloatArray
    theta_usd_per_day: FloatArray

    def delta_exposure_usd(self, prices_usd: FloatArray) -> FloatArray:
        """Delta-equivalent USD exposure per account and underlying (input to VaR/ES)."""
        return np.asarray(self.delta_units * prices_usd[None, :], dtype=np.float64)


@dataclass(frozen=True)
class MarginResult:
    im_usd: FloatArray
    mm_usd: FloatArray
    standard_im_usd: FloatArray
    standard_mm_usd: FloatArray
    sigma_annual: FloatArray
    greeks: AccountGreeks | None


class RiskEngine:
    """Precomputed index arrays + EWMA state; `tick` is the hot path."""

    def __init__(
        self,
        config: RiskConfig,
        instruments: Instruments,
        positions: Positions,
        *,
        ewma_state: EwmaState | None = None,
    ) -> None:
        self.config = config
        self.instruments = instruments
        markets = [config.market(name) for name in instruments.underlyings]
        self._model = np.array([_MODEL_CODE[m.model] for m in markets], dtype=np.intp)
        self._tiers = TierSchedule.build(
            [[t.notional_floor_usd for t in m.standard.tiers] for m in markets],
            [[t.im_rate for t in m.standard.tiers] for m in markets],
            [[t.mm_rate for t in m.standard.tiers] for m in markets],
        )
        vol = [m.volatility for m in markets]
        self._lambda_per_day = np.array([v.lambda_per_day for v in vol])
        self._fast_half_life_s = np.array(
            [math.inf if v.fast_half_life_s is None else v.fast_half_life_s for v in vol]
        )
        self._z = np.array([norm_ppf(v.confidence) for v in vol])
        self._horizon_s = np.array([v.liquidation_horizon_s for v in vol])
        self._floor_rate = np.array([v.floor_mm_rate for v in vol])
        self._cap_rate = np.array([v.cap_mm_rate for v in vol])
        self._im_multiplier = np.array([v.im_multiplier for v in vol])
        if ewma_state is None:
            ewma_state = EwmaState.initial(
                np.array([v.initial_sigma_annual for v in vol]),
                np.isfinite(self._fast_half_life_s),
            )
        elif ewma_state.var_slow_per_s.shape != (instruments.n_underlyings,):
            raise RiskInputError("ewma_state must have one entry per underlying")
        self.ewma_state = ewma_state
        sc = config.scenario
        self._grid = build_scenario_grid(
            sc.spot_step,
            sc.spot_steps_each_side,
            sc.tail_spot_multipliers,
            sc.tail_linear_equivalent,
            sc.skew_scenarios,
        )
        self._law = VolShockLaw(
            sc.vol_range_up,
            sc.vol_range_down,
            sc.short_term_power,
            sc.long_term_power,
            sc.power_switch_days,
            sc.dte_floor_days,
            sc.min_vol_up_annual,
            sc.skew_cap,
            sc.skew_kstar_per_sqrt_year,
            sc.skew_min_kstar,
        )
        self._credit = offset_credit_matrix(instruments.underlyings, sc.correlations)
        self.book = build_book(instruments, positions)
        self._prepare()

    def var_es(
        self,
        greeks: AccountGreeks,
        prices_usd: ArrayLike,
        returns_window: ArrayLike,
        method: Literal["historical", "monte_carlo"] = "historical",
    ) -> VarEs:
        """VaR/ES of every account's delta exposure at `config.var` confidence levels.

        `returns_window` is (underlyings × observations) of returns over the risk horizon.
        "historical" replays it; "monte_carlo" estimates σ and correlation from it and draws
        `config.var.mc_scenarios` correlated normal scenarios with `config.var.seed`.
        """
        prices = _check_prices(prices_usd, self.instruments.n_underlyings)
        exposures = greeks.delta_exposure_usd(prices)
        cfg = self.config.var
        if method == "historical":
            return historical_var_es(
                exposures, returns_window, cfg.var_confidence, cfg.es_confidence
            )
        if method != "monte_carlo":
            raise RiskInputError(f"method must be 'historical' or 'monte_carlo', got {method!r}")
        sigma, corr = estimate_correlation(returns_window)
        return monte_carlo_var_es(
            exposures,
            sigma,
            corr,
            cfg.mc_scenarios,
            cfg.seed,
            cfg.var_confidence,
            cfg.es_confidence,
            cfg.min_eigenvalue,
        )

    def with_positions(self, positions: Positions) -> RiskEngine:
        """A new engine for changed positions that keeps this one's EWMA state."""
        return RiskEngine(self.config, self.instruments, positions, ewma_state=self.ewma_state)

    @property
    def n_accounts(self) -> int:
        return self.book.n_accounts

    @property
    def n_scenarios(self) -> int:
        return self._grid.n_scenarios

    # ------------------------------------------------------------------ precomputation

    def _prepare(self) -> None:
        book, inst = self.book, self.instruments
        pos_model = self._model[book.underlying_idx]
        pos_is_option = inst.is_option[book.instrument_idx]
        options_in_vol = pos_is_option & (pos_model == VOLATILITY)
        if np.any(options_in_vol):
            bad = sorted({inst.ids[int(i)] for i in book.instrument_idx[options_in_vol]})[:5]
            raise RiskInputError(
                f"options {bad} are held in a 'volatility' market, which cannot margin "
                "convexity; set that market's model to 'portfolio' (or 'standard')"
            )
        n_und = book.n_underlyings
        self._is_standard_market = (self._model == STANDARD).astype(np.float64)
        self._is_volatility_market = self._model == VOLATILITY
        # Perps' standard and volatility requirements are rates × price per underlying applied
        # to static per-(underlying, account) sizes: one (4 × 2U) · (2U × A) product per tick.
        # Rows: gross |size| of perps per underlying, then |net size| in volatility markets.
        # Stored underlying-major so each output row is contiguous.
        perp = ~pos_is_option
        abs_size = np.abs(book.size)
        self._sizes = np.zeros((2 * n_und, book.n_accounts))
        np.add.at(self._sizes, (book.underlying_idx[perp], book.account_idx[perp]), abs_size[perp])
        vol_book = book.subset(pos_model == VOLATILITY)
        self._sizes[n_und + vol_book.group_underlying, vol_book.group_account] = np.abs(
            vol_book.sum_by_group(vol_book.size)
        )
        self._has_volatility = bool(vol_book.n_groups)
        self._sorted_sizes = SortedSizes.build(
            abs_size[perp], book.underlying_idx[perp], book.account_idx[perp], n_und
        )

        pm_book = book.subset(pm := pos_model == PORTFOLIO)
        self._pm_book = pm_book
        pm_option = inst.is_option[pm_book.instrument_idx]
        self._pm_option_instruments, pm_option_row = np.unique(
            pm_book.instrument_idx[pm_option], return_inverse=True
        )
        self._scenario_book = ScenarioBook.build(
            pm_book.n_groups,
            pm_book.group_of_position,
            pm_book.size,
            pm_option,
            inst.is_call[pm_book.instrument_idx],
            pm_option_row.ravel().astype(np.intp),
        )
        self._has_portfolio = bool(np.any(pm))

        # Greeks: perps contribute a constant delta, so only option positions are touched per tick.
        self._perp_delta = np.zeros((book.n_accounts, book.n_underlyings))
        np.add.at(
            self._perp_delta,
            (book.account_idx[~pos_is_option], book.underlying_idx[~pos_is_option]),
            book.size[~pos_is_option],
        )
        self._perp_delta.flags.writeable = False
        self._zeros = np.zeros_like(self._perp_delta)
        self._zeros.flags.writeable = False
        self._held_options, option_row = np.unique(
            book.instrument_idx[pos_is_option], return_inverse=True
        )
        self._option_row = option_row.ravel().astype(np.intp)
        self._option_cell = (
            book.account_idx[pos_is_option] * book.n_underlyings
            + book.underlying_idx[pos_is_option]
        )
        self._option_size = book.size[pos_is_option]
        self._option_account = book.account_idx[pos_is_option]
        self._option_underlying = book.underlying_idx[pos_is_option]

    # ------------------------------------------------------------------ hot path

    def tick(
        self,
        prices_usd: ArrayLike,
        now_s: float,
        option_vols_annual: ArrayLike | None = None,
        *,
        with_greeks: bool = True,
    ) -> MarginResult:
        """Update the EWMA state with this tick and return every account's requirement.

        prices_usd: one price per underlying (order of `instruments.underlyings`), > 0.
        now_s: unix seconds, not earlier than the previous tick.
        option_vols_annual: implied vol per instrument (shape (n_instruments,)); entries of
            perps and of options nobody holds are ignored and may be NaN. Required if any
            account holds an option.
        """
        prices = _check_prices(prices_usd, self.instruments.n_underlyings)
        if not math.isfinite(now_s):
            raise RiskInputError(f"now_s must be finite unix seconds, got {now_s!r}")
        t_years, vols = self._option_inputs(option_vols_annual, now_s)
        self.ewma_state = ewma_update(
            self.ewma_state, prices, now_s, self._lambda_per_day, self._fast_half_life_s
        )
        im, mm, standard_im, standard_mm = self._linear_margin(prices)
        if self._held_options.size:
            self._add_option_standard_margin(
                prices, t_years, vols, im, mm, standard_im, standard_mm
            )
        if self._has_portfolio:
            pm_mm = self._portfolio_mm(prices, t_years, vols)
            mm += pm_mm
            im += self.config.scenario.im_factor * pm_mm
        greeks = self._greeks(prices, t_years, vols) if with_greeks else None
        return MarginResult(im, mm, standard_im, standard_mm, self.ewma_state.sigma_annual, greeks)

    def _option_inputs(
        self, option_vols_annual: ArrayLike | None, now_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """Time to expiry (years) and implied vol of every instrument; only held options are
        checked, the rest are NaN."""
        n = self.instruments.n_instruments
        t_years = (self.instruments.expiry_s - now_s) / SECONDS_PER_YEAR
        if not self._held_options.size:
            return t_years, np.full(n, np.nan)
        ids = self.instruments.ids
        held = self._held_options
        expired = held[~(t_years[held] > 0.0)]
        if expired.size:
            raise RiskInputError(
                f"options {[ids[int(i)] for i in expired[:5]]} have expired at now_s={now_s}; "
                "settle them and rebuild the engine with with_positions() before the next tick"
            )
        if option_vols_annual is None:
            raise RiskInputError(
                "option_vols_annual is required: accounts hold options "
                f"{[ids[int(i)] for i in held[:5]]}; pass one implied vol per instrument"
            )
        vols = np.asarray(option_vols_annual, dtype=np.float64)
        require_shape("option_vols_annual", vols, (n,))
        bad = held[~(np.isfinite(vols[held]) & (vols[held] > 0.0))]
        if bad.size:
            raise RiskInputError(
                f"option_vols_annual must be finite and > 0 for held options; bad for "
                f"{[ids[int(i)] for i in bad[:5]]}"
            )
        return t_years, vols

    def _linear_margin(
        self, prices: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(model IM, model MM, standard IM, standard MM) per account from the standard tiers
        and the volatility model; portfolio markets contribute only to the standard pair."""
        n_und = self.book.n_underlyings
        base_im = self._tiers.im_rate_increment[:, 0] * prices
        base_mm = self._tiers.mm_rate_increment[:, 0] * prices
        weights = np.zeros((2 * n_und, 4))
        weights[:n_und, 0] = base_im * self._is_standard_market
        weights[:n_und, 1] = base_mm * self._is_standard_market
        weights[:n_und, 2] = base_im
        weights[:n_und, 3] = base_mm
        if self._has_volatility:
            rate = volatility_mm_rate(
                self.ewma_state.sigma_per_sqrt_s,
                self._z,
                self._horizon_s,
                self._floor_rate,
                self._cap_rate,
            )
            vol_mm = np.where(self._is_volatility_market, rate * prices, 0.0)
            weights[n_und:, 0] = self._im_multiplier * vol_mm
            weights[n_und:, 1] = vol_mm
        # einsum runs single-threaded: a BLAS product this thin gains little from threads and
        # stalls for milliseconds when another process holds the second core.
        totals = np.einsum("kc,ka->ca", weights, self._sizes)
        account, und, im_excess, mm_excess = tier_excess_entries(
            self._sorted_sizes, prices, self._tiers
        )
        if account.size:
            n = self.book.n_accounts
            std = self._is_standard_market[und]
            totals[0] += bincount_sum(account, im_excess * std, n)
            totals[1] += bincount_sum(account, mm_excess * std, n)
            totals[2] += bincount_sum(account, im_excess, n)
            totals[3] += bincount_sum(account, mm_excess, n)
        return totals[0], totals[1], totals[2], totals[3]

    def _add_option_standard_margin(
        self,
        prices: FloatArray,
        t_years: FloatArray,
        vols: FloatArray,
        im: FloatArray,
        mm: FloatArray,
        standard_im: FloatArray,
        standard_mm: FloatArray,
    ) -> None:
        """Standard margin of option positions, added in place to the account totals.

        Short: the tiered rate on the underlying notional plus the option's mark value (what it
        costs to buy back), as in Derive's standard manager. Long: the tiered amount, but never
        more than the mark value, which is all a long option can lose.
        """
        inst, rows = self.instruments, self._held_options
        value = black76_price(
            prices[inst.underlying_idx[rows]],
            inst.strike_usd[rows],
            t_years[rows],
            vols[rows],
            inst.is_call[rows],
        )
        size = self._option_size
        notional = np.abs(size) * prices[self._option_underlying]
        tier_im, tier_mm = tiered_margin(notional, self._option_underlying, self._tiers)
        mark = value[self._option_row] * np.abs(size)
        short = size < 0.0
        pos_im = np.where(short, tier_im + mark, np.minimum(tier_im, mark))
        pos_mm = np.where(short, tier_mm + mark, np.minimum(tier_mm, mark))
        n, account = self.book.n_accounts, self._option_account
        standard_im += bincount_sum(account, pos_im, n)
        standard_mm += bincount_sum(account, pos_mm, n)
        in_standard = self._is_standard_market[self._option_underlying]
        if np.any(in_standard):
            im += bincount_sum(account, pos_im * in_standard, n)
            mm += bincount_sum(account, pos_mm * in_standard, n)

    def _portfolio_mm(
        self, prices: FloatArray, t_years: FloatArray, vols: FloatArray
    ) -> FloatArray:
        pm, inst, grid = self._pm_book, self.instruments, self._grid
        rows = self._pm_option_instruments
        forward = prices[inst.underlying_idx[rows]]
        values = np.empty((rows.size, 1 + grid.n_scenarios))
        if rows.size:
            strike, t, sigma = inst.strike_usd[rows], t_years[rows], vols[rows]
            call = inst.is_call[rows]
            values[:, 0] = black76_price(forward, strike, t, sigma, call)
            values[:, 1:] = option_scenario_values(forward, strike, t, sigma, call, grid, self._law)
        sc = self.config.scenario
        losses = group_scenario_losses(
            grid,
            self._scenario_book,
            prices[pm.group_underlying],
            values,
            sc.perp_contingency_rate,
            sc.short_option_contingency_rate,
        )
        return combine_across_underlyings(
            losses=losses,
            group_account=pm.group_account,
            group_underlying=pm.group_underlying,
            n_accounts=pm.n_accounts,
            n_underlyings=pm.n_underlyings,
            offset_credit=self._credit,
            floor_fraction=sc.floor_fraction,
        )

    def _greeks(self, prices: FloatArray, t_years: FloatArray, vols: FloatArray) -> AccountGreeks:
        if not self._held_options.size:
            return AccountGreeks(self._perp_delta, self._zeros, self._zeros, self._zeros)
        inst, rows = self.instruments, self._held_options
        g = black76_greeks(
            prices[inst.underlying_idx[rows]],
            inst.strike_usd[rows],
            t_years[rows],
            vols[rows],
            inst.is_call[rows],
        )
        shape = self._perp_delta.shape
        cells = shape[0] * shape[1]

        def per_account(unit: FloatArray) -> FloatArray:
            summed = bincount_sum(
                self._option_cell, unit[self._option_row] * self._option_size, cells
            )
            return summed.reshape(shape)

        return AccountGreeks(
            delta_units=self._perp_delta + per_account(g.delta),
            gamma_per_usd=per_account(g.gamma),
            vega_usd_per_vol=per_account(g.vega),
            theta_usd_per_day=per_account(g.theta_per_year * (SECONDS_PER_DAY / SECONDS_PER_YEAR)),
        )


def _check_prices(prices_usd: ArrayLike, n_underlyings: int) -> FloatArray:
    prices = as_float_array("prices_usd", prices_usd, ndim=1)
    require_shape("prices_usd", prices, (n_underlyings,))
    require_positive("prices_usd", prices)
    return prices
