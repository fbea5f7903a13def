"""The streaming margin engine: price ticks in, k-of-n signed margin attestations on-chain out.

    source ──► sanitiser ──► risk tick (all accounts, numpy) ──► policy ──► batch ──► outbox
                                                                                      │
          account mirror ◄── contract events                      delivery ◄──────────┘
                                                          (the one sender, its journal)

* **Mirror.** Accounts (cash, balances, positions, position nonces) and the attestations applied
  on-chain are rebuilt from the clearinghouse's and the verifier's events (`EngineMirror`, whose
  `attestations` is the one S1 rule, `offchain.chain.attestations`); the engine never reads
  accounts one by one. The arrays the risk engine and the policy use are rebuilt only when an
  event changed something.
* **Pass.** One pass = sync the mirror, tick the risk engine for every account, ask the policy
  which accounts need a new attestation, then for each batch: allocate a sequence (durable),
  persist the batch, sign it with k keys, hand it to the delivery. Accounts in a batch are
  treated as attested at once (optimistically), so the next pass does not re-select them while
  the transaction is in flight; a batch that fails is rolled back to the mirror's view.
* **Fail closed.** Nothing is attested for an account unless every price it depends on is
  `Accepted` by the sanitiser now (D13, C08–C10, C14); the whole engine stops attesting while
  the signer quorum fails (D14) or the engine clock is off chain time by more than
  `max_clock_skew_s` (C15), re-checking periodically and saying why. The contracts then fall
  back to static margin (S2).
* **Crash safety.** See `outbox.py` (persist → sign → send, D11) and `delivery.py` (one sender,
  `offchain.chain.sender`, whose journal re-sends the same raw transaction, D05/D09).
  `MARGINSYNC_ENGINE_CRASH_AT=persisted|signed|sent` is a TEST HOOK: the process SIGKILLs itself
  right after that step, so tests can prove a restart sends the same payload. Never set it in
  production.

`once()` is one tick and exit (the CLI's `--once`); `run()` is the long-running service.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import math
import os
import signal
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, keccak
from pydantic import BaseModel, ConfigDict, Field
from web3.types import RPCEndpoint

from offchain.attest import (
    UINT64_MAX,
    Batch,
    Domain,
    Entry,
    digest,
)
from offchain.chain import Chain, Event, checksum
from offchain.chain.attestations import RING_SIZE, AppliedEntry, AttestationMirror, BatchRecord
from offchain.chain.journal import Journal
from offchain.chain.mirror import AccountMirror
from offchain.chain.sender import FeePolicy, LocalTxSigner, TxSender
from offchain.errors import ConfigError, MarginsyncError
from offchain.feeds import (
    Accepted,
    Dropped,
    Refused,
    Sanitizer,
    SanitizerConfig,
    Tick,
    check_clock_skew,
)
from offchain.models import Deployment
from offchain.risk import Instruments, MarketConfig, Positions, RiskConfig, RiskEngine
from offchain.sync import policy
from offchain.sync.delivery import BatchAppliedLog, Delivery, Outcome
from offchain.sync.keys import EngineKeyError, Quorum, Signer, SignerUnavailable
from offchain.sync.metrics import EngineMetrics, event
from offchain.sync.outbox import Outbox, Row, State
from offchain.sync.policy import BoolArray, FloatArray, IntArray

CRASH_ENV = "MARGINSYNC_ENGINE_CRASH_AT"
# Never reuse the last few ring slots: a batch record is in force only while still in the ring.
_RING_MARGIN = 64
_PROBE_DIGEST = keccak(text="marginsync engine signer probe")
# Only on local chains may the engine top up its own dev submitter key.
_DEV_SUBMITTER_SEED = "marginsync dev engine submitter"
_EXPIRY_MARGIN_S = 5


class EngineHalted(MarginsyncError):
    """The engine stopped attesting (fail closed); the message says why."""


def crash_point(step: str) -> None:
    """TEST HOOK (D11): SIGKILL this process right after `step` when the env var names it."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


