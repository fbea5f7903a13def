"""The streaming margin engine: price ticks in, k-of-n signed margin attestations on-chain out.

    source ──► sanitiser ──► risk tick (all accounts, numpy) ──► policy ──► batch ──► outbox
     (prices.py)                    (book.py)                  (policy.py) (batching.py)   │
          account mirror ◄── contract events                      delivery ◄──────────┘
             (mirror.py)                               (delivery.py: the one sender)

One room per job: `mirror` (accounts and attestations from events), `book` (the mirror as arrays;
the risk engine; the policy's inputs, in force by the one S1 rule), `prices` (the sanitiser and
the sources), `batching` (persist → sign), `delivery` (send through `offchain.chain.sender`),
`recovery` (finish the outbox after a restart), `guards` (fail closed), `proving` (prove mode:
proofs of what the proof gate would hold back, on a side path), and this module, the
loop: one pass = sync the mirror, tick the risk engine for every account, ask the policy which
accounts need a new attestation, then make, sign and hand over each batch. A batch that fails is
rolled back to the mirror's view.

`once()` is one tick and exit (the CLI's `--once`); `run()` is the long-running service;
`step()` and `run_pass()` are the synchronous pieces tests, the benchmark and the lab drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from offchain.attest import Batch, Domain
from offchain.chain import Chain
from offchain.chain.bindings import TRANSPORT_ERRORS
from offchain.chain.journal import Journal
from offchain.chain.sender import FeePolicy, TxSender
from offchain.chain.signers import LocalTxSigner
from offchain.errors import ConfigError, MarginsyncError
from offchain.feeds import SanitizerConfig, Tick
from offchain.models import Deployment
from offchain.risk import RiskConfig
from offchain.sync import policy
from offchain.sync.batching import Batcher, crash_point
from offchain.sync.book import Book
from offchain.sync.config import EngineConfig, default_risk_config
from offchain.sync.delivery import Delivery, Outcome
from offchain.sync.guards import Guards
from offchain.sync.keys import LOCAL_CHAIN_IDS, Signer, SignerUnavailable
from offchain.sync.metrics import EngineMetrics, event
from offchain.sync.mirror import EngineMirror
from offchain.sync.outbox import Outbox, Row, State
from offchain.sync.prices import PriceDesk, Prices, SourceKind, source_sanitizer_config
from offchain.sync.proving import ProofWorker, dev_prover_key
from offchain.sync.recovery import recover

# Only on local chains may the engine top up its own dev submitter key.
_DEV_SUBMITTER_SEED = "marginsync dev engine submitter"


class EngineHalted(MarginsyncError):
    """The engine stopped attesting (fail closed); the message says why."""


@dataclass
class StepReport:
    """What one pass did."""

    accounts: int = 0
    selected: int = 0
    deferred: int = 0
    rows: list[Row] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    blocked_accounts: int = 0  # accounts with positions not attestable for want of a price
    halted: str | None = None
    pass_s: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"{self.accounts} accounts", f"{self.selected} selected"]
        if self.deferred:
            parts.append(f"{self.deferred} deferred")
        for o in self.outcomes:
            parts.append(
                f"batch #{o.sequence} {o.state}"
                + (
                    f" ({o.applied} applied, gas {o.gas_used:,})"
                    if o.state == State.CONFIRMED
                    else f" ({o.detail})"
                )
            )
        if self.refused:
            parts.append("refused " + ", ".join(f"{s}: {r}" for s, r in self.refused.items()))
        if self.halted:
            parts.append(f"NOT ATTESTING: {self.halted}")
        return "; ".join(parts)


class Engine:
    """One engine process for one deployment: `start()`, then `once()` or `run()` (see the
    module docstring)."""

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        *,
        signers: Sequence[Signer],
        submitter_key: LocalAccount,
        outbox_path: Path,
        config: EngineConfig | None = None,
        risk_config: RiskConfig | None = None,
        sanitizer_config: SanitizerConfig | None = None,
        clock: Callable[[], float] = time.time,
        metrics: EngineMetrics | None = None,
        fees: FeePolicy | None = None,
        prover_key: LocalAccount | None = None,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        """`prover_key`: prove mode (`--prove`, see `proving`), its proofs sent with this key."""
        if deployment.attestation_verifier is None:
            raise ConfigError(
                "this deployment has no AttestationVerifier",
                "deploy with an attestation spec (the default) to run the engine",
            )
        self.chain = chain
        self.d = deployment
        self.config = config or EngineConfig()
        self.clock = clock
        self.metrics = metrics or EngineMetrics()
        self.progress = progress
        self.verifier = chain.contract("AttestationVerifier", deployment.attestation_verifier)
        self.domain = Domain(chain.chain_id, deployment.attestation_verifier)
        self.outbox = Outbox(
            outbox_path, chain_id=chain.chain_id, verifier=deployment.attestation_verifier
        )
        journal = Journal(
            journal_path(outbox_path),
            chain_id=chain.chain_id,
            sender=str(submitter_key.address),
            genesis=chain.genesis_hash,
        )
        sender = TxSender(
            chain.w3, LocalTxSigner(submitter_key), journal, chain_id=chain.chain_id, policy=fees
        )
        self.delivery = Delivery(
            chain, self.verifier, self.outbox, sender, on_sent=lambda _row: crash_point("sent")
        )
        self.symbols = [a.symbol for a in sorted(deployment.assets, key=lambda a: a.id)]
        self.desk = PriceDesk(
            self.symbols, sanitizer_config or SanitizerConfig(), clock, self.metrics
        )
        self.mirror = EngineMirror(chain, deployment)
        self.book = Book(
            self.mirror,
            self.symbols,
            deployment.insurance_fund,
            risk_config or default_risk_config(deployment),
        )
        self.guards = Guards(
            chain,
            self.verifier,
            self.domain,
            signers,
            self.config,
            clock,
            self.metrics,
            lambda line: self.progress(line),
        )
        self.batcher = Batcher(self.domain, self.outbox, self.guards.sign)
        self.proofs = (
            None
            if prover_key is None
            else ProofWorker(
                chain,
                deployment,
                key=prover_key,
                journal_path=outbox_path.with_name(
                    f"{outbox_path.stem}-prover{outbox_path.suffix}"
                ),
                metrics=self.metrics,
                receipt_timeout_s=self.config.receipt_timeout_s,
                progress=lambda line: self.progress(line),
            )
        )
        self._started = False
        self._verifier_version = 0
        self._last_now_s = -math.inf
        # Appended by the delivery task, drained by the pass thread (deque ops are atomic).
        self._pending_outcomes: deque[Outcome] = deque()
        self._tick_at: dict[int, float] = {}
        self._refused_logged: dict[str, str] = {}

    # ------------------------------------------------------------------ start
    def start(self) -> list[Outcome]:
        """Check keys, signer and clock; sync the mirror; finish what the outbox holds."""
        if self._started:
            return []
        guards = self.guards
        guards.load_verifier_config(raise_on_keys=True)
        self.batcher.check_digest()
        guards.probe_signer(force=True)
        if "signer" in guards.halts:
            raise SignerUnavailable(guards.halts["signer"], "fix the signer before starting")
        guards.check_clock(force=True)
        self.delivery.ensure_funds()
        self.mirror.sync()
        self._verifier_version = self.mirror.verifier_version
        if self.proofs is not None:
            self.proofs.start()
        self._started = True
        assert guards.quorum is not None
        assert guards.policy_config is not None
        event(
            "engine_started",
            chain=self.chain.chain_id,
            verifier=self.d.attestation_verifier,
            threshold=guards.quorum.threshold,
            signers=len(guards.quorum.signers),
            max_age_s=guards.policy_config.max_age_s,
            band_bps=guards.policy_config.band_bps,
            submitter=self.delivery.sender.address,
        )
        return recover(
            self.outbox,
            self.delivery,
            self.batcher,
            guards,
            receipt_timeout_s=self.config.receipt_timeout_s,
            record=lambda o: self._record(o, None),
            progress=self.progress,
        )

    # ------------------------------------------------------------------ ticks
    def ingest(self, tick: Tick, entered_at_s: float | None = None) -> None:
        """One tick through the sanitiser; an accepted price change marks the engine dirty."""
        self.desk.ingest(tick, entered_at_s)

    def prices(self) -> Prices:
        """Every asset's price now (re-checked for staleness), and what is refused."""
        return self.desk.prices()

    # ------------------------------------------------------------------ the pass
    def _sync(self) -> None:
        self.mirror.sync()
        if self.mirror.verifier_version != self._verifier_version:
            self._verifier_version = self.mirror.verifier_version
            self.guards.load_verifier_config()
        finished: list[Batch] = []
        while self._pending_outcomes:
            batch = self.book.inflight.pop(self._pending_outcomes.popleft().sequence, None)
            if batch is not None:
                finished.append(batch)
        version = self.book.version
        self.book.sync(finished)
        if self.book.version != version:
            self.metrics.accounts.set(len(self.book.accounts))

    def step(
        self, prices: Prices | None = None, *, mine: Callable[[], None] | None = None
    ) -> StepReport:
        """One pass and its submission, waiting for receipts (the `--once` path, benches and the
        lab). `mine` runs once every batch is broadcast: a chain that mines only on demand (the
        lab's, whose blocks carry the scenario's clock) includes them there."""
        report = self.run_pass(prices)
        for row in report.rows:
            if (outcome := self.delivery.send(row)) is not None:
                report.outcomes.append(outcome)
        if mine is not None and self.delivery.in_flight:
            mine()
        report.outcomes.extend(self.delivery.wait(self.config.receipt_timeout_s))
        for o in report.outcomes:
            self._record(o, self._tick_at.get(o.sequence))
        if self.proofs is not None:  # the side path's proofs too, before `--once` exits
            self.proofs.drain(self.config.receipt_timeout_s)
        return report

    def run_pass(self, prices: Prices | None = None) -> StepReport:
        """Sync, risk tick for all accounts, policy, then persist and sign the batches."""
        guards, book = self.guards, self.book
        assert guards.policy_config is not None, "call start() first"
        t0 = time.perf_counter()
        prices = prices or self.prices()
        report = StepReport(refused=dict(prices.refused))
        guards.check_clock()
        if "signer" in guards.halts:
            guards.probe_signer()
        self._sync()
        report.accounts = len(book.accounts)
        last = self.desk.last_accepted
        missing = [s for s in self.symbols if s not in last]
        if missing or not book.accounts:
            if missing:
                report.refused.update({s: report.refused.get(s, "no price yet") for s in missing})
                report.blocked_accounts = int(book.has_positions.sum()) if book.accounts else 0
            report.halted = guards.halted
            report.pass_s = time.perf_counter() - t0
            return report
        now_s = max(self.clock(), self._last_now_s)
        self._last_now_s = now_s
        px = np.array([prices.accepted.get(s, last[s]) for s in self.symbols])
        accepted = np.array([s in prices.accepted for s in self.symbols])
        for sym, reason in prices.refused.items():
            if self._refused_logged.get(sym) != reason:
                event("price_refused", level=30, symbol=sym, reason=reason)
        self._refused_logged = dict(prices.refused)
        assert book.risk is not None
        result = book.risk.tick(px, now_s, with_greeks=False)
        chain_now = math.floor(guards.chain_now())
        # Funding: what accounts owe by now leaves equity (I26); what they can owe until their
        # attestation expires is provisioned in initial margin.
        owed, provision = book.funding_usd(px, chain_now, guards.policy_config.max_age_s)
        im_usd = result.im_usd + provision
        inputs = book.policy_inputs(px, accepted, im_usd, result.mm_usd, chain_now, owed)
        report.blocked_accounts = int((book.has_positions & book.needs(accepted)).sum())
        selection = policy.select(inputs, guards.policy_config)
        report.selected, report.deferred = len(selection), selection.deferred
        codes, counts = np.unique(selection.reasons, return_counts=True)
        report.reasons = {
            policy.describe(int(c)): int(n) for c, n in zip(codes, counts, strict=True)
        }
        report.halted = guards.halted
        self.metrics.pass_s.observe(time.perf_counter() - t0)
        if len(selection) == 0 or report.halted:
            report.pass_s = time.perf_counter() - t0
            return report
        tick_at = prices.tick_at_s
        prove = (
            None
            if self.proofs is None
            else policy.needs_proof(inputs, result.mm_usd, guards.policy_config)
        )
        for start in range(0, len(selection), guards.max_batch):
            chunk = selection.indices[start : start + guards.max_batch]
            try:
                row = self.batcher.make(book, chunk, im_usd, result.mm_usd, px, chain_now, tick_at)
            except SignerUnavailable as exc:
                guards.halt("signer", str(exc))
                report.halted = guards.halted
                break
            book.inflight[row.sequence] = row.batch
            book.overlay(row.batch)
            if self.proofs is not None and prove is not None:  # a queue put; the pass goes on
                self.proofs.request(book.accounts[i] for i in chunk.tolist() if prove[i])
            if tick_at is not None:
                self._tick_at[row.sequence] = tick_at
            self.metrics.queue_depth.set(self.outbox.depth())
            report.rows.append(row)
        report.pass_s = time.perf_counter() - t0
        return report

    def _record(self, o: Outcome, tick_at: float | None) -> None:
        self._pending_outcomes.append(o)
        self._tick_at.pop(o.sequence, None)
        self.metrics.batch_done(o, tick_at, self.outbox.depth())

    def _done(self, o: Outcome) -> None:
        self._record(o, self._tick_at.get(o.sequence))

    async def once(
        self, source: AsyncIterator[Tick], *, stop_when_accepted: bool = False
    ) -> StepReport:
        """One tick and exit: start, take prices until every asset is accepted (or the source
        ends or times out), one pass, wait for receipts. Raises `EngineHalted` when it could not
        attest what it should have (no signer, clock skew, refused prices for open positions)."""
        await asyncio.to_thread(self.start)
        await self.desk.ingest_from(
            source, stop_when_accepted=stop_when_accepted, timeout_s=self.config.once_timeout_s
        )
        report = await asyncio.to_thread(self.step)
        self.progress(f"pass: {report.summary()}")
        reasons = []
        if report.halted:
            reasons.append(report.halted)
        if report.blocked_accounts:
            reasons.append(
                f"{report.blocked_accounts} account(s) not attested, prices refused: "
                + ", ".join(f"{s} ({r})" for s, r in report.refused.items())
            )
        if reasons:
            raise EngineHalted(
                "stopped attesting (fail closed): " + "; ".join(reasons),
                "the contracts use static margin meanwhile; fix the cause and rerun",
            )
        return report

    async def run(self, source: AsyncIterator[Tick], *, stop: asyncio.Event | None = None) -> None:
        """The service: ticks feed the sanitiser as they come; a pass runs on every accepted
        price change (coalesced while the previous pass runs) and at least every `interval_s`
        (refresh windows, clock and signer re-checks); a delivery task sends and confirms."""
        stop = stop or asyncio.Event()
        await asyncio.to_thread(self.start)
        wake = asyncio.Event()
        queue: asyncio.Queue[Row] = asyncio.Queue()

        async def consume() -> None:
            async for tick in source:
                self.ingest(tick)
                if self.desk.changed_since is not None:
                    wake.set()
                if stop.is_set():
                    return

        consumer = asyncio.create_task(consume())
        delivery = asyncio.create_task(self.delivery.serve(queue, stop, self._done, self.progress))
        loop = asyncio.get_running_loop()
        try:  # a service manager's SIGTERM stops it like Ctrl-C: in-flight work stays in the outbox
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            handler = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            handler = False
        passes = 0
        outage = Outage(self.config.max_backoff_s, self.config.max_outage_s, self.progress)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), outage.delay_s or self.config.interval_s)
                wake.clear()
                if consumer.done() and consumer.exception() is not None:
                    raise consumer.exception()  # type: ignore[misc]
                if delivery.done() and delivery.exception() is not None:
                    raise delivery.exception()  # type: ignore[misc]
                try:
                    report = await asyncio.to_thread(self.run_pass, self.prices())
                except TRANSPORT_ERRORS as exc:
                    outage.failed(exc)  # raises ChainLost once the outage lasts too long
                    continue
                outage.recovered()
                passes += 1
                for row in report.rows:
                    queue.put_nowait(row)
                if report.rows or report.halted or passes % 60 == 1:
                    self.progress(f"pass {passes}: {report.summary()}")
        finally:
            if handler:
                loop.remove_signal_handler(signal.SIGTERM)
            consumer.cancel()
            delivery.cancel()
            await asyncio.gather(consumer, delivery, return_exceptions=True)

    def close(self) -> None:
        if self.proofs is not None:
            self.proofs.close()
        self.guards.close()
        self.outbox.close()
        self.delivery.sender.journal.close()


