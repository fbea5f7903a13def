"""The three generations of margin rules the lab compares, and Gen 3's per-tick sync step.

* **Gen 1, static.** Fixed rates (IM 10%, MM 6.5% of notional at the oracle price), the contracts
  deployed without an attestation verifier, and a keeper that looks only every 10th price update
  (a slow off-chain cadence, as keepers stalled on 2020-03-12).
* **Gen 2, block-based.** The same static rules, checked after every price update: the fallback
  rules (S2) with a keeper that never sleeps.
* **Gen 3, synchronised.** The same contracts with the `AttestationVerifier`. After every price
  update the engine recomputes every account with `offchain.risk` (EWMA volatility margin, with a
  correlation offset for accounts that hold opposite positions in correlated underlyings), picks
  the accounts whose requirement in force differs from the fresh one by more than 2%, and posts
  them as 2-of-3 signed EIP-712 batches (`offchain.attest`) straight to the verifier's `submit`.
  The contract holds each attested value within [50%, 500%] of the static one and falls back to
  static margin whenever S1 fails (a position change, a price move beyond the 1% band, age).
  The keeper runs after every update.

Gen 3's attest step is one class, `Gen3Sync`, with one call per tick: `tick(prices, now)` returns
`SyncStats(gas, lag_ms, accounts_updated)`, so a streaming engine from `offchain.sync` can replace
it without touching the runner. Which requirement is in force is the one S1 rule's answer
(`offchain.chain.attestations`), fed with the verifier's events by the ledger.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from offchain.attest import Batch, Domain, Entry, sign
from offchain.chain import Chain
from offchain.chain.attestations import clamp
from offchain.chain.deploy import dev_engine_keys
from offchain.feeds import YEAR_S, Scenario
from offchain.lab.ledger import Ledger
from offchain.lab.transport import Transport, Tx
from offchain.models import BPS, WAD, AttestationSpec, Deployment
from offchain.risk import (
    Instruments,
    MarketConfig,
    Positions,
    RiskConfig,
    RiskEngine,
    RiskInputError,
    VolatilityMarginConfig,
    estimate_correlation,
    norm_ppf,
    volatility_mm_rate,
)
from offchain.risk.health import Health

FloatArray = NDArray[np.float64]
MICRO_USD_IN_WAD = 10**12
# Re-attest an account when its fresh requirement differs from the one in force by more than this.
CHANGE_THRESHOLD_BPS = 200
# Returns the engine keeps for its correlation estimate (warm-up included).
CORRELATION_WINDOW = 60
# The default liquidation horizon of the volatility model, and the floor the lab puts under it:
# a keeper closes at most half a position per update (close factor 50%), so getting out takes
# two updates; the requirement must cover the move over that time.
MIN_LIQUIDATION_HORIZON_S = 3_600.0
UPDATES_TO_LIQUIDATE = 2


@dataclass(frozen=True)
class Generation:
    key: str
    label: str
    rules: str
    keeper_every: int  # the keeper checks after every n-th price update
    attested: bool
    attest_every: int = 1  # Gen 3: the engine posts after every n-th update

    def keeper_checks(self, update: int) -> bool:
        return update % self.keeper_every == 0

    def engine_posts(self, update: int) -> bool:
        return self.attested and update % self.attest_every == 0


GEN1 = Generation(
    "gen1",
    "Gen 1 static",
    "static IM 10% / MM 6.5%; keeper checks every 10th update",
    keeper_every=10,
    attested=False,
)
GEN2 = Generation(
    "gen2",
    "Gen 2 block-based",
    "static IM 10% / MM 6.5% at oracle prices; keeper checks every update",
    keeper_every=1,
    attested=False,
)
GEN3 = Generation(
    "gen3",
    "Gen 3 synchronised",
    "attested EWMA-volatility margin with correlation offsets (clamped to 50-500% of static, "
    "S1 fallback); engine and keeper every update",
    keeper_every=1,
    attested=True,
)
GENERATIONS = (GEN1, GEN2, GEN3)


# ---------------------------------------------------------------------------- the model
class SynchronisedMargin:
    """Gen 3's requirement for every account, recomputed each tick with `offchain.risk`.

    The risk library's volatility model gives MM_u = clip(z₉₉·σ_u·√horizon) × |net notional_u| per
    (account, underlying), σ the larger of a RiskMetrics and a fast EWMA. The net exposure counts
    non-quote collateral at its haircut weight (WETH is long ETH), which static per-market rates
    cannot see. Across underlyings the
    lab applies the portfolio model's offset rule to those per-underlying requirements m_u (signed
    by direction): MM = max(sqrt((Σ|m|)² − 2·Σ_{long i, short j} (1 + ρ_ij)·|m_i|·|m_j|),
    0.3·Σ|m|), so a long ETH / short BTC pair is margined on its spread while two longs get no
    diversification credit; ρ is estimated from the engine's last 60 returns.

    To that move risk MM adds the cost of being liquidated: the penalty rate on the gross notional
    of the account's perps (`liquidation_cost_rate`, the markets' 3%, the same figure as Derive's
    perp contingency). Without it a requirement just above the penalty leaves nothing once the
    keeper has charged it, and the first lab runs showed exactly that: liquidations at MM ≈ 5%
    left accounts 2% from insolvency. IM = 1.5 × MM.
    """

    def __init__(
        self,
        underlyings: Sequence[str],
        interval_s: float,
        warmup: Scenario,
        *,
        liquidation_cost_rate: float,
    ) -> None:
        self.underlyings = tuple(underlyings)
        self.liquidation_cost_rate = liquidation_cost_rate
        history = np.column_stack([warmup.prices_usd[u] for u in self.underlyings])
        returns = np.diff(np.log(history), axis=0)
        # The engine starts from the realised volatility of the history it has seen.
        sigma0 = returns.std(axis=0, ddof=1) / math.sqrt(interval_s / YEAR_S)
        self.horizon_s = max(MIN_LIQUIDATION_HORIZON_S, UPDATES_TO_LIQUIDATE * interval_s)
        self.config = RiskConfig(
            markets=tuple(
                MarketConfig(
                    underlying=u,
                    model="volatility",
                    volatility=VolatilityMarginConfig(
                        liquidation_horizon_s=self.horizon_s, initial_sigma_annual=float(s0)
                    ),
                )
                for u, s0 in zip(self.underlyings, sigma0, strict=True)
            )
        )
        n = len(self.underlyings)
        self.instruments = Instruments.build(
            self.underlyings,
            [f"{u}-PERP" for u in self.underlyings],
            ["perp"] * n,
            self.underlyings,
        )
        self._engine = RiskEngine(self.config, self.instruments, Positions.build(0, [], [], [], n))
        for ts, row in zip(warmup.ts_s, history, strict=True):
            self._engine.tick(row, float(ts), with_greeks=False)
        self._returns: deque[FloatArray] = deque(returns, maxlen=CORRELATION_WINDOW)
        self._last_prices = history[-1]
        self._sizes: FloatArray | None = None
        vol = [m.volatility for m in self.config.markets]
        self._z = np.array([norm_ppf(v.confidence) for v in vol])
        self._floor = np.array([v.floor_mm_rate for v in vol])
        self._cap = np.array([v.cap_mm_rate for v in vol])
        self._im_multiplier = np.array([v.im_multiplier for v in vol])
        self.sigma_annual = self._engine.ewma_state.sigma_annual

    def requirements(
        self,
        sizes: FloatArray,
        position_notional_usd: FloatArray,
        prices_usd: FloatArray,
        now_s: float,
    ) -> tuple[FloatArray, FloatArray]:
        """(IM, MM) in USD per row of `sizes` (accounts × underlyings: net exposure in base
        units, signed, collateral included); `position_notional_usd` is each account's gross
        perp notional, which the liquidation cost applies to."""
        if self._sizes is None or not np.array_equal(sizes, self._sizes):
            rows, cols = np.nonzero(sizes)
            positions = Positions.build(
                sizes.shape[0], rows, cols, sizes[rows, cols], self.instruments.n_instruments
            )
            self._engine = self._engine.with_positions(positions)
            self._sizes = sizes.copy()
        result = self._engine.tick(prices_usd, now_s, with_greeks=False)
        self.sigma_annual = result.sigma_annual
        self._returns.append(np.log(prices_usd / self._last_prices))
        self._last_prices = prices_usd
        rate = volatility_mm_rate(
            self._engine.ewma_state.sigma_per_sqrt_s,
            self._z,
            np.full(len(self.underlyings), self.horizon_s),
            self._floor,
            self._cap,
        )
        signed = sizes * prices_usd[None, :] * rate[None, :]
        standalone = result.mm_usd  # Σ_u |m_u|: the library's volatility margin
        credit = np.einsum(
            "ai,ij,aj->a", np.maximum(signed, 0.0), self._offset_credit(), np.maximum(-signed, 0.0)
        )
        combined = np.sqrt(np.maximum(standalone**2 - 2.0 * credit, 0.0))
        move = np.maximum(combined, self.config.scenario.floor_fraction * standalone)
        mm = move + self.liquidation_cost_rate * position_notional_usd
        im = mm * float(self._im_multiplier.max())
        return im, mm

    def _offset_credit(self) -> FloatArray:
        """(1 + ρ_ij) off the diagonal; no credit at all when ρ cannot be estimated."""
        n = len(self.underlyings)
        try:
            _, corr = estimate_correlation(np.array(self._returns).T)
        except RiskInputError:
            return np.zeros((n, n))
        credit = 1.0 + np.clip(corr, -1.0, 1.0)
        np.fill_diagonal(credit, 0.0)
        return np.asarray(credit)


# ---------------------------------------------------------------------------- the sync step
@dataclass(frozen=True)
class SyncStats:
    gas: int
    lag_ms: float  # from the tick to the last batch's receipt (to the decision if none was due)
    accounts_updated: int
    accounts_considered: int = 0
    batches: int = 0


class Gen3Sync:
    """Recompute → select → sign → submit, once per price update."""

    def __init__(
        self,
        *,
        chain: Chain,
        deployment: Deployment,
        ledger: Ledger,
        transport: Transport,
        margin: SynchronisedMargin,
        spec: AttestationSpec,
        sender: str,
        clock: Callable[[], int],
        change_threshold_bps: int = CHANGE_THRESHOLD_BPS,
    ) -> None:
        if deployment.attestation_verifier is None:
            raise ValueError("Gen 3 needs a deployment with an attestation verifier")
        self.d = deployment
        self.ledger = ledger
        self.transport = transport
        self.margin = margin
        self.spec = spec
        self.sender = sender
        self.clock = clock
        self.change_threshold_bps = change_threshold_bps
        self._verifier = chain.contract("AttestationVerifier", deployment.attestation_verifier)
        self._domain = Domain(chain.chain_id, deployment.attestation_verifier)
        self._keys = dev_engine_keys(spec.signers)[: spec.threshold]
        self._asset_ids = sorted(a.id for a in deployment.assets)
        self._asset_mask = sum(1 << a for a in self._asset_ids)
        symbol_of = {a.id: a.symbol for a in deployment.assets}
        column = {u: i for i, u in enumerate(margin.underlyings)}
        self._asset_column = {a: column[s] for a, s in symbol_of.items()}
        self._market_column = {m.id: self._asset_column[m.oracle_asset] for m in deployment.markets}
        self._market_asset = {m.id: m.oracle_asset for m in deployment.markets}
        self._underlying_asset = [
            next(a for a, s in symbol_of.items() if s == u) for u in margin.underlyings
        ]
        self._sequence = 0

    # ------------------------------------------------------------------ one tick
    def tick(self, prices_e18: Mapping[int, int], now_s: float, *, post: bool = True) -> SyncStats:
        """Recompute every account at `prices_e18` (oracle asset id → price, as on chain) and
        scenario time `now_s`; with `post`, submit the accounts whose requirement moved."""
        started = time.perf_counter()
        mirror = self.ledger.mirror
        accounts = sorted(
            a for a, s in mirror.accounts.items() if a != self.d.insurance_fund and s.has_positions
        )
        sizes = np.zeros((len(accounts), len(self.margin.underlyings)))
        gross_usd = np.zeros(len(accounts))
        for row, account in enumerate(accounts):
            state = mirror.accounts[account]
            for market_id, size in state.positions.items():
                if size:
                    sizes[row, self._market_column[market_id]] += size / WAD
                    gross_usd[row] += abs(size) * prices_e18[self._market_asset[market_id]] / WAD**2
            # Non-quote collateral is exposure too: WETH behind a long ETH perp falls with it.
            for asset_id, amount in state.balances.items():
                if amount:
                    c = mirror.collaterals[asset_id]
                    sizes[row, self._asset_column[c.oracle_asset]] += (
                        amount / 10**c.decimals * c.weight_bps / BPS
                    )
        prices_usd = np.array([prices_e18[a] / WAD for a in self._underlying_asset])
        im_usd, mm_usd = self.margin.requirements(sizes, gross_usd, prices_usd, now_s)
        if not post:
            return SyncStats(0, _ms_since(started), 0, len(accounts))

        chain_now = self.clock()
        entries: list[Entry] = []
        for row, account in enumerate(accounts):
            state = mirror.accounts[account]
            static = mirror.health(account, dict(prices_e18))
            in_force_im, in_force_mm = self.in_force(account, static, prices_e18, chain_now)
            im_micro = math.ceil(float(im_usd[row]) * 1e6)
            mm_micro = min(math.ceil(float(mm_usd[row]) * 1e6), im_micro)
            fresh_im, fresh_mm = self._clamped(im_micro, mm_micro, static)
            if self._moved(fresh_im, in_force_im) or self._moved(fresh_mm, in_force_mm):
                entries.append(Entry(account, state.nonce, im_micro, mm_micro))
        gas = batches = applied = 0
        size = self.spec.max_batch_size
        for start in range(0, len(entries), size):
            batch_gas, batch_applied = self._submit(entries[start : start + size], prices_e18)
            gas += batch_gas
            applied += batch_applied
            batches += 1
        return SyncStats(gas, _ms_since(started), applied, len(accounts), batches)

    def _moved(self, fresh_wad: int, in_force_wad: int) -> bool:
        return abs(fresh_wad - in_force_wad) * BPS > self.change_threshold_bps * max(
            in_force_wad, 1
        )

    def _submit(self, entries: Sequence[Entry], prices_e18: Mapping[int, int]) -> tuple[int, int]:
        self._sequence += 1
        batch = Batch(
            sequence=self._sequence,
            issued_at=self.clock(),
            price_asset_mask=self._asset_mask,
            prices_e18=tuple(prices_e18[a] for a in self._asset_ids),
            entries=tuple(entries),
        )
        data = self.transport.codec.encode(
            "AttestationVerifier", "submit", batch.as_tuple(), sign(batch, self._domain, self._keys)
        )
        action = f"submit attestation batch {batch.sequence} ({len(entries)} accounts)"
        tx = Tx(self.sender, self._verifier.address, data, 0, action)
        gas_limit = self.transport.estimate(tx) * 12 // 10 + 50_000
        receipts = self.transport.send_all(
            [Tx(self.sender, tx.to, data, gas_limit, action)], timestamp_s=self.clock()
        )
        applied = sum(
            int(e.args["applied"]) for e in self.ledger.pull() if e.name == "BatchApplied"
        )
        return sum(r.gas_used for r in receipts), applied

    # ------------------------------------------------------------------ S1, off-chain
    def in_force(
        self, account: str, static: Health, prices_e18: Mapping[int, int], now: int
    ) -> tuple[int, int]:
        """(IM, MM) in wad that `Clearinghouse._healthAt` would use now (the one S1 rule)."""
        static_im, static_mm = static.initial_margin_wad, static.maintenance_margin_wad
        state = self.ledger.mirror.accounts[account]
        market_mask = 0
        for market_id, size in state.positions.items():
            if size:
                market_mask |= 1 << self._market_asset[market_id]
        if market_mask == 0:
            return static_im, static_mm
        found = self.ledger.attestations.requirement_in_force(
            account, state.nonce, market_mask, prices_e18, static_im, static_mm, now
        )
        return found.im_wad, found.mm_wad

    def _clamped(self, im_micro: int, mm_micro: int, static: Health) -> tuple[int, int]:
        """What the verifier will enforce for a fresh entry: clamped as in force (B12)."""
        params = self.ledger.attestations.params
        assert params is not None, "the verifier's ParamsSet comes with its deployment"
        im = clamp(im_micro * MICRO_USD_IN_WAD, static.initial_margin_wad, params)
        mm = clamp(mm_micro * MICRO_USD_IN_WAD, static.maintenance_margin_wad, params)
        return im, min(mm, im)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