class EngineConfig(BaseModel):
    """How the engine selects, batches and guards. Validated at the CLI door."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    interval_s: float = Field(default=1.0, gt=0)
    threshold_bps: float = Field(default=500.0, ge=0)
    min_change_usd: float = Field(default=1.0, ge=0)
    refresh_window_s: float = Field(default=60.0, ge=0)
    near_health: float = Field(default=1.25, ge=1.0)
    max_batch_size: int = Field(default=500, ge=1, le=1_000)
    max_batches_per_pass: int = Field(default=4, ge=1)
    max_clock_skew_s: float = Field(default=120.0, gt=0)
    skew_check_interval_s: float = Field(default=30.0, gt=0)
    signer_timeout_s: float = Field(default=2.0, gt=0)
    signer_retry_s: float = Field(default=10.0, gt=0)
    once_timeout_s: float = Field(default=20.0, gt=0)
    receipt_timeout_s: float = Field(default=120.0, gt=0)


# ---------------------------------------------------------------------------- mirror
class EngineMirror(AccountMirror):
    """`AccountMirror` plus the verifier's state (`attestations`: applied entries, the ring of
    batch records, the key epoch and parameters), all from one `eth_getLogs` per sync."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        super().__init__(
            chain, deployment.clearinghouse, deployment.insurance_fund, deployment.block
        )
        self.verifier = str(deployment.attestation_verifier)
        self.attestations = AttestationMirror()
        self.state_version = 0  # bumped by any clearinghouse state event
        self.changed_attested: set[str] = set()
        self.verifier_version = 0  # bumped by key, threshold and parameter changes
        self._address_cache: dict[str, str] = {}
        topics = {
            name: "0x" + event_abi_to_log_topic(item).hex()  # type: ignore[arg-type]
            for contract in ("Clearinghouse", "AttestationVerifier")
            for item in chain.artifacts.abi(contract)
            if item["type"] == "event" and (name := item["name"])
        }
        hot = ("MarginAttested", "BatchApplied")
        self._batch_applied = BatchAppliedLog(chain.artifacts.abi("AttestationVerifier"))
        self._hot_topics = {topics[n]: n for n in hot}
        self._other_topics = sorted(t for n, t in topics.items() if n not in hot)

    def sync(self, to_block: int | None = None, batch: int = 5_000) -> int:
        """Applies every event up to `to_block` (default: latest), in chain order.

        The two events every batch emits per account and per batch (`MarginAttested`,
        `BatchApplied`) are read as raw JSON and decoded by hand: web3's log formatting and
        decoding cost ~1 ms per log, which at a thousand accounts per tick would dominate.
        Everything else goes through the ABI decoder as in `AccountMirror`."""
        head = self.chain.w3.eth.block_number if to_block is None else to_block
        applied = 0
        while self.next_block <= head:
            end = min(head, self.next_block + batch - 1)
            ordered: list[tuple[int, int, Event | dict[str, Any]]] = []
            params: Any = {
                "address": self.verifier,
                "fromBlock": hex(self.next_block),
                "toBlock": hex(end),
                "topics": [list(self._hot_topics)],
            }
            response = self.chain.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [params])
            if "error" in response:
                raise RuntimeError(f"eth_getLogs: {response['error']}")
            for log in response["result"]:
                ordered.append((int(log["blockNumber"], 16), int(log["logIndex"], 16), log))
            other = self.chain.w3.eth.get_logs(
                {
                    "address": [checksum(self.clearinghouse), checksum(self.verifier)],
                    "fromBlock": self.next_block,
                    "toBlock": end,
                    "topics": [self._other_topics],
                }
            )
            for e in self.chain.events(other):
                ordered.append((e.block, e.log_index, e))
            ordered.sort(key=lambda item: (item[0], item[1]))
            for _, _, item in ordered:
                if isinstance(item, Event):
                    self.apply(item)
                else:
                    self._apply_hot(item)
                applied += 1
            self.next_block = end + 1
        return applied

    def _apply_hot(self, log: dict[str, Any]) -> None:
        topics = log["topics"]
        if self._hot_topics[topics[0]] == "MarginAttested":
            data = bytes.fromhex(log["data"][2:])
            words = [int.from_bytes(data[i : i + 32], "big") for i in range(0, len(data), 32)]
            # MarginAttested(account idx, sequence idx, positionNonce, imMicroUsd, mmMicroUsd)
            account = self._checksummed(topics[1][-40:])
            entry = AppliedEntry(int(topics[2], 16), words[0], words[1], words[2])
            self.attestations.entries[account] = entry
            self.changed_attested.add(account)
        else:
            f = self._batch_applied.decode(log)
            mask = int(f["priceAssetMask"])
            assets = [a for a in range(32) if mask >> a & 1]
            prices = {a: int(p) for a, p in zip(assets, f["pricesE18"], strict=True)}
            self.attestations.record(
                BatchRecord(f["sequence"], int(f["issuedAt"]), int(f["keyEpoch"]), mask, prices)
            )

    def _checksummed(self, hex40: str) -> str:
        found = self._address_cache.get(hex40)
        if found is None:
            found = self._address_cache[hex40] = str(checksum("0x" + hex40))
        return found

    def apply(self, e: Event) -> None:
        if e.address.lower() != self.verifier.lower():
            before = len(self.accounts)
            super().apply(e)
            if e.name in _STATE_EVENTS or len(self.accounts) != before:
                self.state_version += 1
            return
        self.attestations.apply(e)
        if e.name in ("SignerAdded", "SignerRemoved", "ThresholdSet", "ParamsSet"):
            self.verifier_version += 1


_STATE_EVENTS = frozenset(
    {
        "Deposit",
        "Withdraw",
        "TradeSettled",
        "Liquidate",
        "CollateralSeized",
        "InsolvencyResolved",
        "CollateralConfigured",
        "MarketConfigured",
    }
)


# ---------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class Prices:
    """The sanitiser's view at one instant: accepted prices and refusals, per asset symbol."""

    accepted: dict[str, float]
    refused: dict[str, str]
    tick_at_s: float | None  # wall time the oldest unprocessed price change entered the engine


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


# ---------------------------------------------------------------------------- the engine
def default_risk_config(deployment: Deployment) -> RiskConfig:
    """Volatility margin on every underlying: low in calm markets, within a few ticks of a
    volatility jump far above static (the verifier clamps it to [50%, 500%] of static)."""
    return RiskConfig(
        markets=tuple(
            MarketConfig(underlying=a.symbol, model="volatility") for a in deployment.assets
        )
    )


