"""An exact integer mirror of `Clearinghouse._healthAt`: equal to the contract to the wei.

Python integers are unbounded, so the contract's 256-bit products are reproduced exactly; floor
and ceiling follow the contract's rounding (values down, requirements up, against the account).
`tests/test_parity.py` holds the two equal over random states.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

WAD = 10**18
BPS = 10_000


@dataclass(frozen=True)
class CollateralParams:
    oracle_asset: int
    weight_bps: int
    decimals: int


@dataclass(frozen=True)
class MarketParams:
    oracle_asset: int
    im_bps: int
    mm_bps: int


@dataclass(frozen=True)
class AccountState:
    """`balances` excludes the quote token, which is `cash_wad`. Zero entries are allowed."""

    cash_wad: int
    balances: Mapping[int, int]
    positions: Mapping[int, int]


@dataclass(frozen=True)
class Health:
    equity_wad: int
    initial_margin_wad: int
    maintenance_margin_wad: int

    @property
    def liquidatable(self) -> bool:
        return self.equity_wad < self.maintenance_margin_wad


def ceil_div(a: int, d: int) -> int:
    return -((-a) // d)


def health(
    state: AccountState,
    collaterals: Mapping[int, CollateralParams],
    markets: Mapping[int, MarketParams],
    prices_e18: Mapping[int, int],
) -> Health:
    equity = state.cash_wad
    for asset_id, amount in state.balances.items():
        if amount == 0:
            continue
        c = collaterals[asset_id]
        amount_wad = amount * 10 ** (18 - c.decimals)
        equity += amount_wad * (prices_e18[c.oracle_asset] * c.weight_bps) // (WAD * BPS)
    im = mm = 0
    for market_id, size in state.positions.items():
        if size == 0:
            continue
        m = markets[market_id]
        price = prices_e18[m.oracle_asset]
        equity += (size * price) // WAD  # floor toward -inf, as MarginMath.mulDivFloor
        im += ceil_div(abs(size) * price * m.im_bps, WAD * BPS)
        mm += ceil_div(abs(size) * price * m.mm_bps, WAD * BPS)
    return Health(equity, im, mm)


def trade_cash_change_wad(size_delta: int, price_e18: int) -> int:
    """Cash change of one side of a trade: pays rounded up, receives rounded down."""
    return -ceil_div(size_delta * price_e18, WAD)
