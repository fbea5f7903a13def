"""The engine's prove mode (`marginsync engine --prove`): proofs of what it attests, on a side path.

With the proof gate on (SPEC I34) an attested MM above the static one counts only as far as a
proof backs it. After each pass the engine hands this worker the accounts its new attestations
would make liquidatable while statically healthy (`policy.needs_proof`): nobody else needs a
proof. The hand-over is a queue put, so the attestation fast path never waits for a proof. The
worker has its own thread, its own queue, its own node prover process and its own transaction
key (one `TxSender` per key: two threads must never share a nonce counter). Per account it skips
what the registry already holds in force for the current book and prices, proves at the oracle's
prices (`offchain.prove.onchain.prove_accounts`) and records the proof with `MarginProofs.submit`.

Proof lag: from the pass that asked to the proof's receipt. It is measured (`landed`, the
`proof_landed` event and the `marginsync_proof_lag_seconds` histogram) and stated in README:
one account proof takes ≈ 1–2 s here, so the lag is about that plus a block, per account in the
queue ahead. Until a proof lands the clearinghouse uses the static MM for that account, so the
lag delays a liquidation; it never lets one through that the model does not support.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from offchain.chain import Chain
from offchain.chain.bindings import TRANSPORT_ERRORS
from offchain.chain.journal import Journal, TxState
from offchain.chain.sender import TxSender
from offchain.chain.signers import LocalTxSigner
from offchain.errors import ConfigError, MarginsyncError
from offchain.models import Deployment
from offchain.prove.layout import ACCOUNT
from offchain.prove.onchain import (
    prove_accounts,
    proven_in_force,
    registered_model,
    submit_calldata,
)
from offchain.prove.prover import Prover
from offchain.sync.delivery import ensure_gas
from offchain.sync.metrics import EngineMetrics, event

_DEV_PROVER_SEED = "marginsync dev engine prover"
_GAS_MARGIN = 12  # tenths: the estimate plus 20 %
# What one account's proof may fail with, without stopping the others.
_ONE_ACCOUNT_ERRORS: tuple[type[Exception], ...] = (MarginsyncError, *TRANSPORT_ERRORS)


def dev_prover_key() -> LocalAccount:
    """A LOCAL-ONLY transaction key for the prover (derived from a public string, like the dev
    submitter key); `start()` funds it on Anvil."""
    key: LocalAccount = Account.from_key(keccak(text=_DEV_PROVER_SEED))
    return key


@dataclass(frozen=True)
class ProofLanded:
    """One proof recorded on-chain for `account`, `lag_s` after the pass that asked for it."""

    account: str
    lag_s: float
    gas_used: int
    mm_micro_usd: int


class ProofWorker:
    """`start()`, then `request()` from the pass; `drain()` waits for the queue (the `--once`
    path and tests); `close()` stops the thread and the node prover."""

    def __init__(
        self,
        chain: Chain,
        deployment: Deployment,
        *,
        key: LocalAccount,
        journal_path: Path,
        metrics: EngineMetrics,
        receipt_timeout_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        progress: Callable[[str], None] = lambda _line: None,
    ) -> None:
        if deployment.margin_proofs is None:
            raise ConfigError(
                "this deployment has no proof registry (MarginProofs)",
                "run `marginsync prove ACCOUNT` once (it deploys one and turns the gate on)",
            )
        self.chain = chain
        self.d = deployment
        self.registry = deployment.margin_proofs
        self.model = registered_model(chain, deployment)
        self.metrics = metrics
        self.receipt_timeout_s = receipt_timeout_s
        self.clock = clock
        self.progress = progress
        journal = Journal(
            journal_path,
            chain_id=chain.chain_id,
            sender=str(key.address),
            genesis=chain.genesis_hash,
        )
        self.sender = TxSender(chain.w3, LocalTxSigner(key), journal, chain_id=chain.chain_id)
        self.landed: list[ProofLanded] = []
        self._queue: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._wanted: set[str] = set()  # queued or being proven: asked for once at a time
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        ensure_gas(self.chain, self.sender.address, "MARGINSYNC_PROVER_KEY")
        self.sender.resume()
        self._thread = threading.Thread(target=self._serve, name="marginsync-prover", daemon=True)
        self._thread.start()

    def request(self, accounts: Iterable[str]) -> None:
        """Queues the accounts not already waiting; returns at once (the fast path calls it)."""
        now = self.clock()
        with self._lock:
            for account in accounts:
                if account.lower() not in self._wanted:
                    self._wanted.add(account.lower())
                    self._queue.put((account, now))

    def drain(self, timeout_s: float) -> bool:
        """Waits until every requested account is proven (or given up); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._wanted:
                    return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        self.sender.journal.close()

    # ------------------------------------------------------------------ the side path
    def _serve(self) -> None:
        with Prover() as prover:
            while (item := self._queue.get()) is not None:
                account, asked_at = item
                try:
                    self._prove(prover, account, asked_at)
                except _ONE_ACCOUNT_ERRORS as exc:
                    # One account's failure (a book outside the circuit's ranges, a node
                    # hiccup) never stops the others; the next pass that needs it asks again.
                    event("proof_failed", level=logging.WARNING, account=account, reason=str(exc))
                finally:
                    with self._lock:
                        self._wanted.discard(account.lower())

    def _prove(self, prover: Prover, account: str, asked_at: float) -> None:
        if proven_in_force(self.chain, self.d, account):
            return
        submission = prove_accounts(self.chain, self.d, self.model, prover, ACCOUNT, [account])
        data = submit_calldata(self.chain, self.registry, submission)
        gas = self.chain.w3.eth.estimate_gas(
            {"from": self.sender.address, "to": self.registry, "data": data}  # type: ignore[typeddict-item]
        )
        pending = self.sender.send(
            self.registry, data, gas * _GAS_MARGIN // 10, purpose=f"prove:{account}"
        )
        outcome = next(
            (o for o in self.sender.wait(self.receipt_timeout_s) if o.nonce == pending.nonce),
            None,
        )
        if outcome is None or outcome.state != TxState.MINED:
            detail = (
                "no receipt in time" if outcome is None else f"{outcome.state} {outcome.detail}"
            )
            event("proof_failed", level=logging.WARNING, account=account, reason=detail)
            return
        lag = self.clock() - asked_at
        mm = submission.statements[0].mm_micro_usd
        self.landed.append(ProofLanded(account, lag, outcome.gas_used, mm))
        self.metrics.proof_lag_s.observe(lag)
        event("proof_landed", account=account, lag_s=round(lag, 3), gas=outcome.gas_used)
        self.progress(f"proof for {account}: MM {mm / 1e6:,.2f} USD, landed {lag:.2f} s after")
