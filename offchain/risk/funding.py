"""Perpetual funding, exactly as the contracts compute it (IFunding, SPEC I26-I29): integer math
with Solidity's rounding, so a mirror rebuilt from `FundingAccrued` events agrees to the wei.

A market's state is what `FundingAccrued` reports (index, rate in force, premium average) plus
the block time of that event; `PremiumSampled` sets the held premium; `FundingConfigured` the cap
and the averaging window. `funding_provision_usd` is the engine's funding provision in initial
margin, vectorised over all accounts. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from offchain.risk.checks import FloatArray

WAD = 10**18
BPS = 10**4
FUNDING_INTERVAL_S = 8 * 3600
DEFAULT_MAX_RATE_BPS = 200  # Paradex BTC/ETH: 2% per 8 h
DEFAULT_PREMIUM_WINDOW_S = 3600  # dYdX v4: hourly mean of the premium


def tdiv(a: int, b: int) -> int:
    """Solidity's signed division: truncates toward zero (Python's // floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def ceil_div_signed(a: int, d: int) -> int:
    """`MarginMath.mulDivCeilSigned` after the product: rounds toward +infinity."""
    return -((-a) // d)


@dataclass(frozen=True)
class FundingMarket:
    index_wad: int = 0
    rate_e18: int = 0
    last_accrual: int = 0
    premium_ema_e18: int = 0
    last_premium_e18: int = 0
    max_rate_bps: int = DEFAULT_MAX_RATE_BPS
    premium_window_s: int = DEFAULT_PREMIUM_WINDOW_S

    def index_at(self, now: int, price_e18: int) -> int:
        """The index a view or an accrual at `now` sees (`_fundingIndexNow`); a `now` before the
        last accrual sees no accrual (`_fundingElapsed`)."""
        elapsed = max(0, now - self.last_accrual)
        return self.index_wad + tdiv(price_e18 * self.rate_e18 * elapsed, FUNDING_INTERVAL_S * WAD)

    def accrue(self, now: int, price_e18: int) -> FundingMarket:
        """`_accrueFunding`: the index to now, the held premium folded into the average by the
        time it stood, and the clamped rate in force from now on."""
        elapsed = max(0, now - self.last_accrual)
        if elapsed == 0:
            return self
        weight = min(elapsed, self.premium_window_s)
        ema = self.premium_ema_e18 + tdiv(
            (self.last_premium_e18 - self.premium_ema_e18) * weight, self.premium_window_s
        )
        return replace(
            self,
            index_wad=self.index_at(now, price_e18),
            rate_e18=clamped_rate(ema, self.max_rate_bps),
            last_accrual=now,
            premium_ema_e18=ema,
        )

    def sample(self, trade_price_e18: int, oracle_price_e18: int) -> FundingMarket:
        """A trade with a usable oracle price sets the held premium."""
        premium = tdiv((trade_price_e18 - oracle_price_e18) * WAD, oracle_price_e18)
        return replace(self, last_premium_e18=premium)


def clamped_rate(premium_e18: int, max_rate_bps: int) -> int:
    cap = max_rate_bps * (WAD // BPS)
    return max(-cap, min(cap, premium_e18))


def owed(size_wad: int, index_wad: int, last_index_wad: int) -> int:
    """What a position owes since it last settled: > 0 it pays (rounded up), < 0 it receives
    (rounded down), so settlements never pay out more than they take in (I26)."""
    return ceil_div_signed(size_wad * (index_wad - last_index_wad), WAD)


def funding_provision_usd(
    sizes: FloatArray,
    prices_usd: FloatArray,
    rate_per_interval: FloatArray,
    cap_per_interval: FloatArray,
    window_s: FloatArray,
    horizon_s: float,
) -> FloatArray:
    """The funding each account can owe before its margin is next updated, `horizon_s` from now:
    the initial-margin provision (Paradex holds 8 h of funding inside IM). Vectorised over
    accounts × markets (`sizes` in base units, signed); per market the rate in force and its cap
    (fractions per 8 h) and the premium's averaging window.

    A position pays at the rate in force in its paying direction (longs when it is positive),
    and over the horizon the rate can move toward the other side by at most the cap times the
    window's share of the horizon (the average moves by that weight, SPEC I29), never past the
    cap. A receiver is provisioned for the part of that move that would make it pay."""
    direction = np.sign(sizes)
    paying_now = np.maximum(direction * rate_per_interval[None, :], 0.0)
    move = cap_per_interval * np.minimum(1.0, horizon_s / window_s)
    paying = np.minimum(cap_per_interval[None, :], paying_now + move[None, :])
    receiving_now = np.maximum(-direction * rate_per_interval[None, :], 0.0)
    paying = np.where(receiving_now > 0, np.maximum(move[None, :] - receiving_now, 0.0), paying)
    notional = np.abs(sizes) * prices_usd[None, :]
    per_position = notional * paying * (horizon_s / FUNDING_INTERVAL_S)
    return np.asarray(per_position.sum(axis=1), dtype=np.float64)
