"""The engine across venues (issue 12, X1–X7): one mirror per venue, one risk pass per step over
every trader's whole book, certificates signed by the committee and applied on every venue,
pledge orders; and the certificate lag of each.

One `step`:
1. sync every venue's mirror (clearinghouse accounts + VenueLink ledger, `LinkView.sync`);
2. read each venue's oracle prices and take the issue time every chain has reached;
3. select the accounts due a certificate: their state on some venue changed since the last one
   (position or pledge nonce, cash, balances), or its life is nearly over (`refresh_margin_s`
   before `maxAgeSeconds`), or a certified price moved half the contract's band;
4. one risk pass over all of them (`LinkView.book`, the cross-venue model), then per account:
   the next link sequence, the committee's aggregate signature (members rebuild the
   certificate from their own mirrors before they sign), and `submitCertificate` on every venue
   through that venue's TxSender (pre-flighted: a venue whose state moved on refuses, and the
   account stays due);
5. orders: RELEASE once phase 1 is seen, CLAIM for losses booked, executed on the pledge's
   holder venue (offchain/link/orders.py says when each is due).

Certificate lag: from the step whose sync first saw an account's new state (the last venue
event the certificate answers) to the receipt that applied the certificate on the last venue,
in seconds of the engine's clock, per certificate (`lags`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from offchain.chain.journal import TxState
from offchain.chain.sender import TxSender
from offchain.committee.aggregator import Aggregator, Signer
from offchain.errors import ContractRevert, QuorumNotReached
from offchain.link.messages import Certificate, Order, certificate_digest, order_digest
from offchain.link.orders import claims, order_json, releases
from offchain.link.view import Built, CertificateProposal, LinkView, assets_of, certificate_slot

log = logging.getLogger("marginsync.link")

BPS = 10_000


@dataclass(frozen=True)
class LinkEngineConfig:
    refresh_margin_s: int = 10  # re-certify an account whose certificate has this little left
    price_drift_bps: int = 50  # ... or a certified price moved this far (half the default band)
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
        self.senders = list(senders)
        self.config = config or LinkEngineConfig()
        self.cached_sets = cached_sets
        self.clock = clock
        self.known: dict[tuple[str, int], Built] = {}  # what we certified, by (account, seq)
        self.withheld: dict[str, set[tuple[int, int]]] = {}
        self.lags: list[Lag] = []
        self._accounts: dict[str, _Account] = {}
        self._excluded = {v.mirror.insurance_fund for v in view.venues}

    # ------------------------------------------------------------------ the step
    def step(self) -> StepReport:
        report = StepReport()
        self.view.sync()
        seen_at = self.clock()
        prices = [self._prices(v) for v in range(len(self.view.venues))]
        now = min(self._block_time(v) for v in range(len(self.view.venues)))
        due = self._due(prices, now, seen_at)
        report.due = len(due)
        if due:
            book = self.view.book(due, prices, now, self.withheld)
            pending: list[tuple[Certificate, list[Any]]] = []
            for account in due:
                built = self.view.built(
                    book, account, self._accounts[account].sequence + 1, now, prices
                )
                sent = self._certify_and_send(built, report)
                if sent:
                    pending.append((built.certificate, sent))
            report.certified = len(pending)
            report.applied = self._confirm(pending, report)
        report.orders = self._orders(now)
        return report

    def _due(self, prices: Sequence[Mapping[int, int]], now: int, seen_at: float) -> list[str]:
        traders = set().union(
            *(
                {a for a, s in v.mirror.accounts.items() if s.has_positions}
                | {p.account for p in v.mirror.link.pledges.values()}
                for v in self.view.venues
            )
        )
        due = []
        for account in sorted(traders - self._excluded):
            state = self._accounts.setdefault(account, self._first_seen(account))
            fingerprint = self._fingerprint(account)
            if fingerprint != state.seen:
                state.seen, state.seen_at = fingerprint, seen_at
            if not self._priced(account, prices):
                continue
            max_age = min(v.mirror.link.max_age_s for v in self.view.venues)
            if (
                fingerprint != state.fingerprint
                or now >= state.issued_at + max_age - self.config.refresh_margin_s
                or self._drifted(state, prices)
            ):
                due.append(account)
        return due

    def _first_seen(self, account: str) -> _Account:
        """An account the engine has not certified: its link sequence continues the highest any
        venue applied (a restarted engine never reuses one)."""
        applied = [v.mirror.link.certificates.get(account) for v in self.view.venues]
        return _Account(sequence=max((a.sequence for a in applied if a), default=0))

    def _fingerprint(self, account: str) -> tuple[Any, ...]:
        out: list[Any] = []
        for v in self.view.venues:
            s = v.mirror.accounts.get(account)
            state = None if s is None else (s.nonce, s.cash_wad, tuple(sorted(s.balances.items())))
            out.append((state, v.mirror.link.pledge_nonces.get(account, 0)))
        return (*out, tuple(sorted(self.withheld.get(account, ()))))

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
    def _certify_and_send(self, built: Built, report: StepReport) -> list[Any]:
        cert = built.certificate
        account = cert.account
        digest = certificate_digest(cert)
        withheld = frozenset(self.withheld.get(account, ()))
        blocks = self.view.heads()
        proposal = {"certificate": CertificateProposal.of(cert, blocks, withheld).as_json()}
        state = self._accounts[account]
        state.sequence = cert.sequence  # burnt even if no quorum: members keep what they signed
        try:
            signed = self.aggregator.certify(
                certificate_slot(account, cert.sequence),
                digest,
                self.members,
                self.cached_sets,
                proposal,
            )
        except QuorumNotReached as exc:
            report.refused[account] = str(exc)
            log.warning("no quorum for %s: %s", account, exc)
            return []
        self.known[(account, cert.sequence)] = built
        sent = []
        for v, venue in enumerate(self.view.venues):
            fn = self._link(v).functions.submitCertificate(
                cert.as_abi(), signed.signer_bitmap, signed.signature
            )
            pending = self._send(v, fn, f"certificate:{account}:{cert.sequence}")
            if pending is None:
                report.refused[account] = f"refused on chain {venue.chain_id}"
            else:
                sent.append((v, pending))
        return sent

    def _confirm(self, pending: list[tuple[Certificate, list[Any]]], report: StepReport) -> int:
        """Waits for every venue's receipts; records the lag of every certificate applied on
        every venue, and what it certified."""
        outcomes: dict[tuple[int, str], Any] = {}
        for v, sender in enumerate(self.senders):
            for o in sender.wait(self.config.confirm_timeout_s):
                outcomes[(v, o.purpose)] = o
        applied = 0
        for cert, sent in pending:
            purpose = f"certificate:{cert.account}:{cert.sequence}"
            mined = [outcomes.get((v, purpose)) for v, _ in sent]
            if len(sent) < len(self.view.venues) or any(
                o is None or o.state is not TxState.MINED for o in mined
            ):
                continue  # a venue did not apply it: the account stays due
            applied += 1
            state = self._accounts[cert.account]
            state.issued_at = cert.issued_at
            state.fingerprint = state.seen
            state.prices = tuple((v.price_asset_mask, v.prices_e18) for v in cert.venues)
            self.lags.append(Lag(cert.account, cert.sequence, self.clock() - state.seen_at))
        return applied

    # ------------------------------------------------------------------ orders
    def _orders(self, now: int) -> int:
        due = releases(self.view, self.known, now) + claims(self.view, now)
        done = 0
        for holder, order in due:
            if self._execute(holder, order):
                done += 1
        if done:
            for sender in self.senders:
                sender.wait(self.config.confirm_timeout_s)
        return done

    def _execute(self, holder: int, order: Order) -> bool:
        digest = order_digest(order)
        try:
            signed = self.aggregator.certify(
                int.from_bytes(digest, "big"),
                digest,
                self.members,
                self.cached_sets,
                {"order": order_json(order), "blocks": list(self.view.heads())},
            )
        except QuorumNotReached as exc:
            log.warning(
                "no quorum for %s order on pledge %d: %s", order.kind.name, order.pledge_id, exc
            )
            return False
        fn = self._link(holder).functions.executeOrder(
            order.as_abi(), signed.signer_bitmap, signed.signature
        )
        return self._send(holder, fn, f"order:0x{digest.hex()}") is not None

    # ------------------------------------------------------------------ chain
    def _link(self, v: int) -> Any:
        venue = self.view.venues[v]
        return venue.mirror.chain.contract("VenueLink", venue.link)

    def _send(self, v: int, fn: Any, purpose: str) -> Any:
        """Pre-flights `fn` on venue v and sends it through its TxSender; None if it would
        revert (its custom error is logged)."""
        sender = self.senders[v]
        chain = self.view.venues[v].mirror.chain
        try:
            gas = chain.gas_limit(fn, sender.address, purpose)
        except ContractRevert as exc:
            log.info("%s refused on chain %d: %s", purpose, self.view.venues[v].chain_id, exc)
            return None
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        return sender.send(self.view.venues[v].link, data, gas, purpose=purpose)

    def _prices(self, v: int) -> dict[int, int]:
        """Venue v's oracle prices (1e18) of every asset it lists; an asset whose feed is broken
        is left out (accounts holding it are not certified until it recovers)."""
        venue = self.view.venues[v]
        router = venue.mirror.chain.contract("OracleRouter", venue.oracle_router)
        out = {}
        for asset in venue.assets:
            price, status = router.functions.tryPriceE18(asset).call()
            if status == 0:
                out[asset] = int(price)
        return out

    def _block_time(self, v: int) -> int:
        return int(self.view.venues[v].mirror.chain.w3.eth.get_block("latest")["timestamp"])
