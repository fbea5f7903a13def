"""The engine across venues (issue 12, X1–X7): one mirror per venue, one risk pass per step over
every trader's whole book, certificates signed by the committee and applied on every venue,
pledge orders; and the certificate lag of each.

One `step`:
1. sync every venue's mirror (clearinghouse accounts + VenueLink ledger, `LinkView.sync`);
2. read each venue's oracle prices and take the issue time every chain has reached;
3. select the accounts due a certificate: first those whose state on some venue changed since
   the last one (position or pledge nonce, cash, balances) or whose certified prices moved half
   the contract's band, then up to `max_refreshes_per_step` whose certificate's life is nearly
   over (`refresh_margin_s` before `maxAgeSeconds`), oldest first, if it binds: a certificate
   that only restates every venue's standalone requirement (a hedge without pledges: X2 clamps
   it to static) is left to expire, the venues then falling back to their own rules (X6);
4. one risk pass over all of them (`LinkView.book`, the cross-venue model), then per account:
   the next link sequence, the committee's aggregate signature (members rebuild the
   certificate from their own mirrors before they sign), and `submitCertificate` on every venue
   through that venue's TxSender (pre-flighted: a venue whose state moved on refuses, and the
   account stays due);
5. X5: `crossvenue.rebalance` over the step's book plans moves; a planned pledge is withheld
   from the account's certificates (phase 1) until the move is done;
6. orders: RELEASE once phase 1 is seen, CLAIM for losses booked, MOVE once phase 1 is seen,
   executed on the pledge's holder venue (offchain/link/orders.py says when each is due).

Certificate lag: from the step whose sync first saw an account's new state (the last venue
event the certificate answers) to the receipt that applied the certificate on the last venue,
in seconds of the engine's clock, per certificate that answers a change (`lags`; refreshes of
an unchanged book answer none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offchain.chain.journal import TxState
from offchain.chain.sender import TxSender
from offchain.committee.aggregator import Aggregator, Signer
from offchain.committee.registry import Certificate as RegistryCertificate
from offchain.errors import QuorumNotReached
from offchain.link.delivery import VenueDelivery, purpose_of
from offchain.link.messages import (
    Certificate,
    Order,
    certificate_digest,
    order_digest,
    pledged_wad,
)
from offchain.link.mirror import PledgeState
from offchain.link.orders import claims, moves, order_json, releases
from offchain.link.view import (
    Built,
    CertificateProposal,
    Known,
    LinkBook,
    LinkView,
    assets_of,
    certificate_slot,
)
from offchain.risk.crossvenue import Pledges, rebalance, wad_array

log = logging.getLogger("marginsync.link")

BPS = 10_000


@dataclass(frozen=True)
class LinkEngineConfig:
    refresh_margin_s: int = 15  # re-certify an account whose certificate has this little left
    price_drift_bps: int = 50  # ... or a certified price moved this far (half the default band)
    # Changed accounts are certified first, every step; at most this many only refreshed (the
    # oldest first), so a burst of expiring certificates never delays an answer to a change.
    max_refreshes_per_step: int = 20
    confirm_timeout_s: float = 30.0


@dataclass
class _Account:
    """What the engine last certified for an account, and when it first saw its current state."""

    sequence: int = 0
    issued_at: int = 0
    fingerprint: tuple[Any, ...] = ()
    prices: tuple[tuple[int, tuple[int, ...]], ...] = ()
    seen: tuple[Any, ...] = ()
    seen_at: float = 0.0
    binding: bool = True  # its certificate changes some venue's requirement (else no refresh)


@dataclass
class StepReport:
    due: int = 0
    certified: int = 0
    applied: int = 0
    refused: dict[str, str] = field(default_factory=dict)  # account → why (quorum, pre-flight)
    orders: int = 0


@dataclass(frozen=True)
class Lag:
    account: str
    sequence: int
    seconds: float


class LinkEngine:
    """Certifies every trader's whole book on every venue of one link."""

    def __init__(
        self,
        view: LinkView,
        aggregator: Aggregator,
        members: Mapping[int, Signer],
        senders: Sequence[TxSender],
        *,
        config: LinkEngineConfig | None = None,
        cached_sets: Collection[int] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self.aggregator = aggregator
        self.members = members
        self.venues = [
            VenueDelivery(v.mirror.chain, v.link, v.oracle_router, v.assets, sender)
            for v, sender in zip(view.venues, senders, strict=True)
        ]
        self.config = config or LinkEngineConfig()
        self.cached_sets = cached_sets
        self.clock = clock
        self.known = Known()  # what we certified
        # X5: moves planned from the rebalancing proposal, (holder, pledge id) → new target;
        # their pledges are withheld from certificates until the move is done (phase 1).
        self.planned: dict[tuple[int, int], int] = {}
        self.lags: list[Lag] = []
        self.gas_used: list[int] = []  # of every certificate and order applied, on any venue
        self._accounts: dict[str, _Account] = {}
        self._excluded = {v.mirror.insurance_fund for v in view.venues}

    def lag_ms(self) -> dict[str, float]:
        """The certificate lag so far, in milliseconds: `p50` and `p99` (the lab's
        `certificate_lag_ms`); zeros before any certificate answered a change."""
        seconds = np.array([lag.seconds for lag in self.lags])
        if seconds.size == 0:
            return {"p50": 0.0, "p99": 0.0}
        p50, p99 = np.percentile(seconds * 1000.0, [50, 99])
        return {"p50": float(p50), "p99": float(p99)}

    # ------------------------------------------------------------------ the step
    def step(self) -> StepReport:
        report = StepReport()
        self.view.sync()
        seen_at = self.clock()
        for venue in self.venues:
            venue.new_step()
        prices = [venue.prices() for venue in self.venues]
        now = min(venue.block_time() for venue in self.venues)
        self._forget_done_moves()
        changed, refresh = self._due(prices, now, seen_at)
        report.due = len(changed) + len(refresh)
        # Answers to changes are delivered before refreshes: a refresh never delays one.
        for accounts in (changed, refresh):
            if accounts:
                self._certify_all(accounts, prices, now, report)
        report.orders = self._orders(now)
        return report

    def _certify_all(
        self, accounts: list[str], prices: Sequence[Mapping[int, int]], now: int, report: StepReport
    ) -> None:
        """One risk pass over `accounts`, their certificates signed and applied everywhere,
        then the moves their books call for."""
        book = self.view.book(accounts, prices, now, self.withheld())
        signed = []
        for account in accounts:
            sequence = self._accounts[account].sequence + 1
            built = self.view.built(book, account, sequence, now, prices)
            certificate = self._certify(built, report)
            if certificate is not None:
                signed.append((built.certificate, certificate))
                self._accounts[account].binding = book.binding(account)
        report.certified += len(signed)
        report.applied += self._deliver(signed, report)
        self._plan_moves(book)

    # ------------------------------------------------------------------ X5 moves
    def withheld(self) -> dict[str, set[tuple[int, int]]]:
        """Per account, the pledges (holder, id) left out of its certificates: planned moves."""
        out: dict[str, set[tuple[int, int]]] = {}
        for holder, pledge_id in self.planned:
            account = self.view.venues[holder].mirror.ledger.pledges[pledge_id].account
            out.setdefault(account, set()).add((holder, pledge_id))
        return out

    def _forget_done_moves(self) -> None:
        """A planned move is done (or void) once its pledge favours the new target or is no
        longer ACTIVE: from then it counts (or not) as the ledger says."""
        for (holder, pledge_id), to_venue in list(self.planned.items()):
            p = self.view.venues[holder].mirror.ledger.pledges[pledge_id]
            if p.to_venue == to_venue or p.state is not PledgeState.ACTIVE:
                del self.planned[(holder, pledge_id)]

    def _plan_moves(self, book: LinkBook) -> None:
        """`crossvenue.rebalance` over the step's book: pledges that stop a venue liquidating a
        healthy book, within each holder venue's allowance for the account."""
        rows = {account: a for a, account in enumerate(book.accounts)}
        entries = [
            (w, i, rows[p.account], p)
            for w, venue in enumerate(self.view.venues)
            for i, p in venue.mirror.ledger.pledges.items()
            if p.account in rows and p.state is PledgeState.ACTIVE and (w, i) not in self.planned
        ]
        allowance = np.zeros((len(rows), len(self.view.venues)), dtype=object)
        for w, venue in enumerate(self.view.venues):
            for account, cap in venue.mirror.ledger.allowances.items():
                if account in rows:
                    allowance[rows[account], w] = pledged_wad(cap, venue.quote_decimals)
        pledges = Pledges(
            ids=[i for _, i, _, _ in entries],
            account=np.array([a for _, _, a, _ in entries], dtype=np.intp),
            holder=np.array([w for w, _, _, _ in entries], dtype=np.intp),
            target=np.array([p.to_venue for _, _, _, p in entries], dtype=np.intp),
            amount_wad=wad_array(
                [
                    pledged_wad(p.amount, self.view.venues[w].quote_decimals)
                    for w, _, _, p in entries
                ]
            ),
        )
        for move in rebalance(book.book, book.view, pledges, allowance):
            self.planned[(move.holder, move.pledge_id)] = move.to_venue

    def _due(
        self, prices: Sequence[Mapping[int, int]], now: int, seen_at: float
    ) -> tuple[list[str], list[str]]:
        """(changed, refresh): the accounts due a certificate, in the order to serve them."""
        traders = set().union(
            *(
                {a for a, s in v.mirror.accounts.items() if s.has_positions}
                | {p.account for p in v.mirror.ledger.pledges.values()}
                for v in self.view.venues
            )
        )
        changed, refresh = [], []
        max_age = min(v.mirror.ledger.max_age_s for v in self.view.venues)
        withheld = self.withheld()  # once per step, not once per account
        for account in sorted(traders - self._excluded):
            state = self._accounts.setdefault(account, self._first_seen(account))
            fingerprint = self._fingerprint(account, withheld.get(account, set()))
            if fingerprint != state.seen:
                state.seen, state.seen_at = fingerprint, seen_at
            if not self._priced(account, prices):
                continue
            if fingerprint != state.fingerprint or self._drifted(state, prices):
                changed.append(account)
            elif state.binding and now >= state.issued_at + max_age - self.config.refresh_margin_s:
                refresh.append(account)
        refresh.sort(key=lambda a: self._accounts[a].issued_at)
        return changed, refresh[: self.config.max_refreshes_per_step]

    def _first_seen(self, account: str) -> _Account:
        """An account the engine has not certified: its link sequence continues the highest any
        venue applied (a restarted engine never reuses one)."""
        applied = [v.mirror.ledger.certificates.get(account) for v in self.view.venues]
        return _Account(sequence=max((a.sequence for a in applied if a), default=0))

    def _fingerprint(self, account: str, withheld: set[tuple[int, int]]) -> tuple[Any, ...]:
        out: list[Any] = []
        for v in self.view.venues:
            s = v.mirror.accounts.get(account)
            state = None if s is None else (s.nonce, s.cash_wad, tuple(sorted(s.balances.items())))
            out.append((state, v.mirror.ledger.pledge_nonces.get(account, 0)))
        return (*out, tuple(sorted(withheld)))

    def _priced(self, account: str, prices: Sequence[Mapping[int, int]]) -> bool:
        return all(
            asset in prices[v]
            for v in range(len(self.view.venues))
            for asset in assets_of(self.view.mask(v, account))
        )

    def _drifted(self, state: _Account, prices: Sequence[Mapping[int, int]]) -> bool:
        band = self.config.price_drift_bps
        for v, (mask, certified) in enumerate(state.prices):
            for asset, then in zip(assets_of(mask), certified, strict=True):
                current = prices[v].get(asset, then)
                if abs(current - then) * BPS > current * band:
                    return True
        return False

    # ------------------------------------------------------------------ certificates
    def _certify(self, built: Built, report: StepReport) -> RegistryCertificate | None:
        """The committee's aggregate signature over `built`, or None (why in `report`)."""
        cert = built.certificate
        account = cert.account
        withheld = frozenset(self.withheld().get(account, ()))
        proposal = CertificateProposal.of(cert, self.view.heads(), withheld)
        self._accounts[account].sequence = cert.sequence  # burnt even without a quorum
        try:
            signed = self.aggregator.certify(
                certificate_slot(account, cert.sequence),
                certificate_digest(cert),
                self.members,
                self.cached_sets,
                {"certificate": proposal.as_json()},
            )
        except QuorumNotReached as exc:
            report.refused[account] = str(exc)
            log.warning("no quorum for %s: %s", account, exc)
            return None
        self.known.add(built)
        return signed

    def _deliver(
        self, signed: list[tuple[Certificate, RegistryCertificate]], report: StepReport
    ) -> int:
        """Submits every signed certificate on every venue (one thread per venue: each venue's
        sender stays with one thread) and waits for the receipts; records the lag of every
        certificate applied on every venue, and what it certified. Returns how many."""

        def one_venue(v: int) -> dict[str, Any]:
            venue = self.venues[v]
            sent: dict[str, Any] = {}
            for cert, sig in signed:
                if venue.submit(cert, sig.signer_bitmap, sig.signature) is not None:
                    sent[purpose_of(cert)] = None
            for o in venue.wait(self.config.confirm_timeout_s):
                sent[o.purpose] = o
            return sent

        with ThreadPoolExecutor(max_workers=len(self.venues)) as pool:
            outcomes = list(pool.map(one_venue, range(len(self.venues))))
        applied = 0
        for cert, _ in signed:
            mined = [venue_outcomes.get(purpose_of(cert)) for venue_outcomes in outcomes]
            self.gas_used += [o.gas_used for o in mined if o is not None]
            if any(o is None or o.state is not TxState.MINED for o in mined):
                report.refused[cert.account] = "not applied on every venue"
                continue  # the account stays due
            applied += 1
            state = self._accounts[cert.account]
            if state.fingerprint != state.seen:  # it answers a change (not only a refresh)
                self.lags.append(Lag(cert.account, cert.sequence, self.clock() - state.seen_at))
            state.issued_at = cert.issued_at
            state.fingerprint = state.seen
            state.prices = tuple((v.price_asset_mask, v.prices_e18) for v in cert.venues)
        return applied

    # ------------------------------------------------------------------ orders
    def _orders(self, now: int) -> int:
        if not (self.planned or claims(self.view, now) or self._releasing()):
            return 0  # nothing could be due (a loss booked since the sync waits a step)
        # The rules read what the venues hold now, the certificates just applied included:
        # deciding on the state from before them could release or move a pledge that one of
        # them counts.
        self.view.sync()
        due = (
            releases(self.view, self.known, now)
            + claims(self.view, now)
            + moves(self.view, self.known, self.planned, now)
        )
        done = 0
        for holder, order in due:
            if self._execute(holder, order):
                done += 1
        if done:
            for venue in self.venues:
                self.gas_used += [o.gas_used for o in venue.wait(self.config.confirm_timeout_s)]
        return done

    def _releasing(self) -> bool:
        return any(
            p.state is PledgeState.RELEASING
            for v in self.view.venues
            for p in v.mirror.ledger.pledges.values()
        )

    def _execute(self, holder: int, order: Order) -> bool:
        digest = order_digest(order)
        try:
            signed = self.aggregator.certify(
                int.from_bytes(digest, "big"),
                digest,
                self.members,
                self.cached_sets,
                {"order": order_json(order)},
            )
        except QuorumNotReached as exc:
            log.warning(
                "no quorum for %s order on pledge %d: %s", order.kind.name, order.pledge_id, exc
            )
            return False
        venue = self.venues[holder]
        fn = venue.link.functions.executeOrder(
            order.as_abi(), signed.signer_bitmap, signed.signature
        )
        return venue.execute(fn, f"order:0x{digest.hex()}") is not None