def source_sanitizer_config(source: str, heartbeat_s: float = 3_600.0) -> SanitizerConfig:
    """Sanitiser thresholds per source kind.

    Independent feeds (sim, ws) need 3 agreeing sources and fresh prints. The on-chain oracle is
    one aggregated source that the contract itself trusts, and it prints only on deviation or
    heartbeat: one source suffices, its age limit is the heartbeat, and a jump is accepted at
    once, since the verifier binds every attestation to that same oracle price (band check).
    """
    if source == "chain":
        return SanitizerConfig(min_sources=1, max_age_s=heartbeat_s, jump_confirmations=1)
    return SanitizerConfig()


class Engine:
    """One engine process for one deployment: `start()`, then `once()` or `run()` (see the
    module docstring). `step()` and `run_pass()` are the synchronous pieces tests and the
    benchmark drive directly."""

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
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
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
        self._separator = self.domain.separator()
        self.outbox = Outbox(
            outbox_path, chain_id=chain.chain_id, verifier=deployment.attestation_verifier
        )
        journal = Journal(
            journal_path(outbox_path),
            chain_id=chain.chain_id,
            sender=str(submitter_key.address),
            genesis="0x" + bytes(chain.w3.eth.get_block(0)["hash"]).hex(),
        )
        sender = TxSender(
            chain.w3, LocalTxSigner(submitter_key), journal, chain_id=chain.chain_id, policy=fees
        )
        self.delivery = Delivery(
            chain, self.verifier, self.outbox, sender, on_sent=lambda _row: crash_point("sent")
        )
        self.sanitizer = Sanitizer(sanitizer_config or SanitizerConfig())
        self.risk_config = risk_config or default_risk_config(deployment)
        self.mirror = EngineMirror(chain, deployment)
        self._signers = list(signers)
        self.quorum: Quorum | None = None
        self.policy_config: policy.PolicyConfig | None = None
        self.symbols = [a.symbol for a in sorted(deployment.assets, key=lambda a: a.id)]
        self._sign_pool = concurrent.futures.ThreadPoolExecutor(1, "marginsync-signer")
        self.halts: dict[str, str] = {}
        self._last_skew_check = -math.inf
        self._last_signer_probe = -math.inf
        self.skew_s = 0.0
        self._started = False
        self._verifier_version = 0
        self._last_accepted: dict[str, float] = {}
        self._changed_since: float | None = None
        self._last_now_s = -math.inf
        # Appended by the submitter task, drained by the pass thread (deque ops are atomic).
        self._pending_outcomes: deque[Outcome] = deque()
        self._inflight: dict[int, Batch] = {}
        self._tick_at: dict[int, float] = {}
        self._book_version = -1
        self._risk: RiskEngine | None = None
        self._refused_logged: dict[str, str] = {}

    # ------------------------------------------------------------------ start
    def start(self) -> list[Outcome]:
        """Check keys, signer and clock; sync the mirror; finish what the outbox holds."""
        if self._started:
            return []
        self._load_verifier_config(raise_on_keys=True)
        self._check_digest()
        self._probe_signer(force=True)
        if "signer" in self.halts:
            raise SignerUnavailable(self.halts["signer"], "fix the signer before starting")
        self._check_clock(force=True)
        self._ensure_submitter_funds()
        self.mirror.sync()
        self._verifier_version = self.mirror.verifier_version
        self._started = True
        assert self.quorum is not None
        assert self.policy_config is not None
        event(
            "engine_started",
            chain=self.chain.chain_id,
            verifier=self.d.attestation_verifier,
            threshold=self.quorum.threshold,
            signers=len(self.quorum.signers),
            max_age_s=self.policy_config.max_age_s,
            band_bps=self.policy_config.band_bps,
            submitter=self.delivery.sender.address,
        )
        return self._recover()

    def _load_verifier_config(self, raise_on_keys: bool = False) -> None:
        """Threshold, registered keys and S1 parameters as the verifier has them now. Called at
        start and whenever the mirror sees a key, threshold or parameter change (B09): a key
        rotated out stops being used at once; fewer than k usable keys stops attesting."""
        threshold = int(self.verifier.functions.threshold().call())
        max_age, band, floor, cap, max_batch = self.verifier.functions.params().call()
        registered = [
            s.address for s in self._signers if self.verifier.functions.isSigner(s.address).call()
        ]
        try:
            self.quorum = Quorum.assemble(self._signers, registered, threshold)
        except EngineKeyError as exc:
            if raise_on_keys:
                raise
            self._halt("keys", str(exc))
        else:
            self._resume("keys")
        self.policy_config = policy.PolicyConfig(
            threshold_bps=self.config.threshold_bps,
            min_change_usd=self.config.min_change_usd,
            refresh_window_s=min(self.config.refresh_window_s, max_age / 2),
            near_health=self.config.near_health,
            max_accounts=min(self.config.max_batch_size, max_batch)
            * self.config.max_batches_per_pass,
            floor_bps=floor,
            cap_bps=cap,
            max_age_s=float(max_age),
            band_bps=float(band),
        )
        self._max_batch = min(self.config.max_batch_size, int(max_batch))

    def _digest(self, batch: Batch) -> bytes:
        return batch_digest(batch, self._separator)

    def _check_digest(self) -> None:
        """The hand-packed digest must equal attest.py's definition; refuse to run otherwise."""
        probe = Batch(
            sequence=2**63 + 5,
            issued_at=1_700_000_000,
            price_asset_mask=0b101,
            prices_e18=(3_000 * 10**18 + 1, 150 * 10**18),
            entries=(
                Entry("0x" + "ab" * 20, 7, 10**12, 5 * 10**11),
                Entry("0x" + "01" * 20, 0, 1, 0),
            ),
        )
        if self._digest(probe) != digest(probe, self.domain):
            raise MarginsyncError(
                "the engine's batch digest differs from offchain.attest.digest",
                "offchain/attest.py's typed data changed: update batch_digest in sync/engine.py",
            )

    def _ensure_submitter_funds(self) -> None:
        balance = int(self.chain.w3.eth.get_balance(checksum(self.delivery.sender.address)))
        if balance > 0:
            return
        if self.chain.chain_id in (31337, 1337):
            self.chain.w3.provider.make_request(
                RPCEndpoint("anvil_setBalance"), [self.delivery.sender.address, hex(10**21)]
            )
            return
        raise ConfigError(
            f"the submitter {self.delivery.sender.address} has no ETH for gas",
            "fund it, or set MARGINSYNC_PRIVATE_KEY to a funded key",
        )

    def _recover(self) -> list[Outcome]:
        """Finish the outbox after a restart: rows whose transaction the sender's journal holds
        follow it (its receipt, or the same raw bytes re-broadcast); `signed` rows are sent,
        `persisted` rows are signed (same payload, same digest) and sent. Rows too old to be
        accepted on-chain are marked expired and never sent."""
        rows = self.outbox.open_rows()
        outcomes, to_send = self.delivery.recover(rows)
        if not rows:
            return outcomes
        event("outbox_recover", rows=len(rows), sequences=",".join(str(r.sequence) for r in rows))
        for row in to_send:
            if self._expired(row.batch):
                self.outbox.mark_done(row.sequence, State.EXPIRED, "too old to send after restart")
                outcomes.append(Outcome(row.sequence, State.EXPIRED, detail="expired at restart"))
                continue
            if row.state == State.PERSISTED:
                if self._digest(row.batch) != row.digest:  # sign only what the row says it is
                    self.outbox.mark_done(row.sequence, State.FAILED, "payload/digest mismatch")
                    outcomes.append(Outcome(row.sequence, State.FAILED, detail="corrupt row"))
                    continue
                self.outbox.mark_signed(row.sequence, self._sign(row.digest))
            current = self.outbox.get(row.sequence)
            assert current is not None
            if (outcome := self.delivery.send(current)) is not None:
                outcomes.append(outcome)
        outcomes.extend(self.delivery.wait(self.config.receipt_timeout_s))
        for o in outcomes:
            self._record_outcome(o, None)
        self.progress(f"recovered {len(outcomes)} batch(es) from the outbox")
        return outcomes

    # ------------------------------------------------------------------ guards
    def _chain_time_s(self) -> float:
        """The time the next block will carry: the pending block's, falling back to latest."""
        try:
            return float(self.chain.w3.eth.get_block("pending")["timestamp"])
        except Exception:  # some nodes do not serve a pending block
            return float(self.chain.w3.eth.get_block("latest")["timestamp"])

    def _check_clock(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_skew_check < self.config.skew_check_interval_s:
            return
        self._last_skew_check = now
        skew = check_clock_skew(
            self.clock(), self._chain_time_s(), max_skew_s=self.config.max_clock_skew_s
        )
        self.skew_s = skew.skew_s
        self.metrics.clock_skew_s.set(skew.skew_s)
        if skew.ok:
            self._resume("clock")
        else:
            self._halt("clock", skew.describe())

    def _probe_signer(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_signer_probe < self.config.signer_retry_s:
            return
        self._last_signer_probe = now
        try:
            self._sign(_PROBE_DIGEST)
        except SignerUnavailable as exc:
            self._halt("signer", str(exc))
        else:
            self._resume("signer")

    def _halt(self, cause: str, reason: str) -> None:
        if self.halts.get(cause) != reason:
            if cause not in self.halts:
                self.metrics.halts.labels(cause).inc()
            self.halts[cause] = reason
            event("attesting_stopped", level=40, cause=cause, reason=reason)
            self.progress(f"NOT ATTESTING ({cause}): {reason}")
        self.metrics.attesting.set(0)

    def _resume(self, cause: str) -> None:
        if self.halts.pop(cause, None) is not None:
            event("attesting_resumed", cause=cause)
            self.progress(f"attesting again: {cause} is fine")
        self.metrics.attesting.set(0 if self.halts else 1)

    @property
    def halted(self) -> str | None:
        return "; ".join(f"{c}: {r}" for c, r in self.halts.items()) or None

    def _sign(self, message_digest: bytes) -> bytes:
        """k signatures within `signer_timeout_s`, or `SignerUnavailable` (D14)."""
        assert self.quorum is not None
        future = self._sign_pool.submit(self.quorum.sign, message_digest)
        try:
            return future.result(timeout=self.config.signer_timeout_s)
        except concurrent.futures.TimeoutError as exc:
            raise SignerUnavailable(
                f"the signer quorum did not answer within {self.config.signer_timeout_s:g} s",
                "check the signers; attesting stays stopped until they answer",
            ) from exc

    def _expired(self, batch: Batch) -> bool:
        assert self.policy_config is not None
        age = self._chain_now() - batch.issued_at
        return age > self.policy_config.max_age_s - _EXPIRY_MARGIN_S

    def _chain_now(self) -> float:
        return self.clock() - self.skew_s

    # ------------------------------------------------------------------ ticks
    def ingest(self, tick: Tick, entered_at_s: float | None = None) -> None:
        """One tick through the sanitiser; an accepted price change marks the engine dirty."""
        entered = time.time() if entered_at_s is None else entered_at_s
        verdict = self.sanitizer.update(tick, now_s=self.clock())
        if isinstance(verdict, Dropped):
            self.metrics.rejected_ticks.labels(str(verdict.reason)).inc()
            return
        if isinstance(verdict, Refused):
            self.metrics.rejected_ticks.labels(str(verdict.reason)).inc()
            return
        if self._last_accepted.get(verdict.symbol) != verdict.price_usd:
            self._last_accepted[verdict.symbol] = verdict.price_usd
            if self._changed_since is None:
                self._changed_since = entered

    def prices(self) -> Prices:
        """Every asset's price now (re-checked for staleness), and what is refused."""
        now = self.clock()
        accepted: dict[str, float] = {}
        refused: dict[str, str] = {}
        for sym in self.symbols:
            status = self.sanitizer.current(sym, now)
            if isinstance(status, Accepted):
                accepted[sym] = status.price_usd
            else:
                refused[sym] = f"{status.reason}: {status.detail}"
        tick_at, self._changed_since = self._changed_since, None
        return Prices(accepted, refused, tick_at)

    async def ingest_from(
        self,
        source: AsyncIterator[Tick],
        *,
        stop_when_accepted: bool = False,
        timeout_s: float | None = None,
    ) -> int:
        """Consume `source` until it ends or `timeout_s` passes; with `stop_when_accepted`
        (endless sources such as a websocket) stop as soon as every asset has a price."""
        count = 0
        deadline = time.monotonic() + (timeout_s or self.config.once_timeout_s)
        iterator = source.__aiter__()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                tick = await asyncio.wait_for(iterator.__anext__(), remaining)
            except (StopAsyncIteration, TimeoutError):
                break
            self.ingest(tick)
            count += 1
            if stop_when_accepted:
                now = self.clock()
                if all(isinstance(self.sanitizer.current(s, now), Accepted) for s in self.symbols):
                    break
        return count

    # ------------------------------------------------------------------ the pass
    def _rebuild_book(self) -> None:
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
        nonces = np.zeros(n, dtype=np.int64)
        rows, cols, vals = [], [], []
        for i, a in enumerate(accounts):
            st = m.accounts[a]
            cash[i] = st.cash_wad / 1e18
            nonces[i] = st.nonce
            for mid, size in st.positions.items():
                if size:
                    sizes[i, col[mid]] = size / 1e18
                    rows.append(i)
                    cols.append(col[mid])
                    vals.append(size / 1e18)
            for cid, amount in st.balances.items():
                if amount and cid in ccol:
                    balances[i, ccol[cid]] = amount / 10 ** m.collaterals[cid].decimals
        self.sizes, self.balances, self.cash, self.nonces = sizes, balances, cash, nonces
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
        fund = self.index.get(self.d.insurance_fund.lower())
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
        if self._risk is None or self._risk.instruments.ids != instruments.ids:
            self._risk = RiskEngine(self.risk_config, instruments, positions)
        else:
            self._risk = self._risk.with_positions(positions)
        # Each account's applied (or in-flight) entry; whether it is in force is asked of
        # `mirror.attestations.view` on every pass, since time and prices decide it.
        self.att_seq = np.zeros(n, dtype=np.uint64)
        self.att_nonce = np.full(n, -1, dtype=np.int64)
        self.att_im = np.zeros(n)
        self.att_mm = np.zeros(n)
        for a in m.attestations.entries:
            self._load_applied(a)
        for seq in sorted(self._inflight):
            self._apply_overlay(self._inflight[seq])
        self._book_version = m.state_version
        self.metrics.accounts.set(n)

    def _load_applied(self, account: str) -> None:
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

    def _sync(self) -> None:
        self.mirror.sync()
        if self.mirror.verifier_version != self._verifier_version:
            self._verifier_version = self.mirror.verifier_version
            self._load_verifier_config()
        finished: list[Batch] = []
        while self._pending_outcomes:
            batch = self._inflight.pop(self._pending_outcomes.popleft().sequence, None)
            if batch is not None:
                finished.append(batch)
        if self.mirror.state_version != self._book_version:
            self._rebuild_book()
        else:
            # Whatever became of a finished batch, the mirror now holds the chain's view.
            changed = {a.lower() for a in self.mirror.changed_attested}
            changed.update(e.account.lower() for b in finished for e in b.entries)
            for account in changed:
                self._load_applied(account)
        self.mirror.changed_attested.clear()

    def _apply_overlay(self, batch: Batch) -> None:
        """Treat `batch`'s accounts as attested while it is in flight (optimistic), so the next
        pass does not select them again; `_sync` reloads them from the mirror once it is done."""
        for e in batch.entries:
            i = self.index.get(e.account.lower())
            if i is None:
                continue
            self.att_seq[i] = batch.sequence
            self.att_nonce[i] = e.position_nonce
            self.att_im[i] = e.im_micro_usd / 1e6
            self.att_mm[i] = e.mm_micro_usd / 1e6

    def step(self, prices: Prices | None = None) -> StepReport:
        """One pass and its submission, waiting for receipts (the `--once` path and benches)."""
        report = self.run_pass(prices)
        for row in report.rows:
            if (outcome := self.delivery.send(row)) is not None:
                report.outcomes.append(outcome)
        report.outcomes.extend(self.delivery.wait(self.config.receipt_timeout_s))
        for o in report.outcomes:
            self._record_outcome(o, self._tick_at.get(o.sequence))
        return report

    def run_pass(self, prices: Prices | None = None) -> StepReport:
        """Sync, risk tick for all accounts, policy, then persist and sign the batches."""
        assert self.policy_config is not None, "call start() first"
        t0 = time.perf_counter()
        prices = prices or self.prices()
        report = StepReport(refused=dict(prices.refused))
        self._check_clock()
        if "signer" in self.halts:
            self._probe_signer()
        self._sync()
        report.accounts = len(self.accounts)
        missing = [s for s in self.symbols if s not in self._last_accepted]
        if missing or not self.accounts:
            if missing:
                report.refused.update({s: report.refused.get(s, "no price yet") for s in missing})
                report.blocked_accounts = int(self.has_positions.sum()) if self.accounts else 0
            report.halted = self.halted
            report.pass_s = time.perf_counter() - t0
            return report
        now_s = max(self.clock(), self._last_now_s)
        self._last_now_s = now_s
        px = np.array([prices.accepted.get(s, self._last_accepted[s]) for s in self.symbols])
        accepted = np.array([s in prices.accepted for s in self.symbols])
        for sym, reason in prices.refused.items():
            if self._refused_logged.get(sym) != reason:
                event("price_refused", level=30, symbol=sym, reason=reason)
        self._refused_logged = dict(prices.refused)
        assert self._risk is not None
        result = self._risk.tick(px, now_s, with_greeks=False)
        inputs = self._policy_inputs(px, accepted, result.im_usd, result.mm_usd)
        blocked = self.has_positions & (self.account_assets & ~accepted).any(axis=1)
        report.blocked_accounts = int(blocked.sum())
        selection = policy.select(inputs, self.policy_config)
        report.selected, report.deferred = len(selection), selection.deferred
        codes, counts = np.unique(selection.reasons, return_counts=True)
        report.reasons = {
            policy.describe(int(c)): int(n) for c, n in zip(codes, counts, strict=True)
        }
        report.halted = self.halted
        self.metrics.pass_s.observe(time.perf_counter() - t0)
        if len(selection) == 0 or report.halted:
            report.pass_s = time.perf_counter() - t0
            return report
        tick_at = prices.tick_at_s
        for start in range(0, len(selection), self._max_batch):
            chunk = selection.indices[start : start + self._max_batch]
            try:
                row = self._make_batch(chunk, result.im_usd, result.mm_usd, px, tick_at)
            except SignerUnavailable as exc:
                self._halt("signer", str(exc))
                report.halted = self.halted
                break
            report.rows.append(row)
        report.pass_s = time.perf_counter() - t0
        return report

    def _policy_inputs(
        self, px: FloatArray, accepted: BoolArray, fresh_im: FloatArray, fresh_mm: FloatArray
    ) -> policy.PolicyInputs:
        market_px = px[self.market_asset]
        abs_notional = np.abs(self.sizes) * market_px
        static_im = abs_notional @ self.im_rate
        static_mm = abs_notional @ self.mm_rate
        equity = self.cash + self.sizes @ market_px
        if self.balances.shape[1]:
            equity = equity + self.balances @ (px[self.coll_asset] * self.coll_weight)
        attestations = self.mirror.attestations
        view = attestations.view(
            self.att_seq,
            self.att_nonce,
            self.nonces,
            self.asset_mask,
            {a: _usd_to_e18(float(p)) for a, p in enumerate(px)},
            math.floor(self._chain_now()),
            pending=[_record_of(b, attestations.key_epoch) for b in self._inflight.values()],
        )
        # Treated as lapsed a little before a newer batch takes its ring slot (policy, not S1).
        newest = np.maximum(np.uint64(attestations.max_sequence), self.att_seq)
        live = view.in_force & (newest - self.att_seq < RING_SIZE - _RING_MARGIN)
        blocked = (self.account_assets & ~accepted).any(axis=1)
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
            eligible=self.has_positions & ~blocked,
        )

    def _make_batch(
        self,
        chunk: IntArray,
        im_usd: FloatArray,
        mm_usd: FloatArray,
        px: FloatArray,
        tick_at: float | None,
    ) -> Row:
        """persist → sign for one batch: sequence allocated and payload stored first (D11)."""
        mask = int(np.bitwise_or.reduce(self.asset_mask[chunk])) if len(chunk) else 0
        assets = [a for a in range(len(self.symbols)) if mask >> a & 1]
        entries = []
        for i in chunk.tolist():
            mm = _micro_usd_up(float(mm_usd[i]))
            im = max(_micro_usd_up(float(im_usd[i])), mm)  # the verifier rejects MM above IM
            # Lowercase: the ABI encoding is the same, and no checksum is computed per entry.
            entries.append(Entry(self.accounts_lower[i], int(self.nonce_list[i]), im, mm))
        sequence = self.outbox.allocate_sequence(floor=self.mirror.attestations.max_sequence + 1)
        batch = Batch(
            sequence=sequence,
            issued_at=math.floor(self._chain_now()),
            price_asset_mask=mask,
            prices_e18=tuple(_usd_to_e18(float(px[a])) for a in assets),
            entries=tuple(entries),
        )
        message_digest = self._digest(batch)
        self.outbox.persist(batch, message_digest, tick_at)
        crash_point("persisted")
        try:
            signatures = self._sign(message_digest)
        except SignerUnavailable as exc:
            # Never signed, so it can never reach the chain: close it rather than sign it late.
            self.outbox.mark_done(sequence, State.FAILED, f"signer unavailable: {exc.cause}")
            raise
        self.outbox.mark_signed(sequence, signatures)
        crash_point("signed")
        self._inflight[sequence] = batch
        self._apply_overlay(batch)
        if tick_at is not None:
            self._tick_at[sequence] = tick_at
        self.metrics.queue_depth.set(self.outbox.depth())
        row = self.outbox.get(sequence)
        assert row is not None
        return row

    def _record_outcome(self, o: Outcome, tick_at: float | None) -> None:
        self._pending_outcomes.append(o)
        self._tick_at.pop(o.sequence, None)
        self.metrics.batches.labels(str(o.state)).inc()
        if o.state == State.CONFIRMED:
            self.metrics.batch_gas.observe(o.gas_used)
            self.metrics.batch_size.observe(o.applied + o.skipped)
            self.metrics.attestations.labels("applied").inc(o.applied)
            self.metrics.attestations.labels("skipped").inc(o.skipped)
            if tick_at is not None:
                self.metrics.tick_to_chain_s.observe(max(o.done_at - tick_at, 0.0))
        elif o.state == State.SKIPPED:
            self.metrics.attestations.labels("already_applied").inc()
        self.metrics.queue_depth.set(self.outbox.depth())
        event(
            "batch_done",
            level=20 if o.state in (State.CONFIRMED, State.SKIPPED) else 30,
            sequence=o.sequence,
            state=str(o.state),
            applied=o.applied,
            skipped=o.skipped,
            gas=o.gas_used,
            tx=o.tx_hash or "-",
            detail=o.detail or "-",
            latency_ms=(o.done_at - tick_at) * 1e3 if tick_at is not None else "-",
        )

    # ------------------------------------------------------------------ entry points
    async def once(
        self, source: AsyncIterator[Tick], *, stop_when_accepted: bool = False
    ) -> StepReport:
        """One tick and exit: start, take prices until every asset is accepted (or the source
        ends or times out), one pass, wait for receipts. Raises `EngineHalted` when it could not
        attest what it should have (no signer, clock skew, refused prices for open positions)."""
        await asyncio.to_thread(self.start)
        await self.ingest_from(source, stop_when_accepted=stop_when_accepted)
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
        (refresh windows, clock and signer re-checks); a submitter task sends and confirms."""
        stop = stop or asyncio.Event()
        await asyncio.to_thread(self.start)
        wake = asyncio.Event()
        queue: asyncio.Queue[Row] = asyncio.Queue()

        async def consume() -> None:
            async for tick in source:
                self.ingest(tick)
                if self._changed_since is not None:
                    wake.set()
                if stop.is_set():
                    return

        consumer = asyncio.create_task(consume())
        submitter = asyncio.create_task(self._submit_loop(queue, stop))
        loop = asyncio.get_running_loop()
        try:  # a service manager's SIGTERM stops it like Ctrl-C: in-flight work stays in the outbox
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            handler = True
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            handler = False
        passes = 0
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.config.interval_s)
                wake.clear()
                if consumer.done() and consumer.exception() is not None:
                    raise consumer.exception()  # type: ignore[misc]
                if submitter.done() and submitter.exception() is not None:
                    raise submitter.exception()  # type: ignore[misc]
                report = await asyncio.to_thread(self.run_pass, self.prices())
                passes += 1
                for row in report.rows:
                    queue.put_nowait(row)
                if report.rows or report.halted or passes % 60 == 1:
                    self.progress(f"pass {passes}: {report.summary()}")
        finally:
            if handler:
                loop.remove_signal_handler(signal.SIGTERM)
            consumer.cancel()
            submitter.cancel()
            await asyncio.gather(consumer, submitter, return_exceptions=True)

    async def _submit_loop(self, queue: asyncio.Queue[Row], stop: asyncio.Event) -> None:
        delay = 0.002
        while not stop.is_set():
            rows: list[Row] = []
            if not self.delivery.in_flight:
                rows.append(await queue.get())
            while not queue.empty():
                rows.append(queue.get_nowait())
            for row in rows:
                try:
                    result = await asyncio.to_thread(self.delivery.send, row)
                except MarginsyncError:
                    raise
                except Exception as exc:  # RPC down after retries: the row resumes later
                    event(
                        "broadcast_failed",
                        level=40,
                        sequence=row.sequence,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    continue
                if result is not None:
                    self._record_outcome(result, self._tick_at.get(result.sequence))
            if rows:
                delay = 0.002
            if self.delivery.in_flight:
                for o in await asyncio.to_thread(self.delivery.poll):
                    self._record_outcome(o, self._tick_at.get(o.sequence))
                    if o.state == State.CONFIRMED:
                        self.progress(
                            f"batch #{o.sequence}: {o.applied} applied, {o.skipped} skipped, "
                            f"gas {o.gas_used:,}, block {o.block}"
                        )
                if self.delivery.in_flight:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)

    def close(self) -> None:
        self._sign_pool.shutdown(wait=False, cancel_futures=True)
        self.outbox.close()
        self.delivery.sender.journal.close()


# ---------------------------------------------------------------------------- helpers
def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def batch_digest(batch: Batch, separator: bytes) -> bytes:
    """`attest.digest` for a domain separator computed once."""
    return keccak(b"\x19\x01" + separator + batch.struct_hash())


def _micro_usd_up(usd: float) -> int:
    if not math.isfinite(usd) or usd <= 0:
        return 0
    return min(math.ceil(usd * 1e6), UINT64_MAX)


def _usd_to_e18(usd: float) -> int:
    return int(Decimal(repr(usd)) * 10**18)


def _record_of(batch: Batch, key_epoch: int) -> BatchRecord:
    """The ring record `batch` will leave on-chain once applied under `key_epoch`."""
    assets = [a for a in range(32) if batch.price_asset_mask >> a & 1]
    prices = dict(zip(assets, batch.prices_e18, strict=True))
    return BatchRecord(batch.sequence, batch.issued_at, key_epoch, batch.price_asset_mask, prices)


def journal_path(outbox_path: Path) -> Path:
    """The sender's journal beside the outbox: `outbox.sqlite` → `outbox-journal.sqlite`."""
    return outbox_path.with_name(f"{outbox_path.stem}-journal{outbox_path.suffix}")


def dev_submitter_key() -> LocalAccount:
    """A LOCAL-ONLY transaction key for the engine (derived from a public string, like the dev
    engine keys); `start()` funds it on Anvil."""
    key: LocalAccount = Account.from_key(keccak(text=_DEV_SUBMITTER_SEED))
    return key


# ---------------------------------------------------------------------------- sources
SourceKind = Literal["sim", "ws", "chain"]


async def _paced(ticks: Iterable[Tick], clock: Callable[[], float]) -> AsyncIterator[Tick]:
    for tick in ticks:
        delay = tick.ts_s - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        yield tick


async def sim_source(
    start_usd: dict[str, float],
    *,
    interval_s: float,
    steps: int | None,
    seed: int = 0,
    sources: int = 5,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Tick]:
    """A seeded GBM market printed by `sources` slightly noisy independent sources, one step
    every `interval_s` in real time (`steps` None: forever, generated a chunk at a time)."""
    from offchain.feeds import Fault, SourceSpec, gbm, scenario_ticks

    specs = [SourceSpec(name=f"sim{j}", fault=Fault.NOISY, noise_bps=2.0) for j in range(sources)]
    prices = dict(start_usd)
    done, chunk = 0, 0
    t0 = clock()
    while steps is None or done < steps:
        n = 256 if steps is None else min(256, steps - done)
        scenario = gbm(
            prices,
            max(n - 1, 1),
            interval_s=interval_s,
            start_ts_s=t0 + done * interval_s,
            seed=seed + chunk,
        )
        ticks = [
            t
            for t in scenario_ticks(scenario, specs, seed=seed + chunk)
            if t.ts_s < t0 + (done + n) * interval_s
        ]
        async for tick in _paced(ticks, clock):
            yield tick
        prices = {s: float(scenario.prices_usd[s][-1]) for s in scenario.symbols}
        done += n
        chunk += 1


def build_source(
    kind: SourceKind,
    chain: Chain,
    deployment: Deployment,
    *,
    interval_s: float,
    ws_url: str | None,
    once: bool,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Tick]:
    """The CLI's `--source`: `chain` polls the deployed (mock) Chainlink aggregators, `sim` a
    seeded simulator starting at the oracle prices, `ws` a websocket of JSON ticks."""
    from offchain.feeds import ChainlinkPoller, WebsocketSource

    if kind == "chain":
        feeds = {a.symbol: a.feed for a in deployment.assets}
        poller: Any = ChainlinkPoller(
            chain.w3, feeds, interval_s=interval_s, max_polls=1 if once else None
        )
        return poller.__aiter__()  # type: ignore[no-any-return]
    if kind == "ws":
        if not ws_url:
            raise ConfigError("--source ws needs --ws-url", "give ws://host:port of a tick feed")
        return WebsocketSource(ws_url).__aiter__()
    router = chain.contract("OracleRouter", deployment.oracle_router)
    start = {
        a.symbol: int(router.functions.priceE18(a.id).call()) / 1e18 for a in deployment.assets
    }
    return sim_source(start, interval_s=interval_s, steps=1 if once else None, clock=clock)


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
    progress: Callable[[str], None] = lambda _line: None,
) -> Engine:
    """An engine as `marginsync engine` configures it (keys, submitter, sanitiser, outbox)."""
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
    elif dev_keys and chain.chain_id in (31337, 1337):
        sender = dev_submitter_key()
    else:
        raise ConfigError(
            "no key to send attestation transactions with",
            "set MARGINSYNC_PRIVATE_KEY to a funded key (or pass --dev-keys on a local chain)",
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
        Path(".marginsync")
        / f"outbox-{chain.chain_id}-{deployment.attestation_verifier.lower()[2:10]}.sqlite"
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
        progress=progress,
    )
