"""The book: every mirrored account as arrays, the risk engine over them, the policy's inputs.

Sizes, balances, cash, nonces, static rates and each account's applied (or in-flight) attested
entry, in mirror order, rebuilt only when an event changed an account or a market; attested
entries alone are reloaded when only they changed. Batches in flight (`inflight`) count as
attested at once (optimistically), so the next pass does not select their accounts again; once a
batch's outcome is known the mirror's view replaces them.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np

from offchain.attest import Batch
from offchain.chain.attestations import RING_SIZE, BatchRecord
from offchain.risk import Instruments, Positions, RiskConfig, RiskEngine
from offchain.risk.funding import FundingMarket, funding_provision_usd
from offchain.sync import policy
from offchain.sync.mirror import EngineMirror
from offchain.sync.policy import BoolArray, FloatArray

# Never reuse the last few ring slots: a batch record is in force only while still in the ring.
_RING_MARGIN = 64


class Book:
    def __init__(
        self, mirror: EngineMirror, symbols: list[str], insurance_fund: str, risk: RiskConfig
    ) -> None:
        self.mirror = mirror
        self.symbols = symbols
        self.insurance_fund = insurance_fund
        self.risk_config = risk
        self.risk: RiskEngine | None = None
        self.version = -1
        self.inflight: dict[int, Batch] = {}
        self.accounts: list[str] = []
        self.has_positions = np.zeros(0, dtype=bool)

    def sync(self, finished: list[Batch]) -> None:
        """After a mirror sync: rebuild if accounts changed, else reload the attested entries
        that changed (and those of `finished` batches: the mirror now holds the chain's view)."""
        if self.mirror.state_version != self.version:
            self.rebuild()
        else:
            changed = {a.lower() for a in self.mirror.changed_attested}
            changed.update(e.account.lower() for b in finished for e in b.entries)
            for account in changed:
                self.load_applied(account)
        self.mirror.changed_attested.clear()

    def rebuild(self) -> None:
        """Every array from the mirror, and the risk engine over the new positions."""
        m = self.mirror
        accounts = list(m.accounts)
        self.accounts = accounts
        self.accounts_lower = [a.lower() for a in accounts]
        self.index = {a: i for i, a in enumerate(self.accounts_lower)}
        n, n_assets = len(accounts), len(self.symbols)
        market_ids = sorted(m.markets)
        self.market_ids = market_ids
        col = {mid: j for j, mid in enumerate(market_ids)}
        coll_ids = sorted(m.collaterals)
        ccol = {cid: j for j, cid in enumerate(coll_ids)}
        sizes = np.zeros((n, len(market_ids)))
        balances = np.zeros((n, len(coll_ids)))
        cash = np.zeros(n)
        funding_last = np.zeros((n, len(market_ids)))
        nonces = np.zeros(n, dtype=np.int64)
        rows, cols, vals = [], [], []
        for i, a in enumerate(accounts):
            st = m.accounts[a]
            cash[i] = st.cash_wad / 1e18
            nonces[i] = st.nonce
            for mid, size in st.positions.items():
                if size:
                    sizes[i, col[mid]] = size / 1e18
                    funding_last[i, col[mid]] = st.funding_index.get(mid, 0) / 1e18
                    rows.append(i)
                    cols.append(col[mid])
                    vals.append(size / 1e18)
            for cid, amount in st.balances.items():
                if amount and cid in ccol:
                    balances[i, ccol[cid]] = amount / 10 ** m.collaterals[cid].decimals
        self.sizes, self.balances, self.cash, self.nonces = sizes, balances, cash, nonces
        self.funding_last = funding_last
        self.nonce_list = [m.accounts[a].nonce for a in accounts]
        market_asset = np.array([m.markets[mid].oracle_asset for mid in market_ids], dtype=np.intp)
        self.market_asset = market_asset
        self.im_rate = np.array([m.markets[mid].im_bps / 1e4 for mid in market_ids])
        self.mm_rate = np.array([m.markets[mid].mm_bps / 1e4 for mid in market_ids])
        self.coll_asset = np.array([m.collaterals[c].oracle_asset for c in coll_ids], dtype=np.intp)
        self.coll_weight = np.array([m.collaterals[c].weight_bps / 1e4 for c in coll_ids])
        onehot = np.zeros((len(market_ids), n_assets), dtype=bool)
        onehot[np.arange(len(market_ids)), market_asset] = True
        self.account_assets = (sizes != 0) @ onehot
        self.has_positions = self.account_assets.any(axis=1)
        fund = self.index.get(self.insurance_fund.lower())
        if fund is not None:
            self.has_positions[fund] = False
        bits = 1 << np.arange(n_assets, dtype=np.int64)
        self.asset_mask = (self.account_assets * bits).sum(axis=1).astype(np.int64)
        instruments = Instruments.build(
            self.symbols,
            [f"M{mid}" for mid in market_ids],
            ["perp"] * len(market_ids),
            [self.symbols[a] for a in market_asset],
        )
        positions = Positions.build(
            n,
            np.array(rows, dtype=np.intp),
            np.array(cols, dtype=np.intp),
            np.array(vals),
            len(market_ids),
        )
        if self.risk is None or self.risk.instruments.ids != instruments.ids:
            self.risk = RiskEngine(self.risk_config, instruments, positions)
        else:
            self.risk = self.risk.with_positions(positions)
        # Each account's applied (or in-flight) entry; whether it is in force is asked of
        # `mirror.attestations.view` on every pass, since time and prices decide it.
        self.att_seq = np.zeros(n, dtype=np.uint64)
        self.att_nonce = np.full(n, -1, dtype=np.int64)
        self.att_im = np.zeros(n)
        self.att_mm = np.zeros(n)
        for a in m.attestations.entries:
            self.load_applied(a)
        for seq in sorted(self.inflight):
            self.overlay(self.inflight[seq])
        self.version = m.state_version

    def load_applied(self, account: str) -> None:
        """The account's row of the attested view from the mirror (the chain's truth)."""
        i = self.index.get(account.lower())
        if i is None:
            return
        e = self.mirror.attestations.entries.get(self.accounts[i])
        if e is None:
            self.att_seq[i], self.att_nonce[i] = 0, -1
            return
        self.att_seq[i] = e.sequence
        self.att_nonce[i] = e.position_nonce
        self.att_im[i] = e.im_micro_usd / 1e6
        self.att_mm[i] = e.mm_micro_usd / 1e6

    def overlay(self, batch: Batch) -> None:
        """Treat `batch`'s accounts as attested while it is in flight (optimistic), so the next
        pass does not select them again; `sync` reloads them from the mirror once it is done."""
        for e in batch.entries:
            i = self.index.get(e.account.lower())
            if i is None:
                continue
            self.att_seq[i] = batch.sequence
            self.att_nonce[i] = e.position_nonce
            self.att_im[i] = e.im_micro_usd / 1e6
            self.att_mm[i] = e.mm_micro_usd / 1e6

    def funding_usd(
        self, px: FloatArray, now: int, horizon_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """Per account: the funding it owes by block time `now`, which the contract already takes
        out of equity (I26), and what it can owe within `horizon_s` more, the provision the
        engine adds to initial margin (`risk.funding.funding_provision_usd`)."""
        markets = [self.mirror.funding.get(mid, FundingMarket()) for mid in self.market_ids]
        market_px = px[self.market_asset]
        index_now = np.array(
            [
                f.index_at(now, usd_to_e18(float(p))) / 1e18
                for f, p in zip(markets, market_px, strict=True)
            ]
        )
        owed = (self.sizes * (index_now[None, :] - self.funding_last)).sum(axis=1)
        provision = funding_provision_usd(
            self.sizes,
            market_px,
            np.array([f.rate_e18 / 1e18 for f in markets]),
            np.array([f.max_rate_bps / 1e4 for f in markets]),
            np.array([max(f.premium_window_s, 1) for f in markets], dtype=np.float64),
            horizon_s,
        )
        return np.asarray(owed, dtype=np.float64), provision

    def policy_inputs(
        self,
        px: FloatArray,
        accepted: BoolArray,
        fresh_im: FloatArray,
        fresh_mm: FloatArray,
        now: int,
        funding_owed: FloatArray | None = None,
    ) -> policy.PolicyInputs:
        """What the policy compares, per account: fresh, static and attested requirements (the
        latter's standing from the one S1 rule, `AttestationMirror.view`), equity (less the
        funding owed, as the contract counts it), eligibility."""
        market_px = px[self.market_asset]
        abs_notional = np.abs(self.sizes) * market_px
        static_im = abs_notional @ self.im_rate
        static_mm = abs_notional @ self.mm_rate
        equity = self.cash + self.sizes @ market_px
        if funding_owed is not None:
            equity = equity - funding_owed
        if self.balances.shape[1]:
            equity = equity + self.balances @ (px[self.coll_asset] * self.coll_weight)
        attestations = self.mirror.attestations
        view = attestations.view(
            self.att_seq,
            self.att_nonce,
            self.nonces,
            self.asset_mask,
            {a: usd_to_e18(float(p)) for a, p in enumerate(px)},
            now,
            pending=[_record_of(b, attestations.key_epoch) for b in self.inflight.values()],
        )
        # Treated as lapsed a little before a newer batch takes its ring slot (policy, not S1).
        newest = np.maximum(np.uint64(attestations.max_sequence), self.att_seq)
        live = view.in_force & (newest - self.att_seq < RING_SIZE - _RING_MARGIN)
        return policy.PolicyInputs(
            fresh_im_usd=np.maximum(fresh_im, fresh_mm),
            fresh_mm_usd=fresh_mm,
            static_im_usd=static_im,
            static_mm_usd=static_mm,
            attested_im_usd=self.att_im,
            attested_mm_usd=self.att_mm,
            attested_live=live,
            attested_age_s=view.age_s,
            attested_gap_bps=view.gap_bps,
            equity_usd=equity,
            eligible=self.has_positions & ~self.needs(accepted),
        )

    def needs(self, accepted: BoolArray) -> BoolArray:
        """Accounts holding a position in an asset whose price is not accepted now."""
        return np.asarray((self.account_assets & ~accepted).any(axis=1), dtype=bool)


def usd_to_e18(usd: float) -> int:
    return int(Decimal(repr(usd)) * 10**18)


def _record_of(batch: Batch, key_epoch: int) -> BatchRecord:
    """The ring record `batch` will leave on-chain once applied under `key_epoch`."""
    assets = [a for a in range(32) if batch.price_asset_mask >> a & 1]
    prices = dict(zip(assets, batch.prices_e18, strict=True))
    return BatchRecord(batch.sequence, batch.issued_at, key_epoch, batch.price_asset_mask, prices)
