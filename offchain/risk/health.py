"""An exact integer mirror of `ClearinghouseBase._healthAt`: equal to the contract to the wei.

Python integers are unbounded, so the contract's 256-bit products are reproduced exactly; floor
and ceiling follow the contract's rounding (values down, requirements up, against the account).
A broken feed (SPEC I18) is valued with the router's quote, mirrored by `broken_feed_quote`: what
the account holds at the low end, what it owes and its requirements at the high end.
`tests/test_parity.py` holds the two equal over random states, broken feeds included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from offchain.risk.funding import owed

WAD = 10**18
BPS = 10_000
HOUR_BPS = 3_600 * BPS


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
    """`balances` excludes the quote token, which is `cash_wad`. Zero entries are allowed.
    `funding_index` is the index each position last settled its funding at (IFunding)."""

    cash_wad: int
    balances: Mapping[int, int]
    positions: Mapping[int, int]
    funding_index: Mapping[int, int] = field(default_factory=dict)


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
    high_e18: Mapping[int, int] | None = None,
    funding_index_wad: Mapping[int, int] | None = None,
) -> Health:
    """The static health at `prices_e18`, by oracle asset id. `high_e18` gives the high end of a
    broken feed's quote (SPEC I18), with `prices_e18` its low end; assets it omits (every usable
    feed) are valued at their price. `funding_index_wad` is each market's funding index now
    (`FundingMarket.index_at`, at the low price): what a position owes since its last settlement
    comes out of equity (I26); markets it omits owe nothing."""
    high = {**prices_e18, **(high_e18 or {})}
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
        up = high[m.oracle_asset]
        mark = prices_e18[m.oracle_asset] if size > 0 else up
        equity += (size * mark) // WAD  # floor toward -inf, as MarginMath.mulDivFloor
        if funding_index_wad is not None and market_id in funding_index_wad:
            last = state.funding_index.get(market_id, 0)
            equity -= owed(size, funding_index_wad[market_id], last)
        im += ceil_div(abs(size) * up * m.im_bps, WAD * BPS)
        mm += ceil_div(abs(size) * up * m.mm_bps, WAD * BPS)
    return Health(equity, im, mm)


def broken_feed_quote(
    price_e18: int,
    updated_at: int,
    now: int,
    drift_bps_per_hour: int,
    min_price_e18: int,
    max_price_e18: int,
) -> tuple[int, int]:
    """(low, high) the router quotes a broken feed at (`OracleRouter._quote`, SPEC I18): its last
    good round's price, `updated_at` seconds old at `now`, moved apart by the drift per hour of
    age and clamped to the bounds; the bounds themselves when no good round was ever seen."""
    if price_e18 == 0:
        return min_price_e18, max_price_e18
    drift = (now - updated_at) * drift_bps_per_hour
    low = 0 if drift >= HOUR_BPS else price_e18 * (HOUR_BPS - drift) // HOUR_BPS
    high = ceil_div(price_e18 * (HOUR_BPS + drift), HOUR_BPS)
    return max(low, min_price_e18), min(high, max_price_e18)


def trade_cash_change_wad(size_delta: int, price_e18: int) -> int:
    """Cash change of one side of a trade: pays rounded up, receives rounded down."""
    return -ceil_div(size_delta * price_e18, WAD)
