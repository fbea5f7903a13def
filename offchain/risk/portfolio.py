"""Portfolio margin by scenarios (Derive v2 / Paradex law) with cross-underlying offsets.

Per underlying, every instrument is revalued on a grid of spot × volatility scenarios: perps
linearly, options with Black-76 at the shocked forward and shocked volatility. An (account,
underlying) group's requirement is its worst scenario loss plus contingencies (perp notional × 3%,
naked short options × 2% of spot). Groups of one account are then combined across underlyings
with a correlation offset and a floor; IM = im_factor × MM.

Scenario P&L is computed per *instrument* (a few hundred Black-76 calls per scenario), then
spread to positions: perps through the group's net size (one outer product), options through a
gather of their row and one `np.add.reduceat` over the option positions. No loop over accounts.

Cross-underlying rule. Let L_u ≥ 0 be group u's requirement and s_u the direction of its worst
scenario (+1 if spot fell, −1 if it rose, 0 for pure volatility/skew scenarios). With
x_u = s_u·L_u, P = {u: s_u = +1}, N = {u: s_u = −1}:

    combined = sqrt((Σ_{P∪N} L)² − 2·Σ_{i∈P, j∈N} (1 + ρ_ij)·L_i·L_j) + Σ_{s_u = 0} L_u

i.e. sqrt(xᵀ C x) with C_ij = 1 for same-direction pairs (no diversification credit between two
longs: crypto falls together) and C_ij = ρ_ij for opposite-direction pairs (a long/short hedge
earns credit (1 + ρ)·L_i·L_j). Pairs without a configured ρ get ρ = −1, i.e. no credit. Since
−1 ≤ ρ ≤ 1 the square root lies in [|ΣP − ΣN|, Σ L]: never more than the standalone sum, and no
positive-definiteness repair is needed. Finally MM = max(combined, floor_fraction × Σ L).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from offchain.risk.checks import BoolArray, FloatArray, IntArray, bincount_sum
from offchain.risk.instruments import SECONDS_PER_DAY, SECONDS_PER_YEAR
from offchain.risk.options import black76_price


class VolMode(IntEnum):
    NONE = 0
    UP = 1
    DOWN = 2
    SKEW_LINEAR = 3
    SKEW_ABS = 4


@dataclass(frozen=True)
class ScenarioGrid:
    spot_multiplier: FloatArray
    vol_mode: NDArray[np.int8]
    dampening: FloatArray

    @property
    def n_scenarios(self) -> int:
        return int(self.spot_multiplier.shape[0])

    @property
    def direction(self) -> FloatArray:
        """+1 where spot falls (a long loses), −1 where it rises, 0 where spot is unchanged."""
        return np.sign(1.0 - self.spot_multiplier)

    @property
    def is_skew(self) -> BoolArray:
        return np.asarray(self.vol_mode >= VolMode.SKEW_LINEAR)


def build_scenario_grid(
    spot_step: float = 0.045,
    spot_steps_each_side: int = 4,
    tail_spot_multipliers: Sequence[float] = (0.34, 0.5, 0.66, 0.75, 1.33, 1.5, 2.0, 6.0),
    tail_linear_equivalent: float = 0.15,
    skew_scenarios: bool = True,
) -> ScenarioGrid:
    """Core grid, dampened tails and skew scenarios (33 with the defaults).

    Core: spot 1 ± k·step for k = 0…n; vol {up, none, down} at each level except the two
    extremes, which keep vol-up only (Derive's layout: 3·(2n − 1) + 2 scenarios).
    Tails: vol-up at each tail multiplier m, P&L scaled by min(1, c/|m − 1|) so a linear position
    loses c × notional there: tails bind for convex books (short wings), not for perps.
    Skew: spot unchanged, the wings' vols raised (linear: calls up/puts down; abs: both up).
    """
    spots: list[float] = []
    modes: list[int] = []
    damp: list[float] = []
    for k in range(spot_steps_each_side, -spot_steps_each_side - 1, -1):
        m = 1.0 + k * spot_step
        levels = (
            (VolMode.UP,)
            if abs(k) == spot_steps_each_side
            else (VolMode.UP, VolMode.NONE, VolMode.DOWN)
        )
        for mode in levels:
            spots.append(m)
            modes.append(int(mode))
            damp.append(1.0)
    for m in tail_spot_multipliers:
        spots.append(float(m))
        modes.append(int(VolMode.UP))
        damp.append(min(1.0, tail_linear_equivalent / abs(m - 1.0)))
    if skew_scenarios:
        for mode in (VolMode.SKEW_LINEAR, VolMode.SKEW_ABS):
            spots.append(1.0)
            modes.append(int(mode))
            damp.append(1.0)
    return ScenarioGrid(
        np.array(spots, dtype=np.float64), np.array(modes, dtype=np.int8), np.array(damp)
    )


@dataclass(frozen=True)
class VolShockLaw:
    """Vol multipliers 1 ± range·(switch / max(DTE, floor))^p, p short below `switch` days."""

    vol_range_up: float = 0.6
    vol_range_down: float = 0.3
    short_term_power: float = 0.3
    long_term_power: float = 0.13
    power_switch_days: float = 30.0
    dte_floor_days: float = 1.0
    min_vol_up_annual: float = 0.40
    skew_cap: float = 0.3
    skew_kstar_per_sqrt_year: float = 0.5
    skew_min_kstar: float = 0.05


def vol_shock_multipliers(t_years: FloatArray, law: VolShockLaw) -> tuple[FloatArray, FloatArray]:
    """Vol-up and vol-down multipliers per option (vol-down floored at 0)."""
    dte_days = np.maximum(t_years * SECONDS_PER_YEAR / SECONDS_PER_DAY, law.dte_floor_days)
    power = np.where(dte_days <= law.power_switch_days, law.short_term_power, law.long_term_power)
    scale = (law.power_switch_days / dte_days) ** power
    return 1.0 + law.vol_range_up * scale, np.maximum(1.0 - law.vol_range_down * scale, 0.0)


def _skew_multiplier(
    forward: FloatArray, strike: FloatArray, t_years: FloatArray, mode: VolMode, law: VolShockLaw
) -> FloatArray:
    log_moneyness = np.log(strike / forward)
    k_star = np.maximum(law.skew_kstar_per_sqrt_year * np.sqrt(t_years), law.skew_min_kstar)
    if mode == VolMode.SKEW_ABS:
        log_moneyness = np.abs(log_moneyness)
    return np.asarray(
        1.0 + np.clip(log_moneyness * law.skew_cap / k_star, -law.skew_cap, law.skew_cap),
        dtype=np.float64,
    )


def option_scenario_values(
    forward_usd: FloatArray,
    strike_usd: FloatArray,
    t_years: FloatArray,
    sigma_annual: FloatArray,
    is_call: BoolArray,
    grid: ScenarioGrid,
    law: VolShockLaw,
) -> FloatArray:
    """Black-76 value of each option (rows) in each scenario (columns), undampened."""
    up, down = vol_shock_multipliers(t_years, law)
    sigma = np.empty((forward_usd.size, grid.n_scenarios))
    for s in range(grid.n_scenarios):
        mode = VolMode(int(grid.vol_mode[s]))
        if mode == VolMode.UP:
            sigma[:, s] = np.maximum(sigma_annual * up, law.min_vol_up_annual)
        elif mode == VolMode.DOWN:
            sigma[:, s] = sigma_annual * down
        elif mode == VolMode.NONE:
            sigma[:, s] = sigma_annual
        else:
            sigma[:, s] = sigma_annual * _skew_multiplier(
                forward_usd, strike_usd, t_years, mode, law
            )
    shocked_forward = forward_usd[:, None] * grid.spot_multiplier[None, :]
    return black76_price(
        shocked_forward, strike_usd[:, None], t_years[:, None], sigma, is_call[:, None]
    )


def offset_credit_matrix(
    underlyings: Sequence[str], correlations: Mapping[str, float]
) -> FloatArray:
    """(1 + ρ_ij) for configured pairs "A/B" (symmetric), 0 (no credit) elsewhere."""
    position_of = {name: i for i, name in enumerate(underlyings)}
    credit = np.zeros((len(underlyings), len(underlyings)))
    for pair, rho in correlations.items():
        a, b = pair.split("/")
        if a in position_of and b in position_of and a != b:
            credit[position_of[a], position_of[b]] = credit[position_of[b], position_of[a]] = (
                1.0 + rho
            )
    return credit


@dataclass(frozen=True)
class GroupLosses:
    """Per (account, underlying) group: requirement before offsets, and its worst direction."""

    loss_usd: FloatArray
    direction: FloatArray


@dataclass(frozen=True)
class ScenarioBook:
    """The static part of the scenario computation for one position set (built once).

    Option positions are sorted by group; `option_run_start` marks where each group's run of
    option positions begins and `option_run_group` names that group.
    """

    n_groups: int
    group_net_perp: FloatArray
    group_naked_short: FloatArray
    option_row: IntArray
    option_size: FloatArray
    option_run_start: IntArray
    option_run_group: IntArray

    @classmethod
    def build(
        cls,
        n_groups: int,
        group_of_position: IntArray,
        size: FloatArray,
        is_option: BoolArray,
        is_call: BoolArray,
        option_row: IntArray,
    ) -> ScenarioBook:
        """Per position: its group, size, kind, and (options only) its row in the value table."""
        group = group_of_position[is_option]
        net_perp = bincount_sum(group_of_position, np.where(is_option, 0.0, size), n_groups)
        net_calls = bincount_sum(
            group_of_position, np.where(is_option & is_call, size, 0.0), n_groups
        )
        net_puts = bincount_sum(
            group_of_position, np.where(is_option & ~is_call, size, 0.0), n_groups
        )
        starts = np.flatnonzero(np.diff(group, prepend=-1)).astype(np.intp)
        return cls(
            n_groups=n_groups,
            group_net_perp=net_perp,
            # Contracts sold beyond those bought, per side: Derive's "naked" short options.
            group_naked_short=np.maximum(-net_calls, 0.0) + np.maximum(-net_puts, 0.0),
            option_row=option_row,
            option_size=size[is_option],
            option_run_start=starts,
            option_run_group=group[starts],
        )


def group_scenario_losses(
    grid: ScenarioGrid,
    book: ScenarioBook,
    group_price_usd: FloatArray,
    option_values: FloatArray,
    perp_contingency_rate: float,
    short_option_contingency_rate: float,
) -> GroupLosses:
    """Worst dampened scenario loss plus contingencies for every group at once.

    `option_values` is (option rows × (1 + scenarios)): column 0 the current value, then one per
    scenario.
    """
    # Scenario-major layout (scenarios × groups): the per-group sum over option positions is then
    # a reduceat along contiguous rows, several times faster than reducing along axis 0.
    shock = (grid.spot_multiplier - 1.0) * grid.dampening
    pnl = shock[:, None] * (book.group_net_perp * group_price_usd)[None, :]
    if book.option_row.size:
        unit_pnl = (option_values[:, 1:] - option_values[:, :1]).T * grid.dampening[:, None]
        contrib = np.take(unit_pnl, book.option_row, axis=1)
        contrib *= book.option_size[None, :]
        pnl[:, book.option_run_group] += np.add.reduceat(contrib, book.option_run_start, axis=1)
    # A skew scenario's P&L sign depends on which wing the book is on; like Derive we count it
    # as a loss either way.
    skew = grid.is_skew
    if np.any(skew):
        pnl[skew] = -np.abs(pnl[skew])
    worst = np.argmin(pnl, axis=0)
    worst_loss = np.maximum(-pnl[worst, np.arange(book.n_groups)], 0.0)
    direction = np.where(worst_loss > 0.0, grid.direction[worst], 0.0)
    contingency = group_price_usd * (
        perp_contingency_rate * np.abs(book.group_net_perp)
        + short_option_contingency_rate * book.group_naked_short
    )
    return GroupLosses(worst_loss + contingency, direction)


def combine_across_underlyings(
    *,
    losses: GroupLosses,
    group_account: IntArray,
    group_underlying: IntArray,
    n_accounts: int,
    n_underlyings: int,
    offset_credit: FloatArray,
    floor_fraction: float,
) -> FloatArray:
    """MM per account from its groups' losses (rule in the module docstring)."""
    loss = losses.loss_usd
    standalone = bincount_sum(group_account, weights=loss, minlength=n_accounts)
    nondirectional = bincount_sum(
        group_account, weights=np.where(losses.direction == 0.0, loss, 0.0), minlength=n_accounts
    )
    directional_sum = standalone - nondirectional
    combined = directional_sum
    if np.any(offset_credit):
        longs = np.zeros((n_accounts, n_underlyings))
        shorts = np.zeros((n_accounts, n_underlyings))
        longs[group_account, group_underlying] = np.where(losses.direction > 0.0, loss, 0.0)
        shorts[group_account, group_underlying] = np.where(losses.direction < 0.0, loss, 0.0)
        credit = np.einsum("ai,ij,aj->a", longs, offset_credit, shorts)
        combined = np.sqrt(np.maximum(directional_sum**2 - 2.0 * credit, 0.0))
    return np.asarray(
        np.maximum(combined + nondirectional, floor_fraction * standalone), dtype=np.float64
    )