class ChainLost(MarginsyncError):
    """The node stayed unreachable longer than the engine waits for it."""


class Outage:
    """The pass loop's view of the node being away: retry with doubling delays, say so once per
    outage and once when the node is back, give up after `max_outage_s`. Whatever was in flight
    stays in the outbox and journal, so nothing is lost and nothing is sent twice on return."""

    def __init__(
        self, max_backoff_s: float, max_outage_s: float, progress: Callable[[str], None]
    ) -> None:
        self.max_backoff_s = max_backoff_s
        self.max_outage_s = max_outage_s
        self.progress = progress
        self.since: float | None = None
        self.delay_s = 0.0

    def failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = now
            self.progress(f"chain unreachable ({type(exc).__name__}); retrying with backoff")
        away_s = now - self.since
        if away_s > self.max_outage_s:
            raise ChainLost(
                f"the node has been unreachable for {away_s:.0f} s",
                "restart it or check --rpc-url / MARGINSYNC_RPC_URL; the outbox keeps what "
                "was in flight for the next start",
            ) from exc
        self.delay_s = min(max(2 * self.delay_s, 0.5), self.max_backoff_s)

    def recovered(self) -> None:
        if self.since is not None:
            self.progress(f"chain back after {time.monotonic() - self.since:.1f} s; resuming")
        self.since, self.delay_s = None, 0.0


