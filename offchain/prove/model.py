"""The proven model: scenario portfolio margin for perpetuals in exact integer arithmetic.

This is the statement circuits/margin.circom proves, written once in Python: the prover computes
the requirement it claims here, and a parity test holds the circuit to the same integers. It is
the perp part of `offchain.risk.portfolio` (same grid, contingency, offsets, floor, IM factor) with
every real number replaced by a fixed-point one:

* parameters in whole basis points. The grid's shocks, the contingency, the floor fraction and the
  IM factor must be exact in bps (refused otherwise: rounding them could lower a hedged book's
  requirement); 1 + ρ is rounded down, which only lowers the offset credit.
* per slot (one underlying, net size): L = ceil(|size| · price · (worst shock + contingency)) in
  micro-USD, with the worst shock over the whole grid for the position's side.
* across slots: ceil(sqrt(Q / 1e4)) with Q = 1e4·(P + N)² − 2·Σ (1 + ρ)_bps·L_long·L_short, plus
  the non-directional losses. Rounding a hedge leg's L up can lower that square root by at most
  one µUSD per leg (its slope in one L is ≥ −1), so when any credit applies the number of
  directional legs is added back.
* MM = max(that, ceil(floor · Σ L)); IM = ceil(im_factor · MM).

Every step rounds the requirement up, so the proven MM and IM are never below the real-valued
model at the same prices; they exceed it by a few micro-USD at most. Python integers, not numpy:
the intermediate products reach 2^176.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from math import floor, isqrt

from offchain.prove.layout import (
    ASSETS,
    PAIRS,
    REQUIREMENT_BITS,
    SCENARIOS,
    LayoutError,
    Slot,
    param_words,
)
from offchain.prove.poseidon import poseidon
from offchain.risk.config import ScenarioMarginConfig
from offchain.risk.portfolio import build_scenario_grid

BPS = 10_000
# |size| (1e-18 units) × price (1e-8 USD) × rate (bps) → micro-USD.
LOSS_DIVISOR = 10**24


class ModelError(LayoutError):
    """The risk configuration cannot be proven exactly, or an input is outside the circuit."""


def _whole_bps(value: float, what: str) -> int:
    bps = round(value * BPS)
    if abs(value * BPS - bps) > 1e-6:
        raise ModelError(
            f"{what} = {value} is not a whole number of basis points",
            "the proven model needs it exact; round the risk config to 1e-4",
        )
    return bps


def ceil_div(x: int, d: int) -> int:
    return -(-x // d)


@dataclass(frozen=True)
class Requirement:
    mm_micro_usd: int
    im_micro_usd: int


@dataclass(frozen=True)
class ProvenModel:
    """Parameters in basis points; `credit_bps[k]` is 1 + ρ for the asset pair `PAIRS[k]`."""

    shocks_bps: tuple[int, ...]
    perp_contingency_bps: int
    floor_bps: int
    im_factor_bps: int
    credit_bps: tuple[int, ...]

    @classmethod
    def from_config(cls, config: ScenarioMarginConfig, assets: Sequence[str]) -> ProvenModel:
        """The model for a deployment whose oracle asset i is `assets[i]` (correlations are
        keyed by symbol, e.g. "BTC/ETH")."""
        grid = build_scenario_grid(
            spot_step=config.spot_step,
            spot_steps_each_side=config.spot_steps_each_side,
            tail_spot_multipliers=config.tail_spot_multipliers,
            tail_linear_equivalent=config.tail_linear_equivalent,
            skew_scenarios=config.skew_scenarios,
        )
        if grid.n_scenarios > SCENARIOS:
            raise ModelError(
                f"the scenario grid has {grid.n_scenarios} scenarios",
                f"the circuit takes at most {SCENARIOS}; use fewer spot steps or tails",
            )
        shocks = [
            _whole_bps(float((m - 1.0) * d), f"scenario {i}'s dampened spot shock")
            for i, (m, d) in enumerate(zip(grid.spot_multiplier, grid.dampening, strict=True))
        ]
        # Repeating a scenario changes no maximum: pad the grid to the circuit's size.
        shocks += [shocks[0]] * (SCENARIOS - len(shocks))
        credit = dict.fromkeys(PAIRS, 0)
        ids = {symbol: i for i, symbol in enumerate(assets)}
        for key, rho in config.correlations.items():
            a, b = (ids.get(symbol) for symbol in key.split("/"))
            if a is None or b is None or a == b or max(a, b) >= ASSETS:
                continue
            credit[(min(a, b), max(a, b))] = floor((1.0 + rho) * BPS)
        return cls(
            shocks_bps=tuple(shocks),
            perp_contingency_bps=_whole_bps(config.perp_contingency_rate, "perp_contingency_rate"),
            floor_bps=_whole_bps(config.floor_fraction, "floor_fraction"),
            im_factor_bps=_whole_bps(config.im_factor, "im_factor"),
            credit_bps=tuple(credit[pair] for pair in PAIRS),
        )

    @cached_property
    def words(self) -> list[int]:
        """The private parameter words the circuit unpacks."""
        return param_words(
            self.shocks_bps,
            self.perp_contingency_bps,
            self.floor_bps,
            self.im_factor_bps,
            self.credit_bps,
        )

    @cached_property
    def hash(self) -> int:
        """Poseidon of the parameter words: what the registry knows the model by."""
        return poseidon(self.words)

    @cached_property
    def worst_fall_bps(self) -> int:
        """A long's loss per unit of notional in its worst scenario (0 if spot never falls)."""
        return max(0, -min(self.shocks_bps))

    @cached_property
    def worst_rise_bps(self) -> int:
        return max(0, max(self.shocks_bps))

    def credit(self, u: int, v: int) -> int:
        return 0 if u == v else self.credit_bps[PAIRS.index((min(u, v), max(u, v)))]

    def requirement(self, slots: Sequence[Slot], prices_e8: Sequence[int]) -> Requirement:
        """MM and IM in micro-USD for one account's slots (distinct assets) at these prices.

        Raises `ModelError` when a value leaves the circuit's ranges: the circuit would refuse it.
        """
        losses: list[tuple[int, int, int]] = []  # (asset, loss, direction: +1 long, −1 short, 0)
        for slot in slots:
            short = slot.size < 0
            rate = (
                self.worst_rise_bps if short else self.worst_fall_bps
            ) + self.perp_contingency_bps
            loss = ceil_div(abs(slot.size) * prices_e8[slot.asset] * rate, LOSS_DIVISOR)
            _check_fits(loss, f"the loss on asset {slot.asset}")
            binds = self.worst_rise_bps > 0 if short else self.worst_fall_bps > 0
            losses.append((slot.asset, loss, (-1 if short else 1) if binds else 0))
        directional = sum(loss for _, loss, d in losses if d != 0)
        total = sum(loss for _, loss, _ in losses)
        credit = sum(
            self.credit(u, v) * lu * lv
            for u, lu, du in losses
            if du > 0
            for v, lv, dv in losses
            if dv < 0
        )
        q = BPS * directional * directional - 2 * credit
        if q < 0:
            raise ModelError("the offset credit exceeds the directional losses", "check 1 + ρ ≤ 2")
        root = isqrt(q // BPS)
        offset = root + (BPS * root * root != q)
        legs = sum(1 for _, loss, d in losses if d != 0 and loss > 0)
        body = offset + (total - directional) + (legs if credit else 0)
        mm = max(body, ceil_div(self.floor_bps * total, BPS))
        im = ceil_div(self.im_factor_bps * mm, BPS)
        _check_fits(mm, "MM")
        _check_fits(im, "IM")
        return Requirement(mm, im)


def _check_fits(micro_usd: int, what: str) -> None:
    if micro_usd >= 1 << REQUIREMENT_BITS:
        raise ModelError(
            f"{what} is {micro_usd / 1e6:,.0f} USD, beyond the circuit's 2^{REQUIREMENT_BITS} µUSD",
            "such an account cannot be proven; it stays on attested or static margin",
        )