def journal_path(outbox_path: Path) -> Path:
    """The sender's journal beside the outbox: `outbox.sqlite` → `outbox-journal.sqlite`."""
    return outbox_path.with_name(f"{outbox_path.stem}-journal{outbox_path.suffix}")


def dev_submitter_key() -> LocalAccount:
    """A LOCAL-ONLY transaction key for the engine (derived from a public string, like the dev
    engine keys); `start()` funds it on Anvil."""
    key: LocalAccount = Account.from_key(keccak(text=_DEV_SUBMITTER_SEED))
    return key


# ---------------------------------------------------------------------------- CLI wiring
def build_engine(
    chain: Chain,
    deployment: Deployment,
    *,
    source: SourceKind,
    dev_keys: bool,
    outbox_path: Path | None,
    config: EngineConfig,
    submitter_key: str | None,
    risk_config_path: Path | None = None,
    clock: Callable[[], float] = time.time,
    prove: bool = False,
    prover_key: str | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> Engine:
    """An engine as `marginsync engine` configures it (keys, submitter, sanitiser, outbox;
    with `prove`, the prover's key: `prover_key`, or the dev one on a local chain); `clock` is
    wall time except where a simulation keeps its own (the lab)."""
    from offchain.risk import load_risk_config
    from offchain.sync.keys import load_signers

    if deployment.attestation_verifier is None:
        raise ConfigError("this deployment has no AttestationVerifier", "redeploy with one")
    verifier = chain.contract("AttestationVerifier", deployment.attestation_verifier)
    signers = load_signers(
        chain_id=chain.chain_id,
        dev_keys=dev_keys,
        dev_count=max(int(verifier.functions.signerCount().call()), 1),
    )
    if submitter_key:
        sender: LocalAccount = Account.from_key(submitter_key)
    elif dev_keys and chain.chain_id in LOCAL_CHAIN_IDS:
        sender = dev_submitter_key()
    else:
        raise ConfigError(
            "no key to send attestation transactions with",
            "set MARGINSYNC_PRIVATE_KEY to a funded key (or pass --dev-keys on a local chain)",
        )
    prover: LocalAccount | None = None
    if prove and prover_key:
        prover = Account.from_key(prover_key)
    elif prove and dev_keys and chain.chain_id in LOCAL_CHAIN_IDS:
        prover = dev_prover_key()
    elif prove:
        raise ConfigError(
            "no key to send proofs with (prove mode sends them from a key of its own)",
            "set MARGINSYNC_PROVER_KEY to a funded key (or pass --dev-keys on a local chain)",
        )
    risk_config = None
    if risk_config_path is not None:
        import json

        try:
            risk_config = load_risk_config(json.loads(risk_config_path.read_text()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{risk_config_path}: {exc}", "give a valid RiskConfig JSON") from exc
    router = chain.contract("OracleRouter", deployment.oracle_router)
    heartbeat_s = min(
        (float(router.functions.feedConfig(a.id).call()[1]) for a in deployment.assets),
        default=3_600.0,
    )
    path = outbox_path or (
        Path(".marginsync") / f"outbox-{chain.chain_id}-{chain.genesis_tag}-"
        f"{deployment.attestation_verifier.lower()[2:10]}.sqlite"
    )
    return Engine(
        chain,
        deployment,
        signers=signers,
        submitter_key=sender,
        outbox_path=path,
        config=config,
        risk_config=risk_config,
        sanitizer_config=source_sanitizer_config(source, heartbeat_s),
        clock=clock,
        prover_key=prover,
        progress=progress,
    )
