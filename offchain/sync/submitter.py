"""Submits signed batches to the AttestationVerifier: own nonces, EIP-1559 fees, safe retries.

The path of one batch (an outbox row in state `signed`):

1. Pre-flight (`estimate_gas` of `submit`): a batch the chain already holds reverts
   `NothingApplied` and is recorded as `skipped` with nothing sent (D12); an expired one as
   `expired`; any other revert as `failed`, with the decoded custom error.
2. Build an EIP-1559 transaction (maxPriorityFeePerGas from the node, maxFeePerGas = 2 × base fee
   + priority), sign it with the submitter key, record the raw bytes in the outbox, then
   broadcast (write-ahead: a crash after this point re-broadcasts the same bytes, never a new
   transaction with a new nonce; D09/D11).
3. Transport failures (5xx, timeouts, a dropped response after a successful send) re-send the
   same raw transaction only (D05); "already known" and "nonce too low" are not errors, the
   receipt decides.
4. `poll` reads receipts of every transaction sent for the batch (a fee bump replaces the
   transaction at the same nonce with the same calldata, so exactly one of them can be mined) and
   reads `BatchApplied` from the receipt. A transaction without a receipt after `stuck_after_s`
   is re-priced by at least `bump_percent` (D03).

Blocking web3 calls; the engine runs them in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    Web3RPCError,
)
from web3.types import RPCEndpoint

from offchain.attest import Batch
from offchain.chain import Chain, checksum
from offchain.sync.metrics import event
from offchain.sync.outbox import Outbox, Row, State, TxRecord

GWEI = 10**9
_REVERTS = (ContractCustomError, ContractLogicError, ContractPanicError)


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def encode_submit(selector: bytes, batch: Batch, signatures: bytes) -> bytes:
    """Calldata of `AttestationVerifier.submit(MarginBatch batch, bytes signatures)`, ABI-encoded
    by hand: web3's normalisers and even eth_abi's validation cost ~0.1 ms per entry, most of a
    tick's latency at a thousand accounts. Layout: two head offsets, then the batch tuple (three
    static words, offsets of `pricesE18` and `entries` relative to the tuple, then the two
    arrays; an entry is four static words), then the length-prefixed, zero-padded signatures.
    `tests/test_engine_crash.py` holds it equal to eth_abi's encoding."""
    prices = _word(len(batch.prices_e18)) + b"".join(_word(p) for p in batch.prices_e18)
    entries = _word(len(batch.entries)) + b"".join(
        bytes(12) + bytes.fromhex(e.account[2:]) + _word(e.position_nonce)
        + _word(e.im_micro_usd) + _word(e.mm_micro_usd)
        for e in batch.entries
    )  # fmt: skip
    head = _word(batch.sequence) + _word(batch.issued_at) + _word(batch.price_asset_mask)
    tuple_ = head + _word(5 * 32) + _word(5 * 32 + len(prices)) + prices + entries
    padded = signatures + bytes(-len(signatures) % 32)
    return selector + _word(64) + _word(64 + len(tuple_)) + tuple_ + _word(len(signatures)) + padded


class BatchAppliedLog:
    """Decodes `BatchApplied` logs as raw JSON (one per batch, so eth_abi's speed is fine);
    field names and types come from the compiled ABI, so the event may grow fields."""

    def __init__(self, verifier_abi: Sequence[Any]) -> None:
        item = next(i for i in verifier_abi if i.get("type") == "event"
                    and i.get("name") == "BatchApplied")  # fmt: skip
        self.topic = "0x" + event_abi_to_log_topic(item).hex()  # type: ignore[arg-type]
        data = [i for i in item["inputs"] if not i["indexed"]]
        self._names = [str(i["name"]) for i in data]
        self._types = [str(i["type"]) for i in data]

    def decode(self, log: dict[str, Any]) -> dict[str, Any]:
        """Fields by name, plus `sequence` and `digest` from the topics."""
        values = abi_decode(self._types, bytes.fromhex(log["data"][2:]))
        fields = dict(zip(self._names, values, strict=True))
        fields["sequence"] = int(log["topics"][1], 16)
        fields["digest"] = bytes.fromhex(log["topics"][2][2:])
        return fields


@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 pricing. `default_priority_fee_wei` is used when the node cannot suggest one."""

    base_fee_multiplier: int = 2
    default_priority_fee_wei: int = 1 * GWEI
    max_fee_cap_wei: int = 500 * GWEI
    bump_percent: int = 13  # nodes require ≥ 10% on both fields to accept a replacement
    stuck_after_s: float = 12.0
    fee_cache_s: float = 1.0


@dataclass(frozen=True)
class Outcome:
    """What became of one batch."""

    sequence: int
    state: State
    tx_hash: str | None = None
    block: int | None = None
    gas_used: int = 0
    applied: int = 0
    skipped: int = 0
    detail: str = ""
    done_at: float = field(default_factory=time.time)


@dataclass
class InFlight:
    """A broadcast batch awaiting its receipt."""

    row: Row
    nonce: int
    hashes: list[str]
    max_fee_wei: int
    priority_fee_wei: int
    gas: int
    last_sent_s: float


class Submitter:
    def __init__(
        self,
        chain: Chain,
        verifier: Contract,
        outbox: Outbox,
        sender: LocalAccount,
        *,
        fees: FeePolicy | None = None,
        on_broadcast: Callable[[Row], None] = lambda _row: None,
        send_attempts: int = 5,
    ) -> None:
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.verifier = verifier
        self.outbox = outbox
        self.sender = sender
        self.address = str(sender.address)
        self.fees = fees or FeePolicy()
        self.on_broadcast = on_broadcast
        self.send_attempts = send_attempts
        self._next_nonce: int | None = None
        self._fee_cache: tuple[float, int, int] | None = None
        abi: dict[str, Any] = {
            str(i.get("name")): i for i in verifier.abi if i.get("type") in ("function", "event")
        }
        self._selector = function_abi_to_4byte_selector(abi["submit"])
        self._batch_applied = BatchAppliedLog(verifier.abi)
        self._calldata: dict[int, bytes] = {}
        self._access_list_ok = True

    # ------------------------------------------------------------------ nonces and fees
    def sync_nonce(self) -> int:
        """Next nonce from the node's pending count (our recorded transactions re-broadcast
        first, so theirs are counted)."""
        self._next_nonce = int(self.w3.eth.get_transaction_count(checksum(self.address), "pending"))
        return self._next_nonce

    def _take_nonce(self) -> int:
        if self._next_nonce is None:
            self.sync_nonce()
        assert self._next_nonce is not None
        nonce = self._next_nonce
        self._next_nonce += 1
        return nonce

    def current_fees(self) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) from the latest base fee."""
        now = time.monotonic()
        if self._fee_cache and now - self._fee_cache[0] < self.fees.fee_cache_s:
            return self._fee_cache[1], self._fee_cache[2]
        block = self.w3.eth.get_block("latest")
        base = int(block.get("baseFeePerGas", 0) or 0)
        try:
            priority = int(self.w3.eth.max_priority_fee)
        except (Web3RPCError, ValueError):
            priority = self.fees.default_priority_fee_wei
        max_fee = min(base * self.fees.base_fee_multiplier + priority, self.fees.max_fee_cap_wei)
        max_fee = max(max_fee, priority)
        self._fee_cache = (now, max_fee, priority)
        return max_fee, priority

    # ------------------------------------------------------------------ the path of a batch
    def calldata(self, row: Row) -> bytes:
        assert row.signatures is not None
        data = self._calldata.get(row.sequence)
        if data is None:
            data = self._calldata[row.sequence] = encode_submit(
                self._selector, row.batch, row.signatures
            )
        return data

    def preflight(self, row: Row) -> int | Outcome:
        """Gas to use, or the outcome when the batch must not be sent.

        One simulation against the pending block (whose timestamp is the earliest the
        transaction can see): `eth_createAccessList` executes once and reports the gas used,
        where `eth_estimateGas` binary-searches (20x slower for a 500-entry batch on Anvil).
        The access list itself is not used. Nodes without the method fall back to estimateGas.
        """
        tx = {
            "from": self.address,
            "to": self.verifier.address,
            "data": "0x" + self.calldata(row).hex(),
        }
        gas_or_error = self._simulate(tx)
        if isinstance(gas_or_error, int):
            return gas_or_error * 12 // 10 + 10_000
        name, args = gas_or_error
        if name == "NothingApplied":
            return self._finish(row, State.SKIPPED, "already applied on-chain (NothingApplied)")
        if name == "AttestationExpired":
            return self._finish(row, State.EXPIRED, f"{name} {args}")
        return self._finish(row, State.FAILED, f"pre-flight reverts {name} {args}")

    def _simulate(self, tx: dict[str, str]) -> int | tuple[str, dict[str, Any]]:
        """Gas used by `tx` at the pending block, or the decoded revert (name, args)."""
        if self._access_list_ok:
            response = self._rpc("eth_createAccessList", [tx, "pending"])
            error = response.get("error")
            result = response.get("result") or {}
            if error is not None and error.get("code") == -32601:  # method not found
                self._access_list_ok = False
            elif error is not None:
                return self._revert_of(error)
            elif result.get("error"):  # geth reports a revert inside the result, without data
                return self._revert_of(self._rpc("eth_call", [tx, "pending"]).get("error") or {})
            else:
                return int(result["gasUsed"], 16)
        try:
            return int(self.w3.eth.estimate_gas(tx, "pending"))  # type: ignore[arg-type]
        except _REVERTS as exc:
            return self._decode(exc)

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        return dict(self.w3.provider.make_request(RPCEndpoint(method), params))

    def _revert_of(self, error: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            return self.chain.artifacts.decode_error(bytes.fromhex(data[2:]))
        return "Error", {"message": str(error.get("message", error))}

    def broadcast(self, row: Row) -> InFlight | Outcome:
        """Pre-flight, sign, record, send one `signed` row."""
        gas = self.preflight(row)
        if isinstance(gas, Outcome):
            return gas
        max_fee, priority = self.current_fees()
        flight = InFlight(row, self._take_nonce(), [], max_fee, priority, gas, 0.0)
        try:
            self._send_new(flight)
        except _NonceConsumed:
            # Someone else used our nonce (a second process with this key): take a fresh one.
            self.sync_nonce()
            flight.nonce = self._take_nonce()
            self._send_new(flight)
        return flight

    def resume(self, row: Row) -> InFlight | Outcome:
        """A `sent` row after a restart: its receipt if mined, else the same raw bytes again."""
        records = self.outbox.txs(row.sequence)
        if not records:  # crashed between the state change and the write; cannot happen today
            return self.broadcast(row)
        found = self._receipt([r.tx_hash for r in records])
        if found is not None:
            return self._from_receipt(row, *found)
        latest = records[-1]
        flight = InFlight(
            row,
            latest.nonce,
            [r.tx_hash for r in records],
            latest.max_fee_wei,
            latest.priority_fee_wei,
            0,
            time.monotonic(),
        )
        try:
            self._send_raw(latest.raw_tx)
        except _NonceConsumed:
            found = self._receipt(flight.hashes)
            if found is not None:
                return self._from_receipt(row, *found)
            # The nonce went to another transaction: the same payload may go out again under a
            # new nonce, since the verifier applies a sequence at most once.
            self.sync_nonce()
            return self.broadcast(row)
        event("batch_rebroadcast", sequence=row.sequence, nonce=latest.nonce, tx=latest.tx_hash)
        return flight

    def poll(self, flights: list[InFlight]) -> list[Outcome]:
        """Outcomes of the flights whose receipts are in; stuck ones are re-priced."""
        done: list[Outcome] = []
        now = time.monotonic()
        for flight in flights:
            found = self._receipt(flight.hashes)
            if found is not None:
                done.append(self._from_receipt(flight.row, *found))
            elif now - flight.last_sent_s > self.fees.stuck_after_s:
                self._bump(flight)
        return done

    def wait(self, flights: list[InFlight], timeout_s: float = 120.0) -> list[Outcome]:
        """Poll until every flight has an outcome (fast at first: Anvil mines at once)."""
        pending = list(flights)
        outcomes: list[Outcome] = []
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while pending:
            finished = self.poll(pending)
            outcomes.extend(finished)
            seqs = {o.sequence for o in finished}
            pending = [f for f in pending if f.row.sequence not in seqs]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no receipt for batches {[f.row.sequence for f in pending]} "
                    f"after {timeout_s:.0f} s; they stay in the outbox and resume on restart"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        return outcomes

    # ------------------------------------------------------------------ internals
    def _sign_tx(self, flight: InFlight) -> TxRecord:
        data = self.calldata(flight.row)
        tx: Any = {
            "type": 2,
            "chainId": self.chain.chain_id,
            "nonce": flight.nonce,
            "to": self.verifier.address,
            "value": 0,
            "data": data,
            "gas": flight.gas,
            "maxFeePerGas": flight.max_fee_wei,
            "maxPriorityFeePerGas": flight.priority_fee_wei,
        }
        signed = self.sender.sign_transaction(tx)
        return TxRecord(
            nonce=flight.nonce,
            tx_hash="0x" + bytes(signed.hash).hex(),
            raw_tx=bytes(signed.raw_transaction),
            max_fee_wei=flight.max_fee_wei,
            priority_fee_wei=flight.priority_fee_wei,
            sent_at_s=time.time(),
        )

    def _send_new(self, flight: InFlight) -> None:
        record = self._sign_tx(flight)
        self.outbox.record_tx(flight.row.sequence, self.address, record)
        flight.hashes.append(record.tx_hash)
        flight.last_sent_s = time.monotonic()
        self._send_raw(record.raw_tx)
        event(
            "batch_sent",
            sequence=flight.row.sequence,
            nonce=flight.nonce,
            tx=record.tx_hash,
            entries=len(flight.row.batch.entries),
            gas=flight.gas,
            max_fee_gwei=flight.max_fee_wei / GWEI,
        )
        self.on_broadcast(flight.row)

    def _bump(self, flight: InFlight) -> None:
        """Replace a stuck transaction: same nonce, same calldata, higher fees (D03)."""
        max_fee, priority = self.current_fees()
        pct = 100 + self.fees.bump_percent
        flight.priority_fee_wei = max(priority, flight.priority_fee_wei * pct // 100 + 1)
        flight.max_fee_wei = max(
            max_fee, flight.max_fee_wei * pct // 100 + 1, flight.priority_fee_wei
        )
        try:
            self._send_new(flight)
        except _NonceConsumed:
            pass  # the original was mined meanwhile; the next poll reads its receipt
        except _Underpriced:
            flight.last_sent_s = time.monotonic()
        event(
            "batch_fee_bump",
            sequence=flight.row.sequence,
            nonce=flight.nonce,
            max_fee_gwei=flight.max_fee_wei / GWEI,
        )

    def _send_raw(self, raw: bytes) -> None:
        """Broadcast `raw`, re-sending the same bytes on transport failures (D05)."""
        delay = 0.05
        for attempt in range(self.send_attempts):
            try:
                self.w3.eth.send_raw_transaction(raw)
                return
            except (Web3RPCError, ValueError) as exc:
                text = str(exc).lower()
                if (
                    "already known" in text
                    or "known transaction" in text
                    or "already imported" in text
                ):
                    return
                if "nonce too low" in text or "nonce has already been used" in text:
                    raise _NonceConsumed(str(exc)) from exc
                if "underpriced" in text:
                    raise _Underpriced(str(exc)) from exc
                raise
            except Exception as exc:  # transport: connection reset, timeout, HTTP 5xx
                if attempt + 1 == self.send_attempts:
                    raise
                event("rpc_retry", attempt=attempt + 1, error=type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _receipt(self, hashes: list[str]) -> tuple[str, dict[str, Any]] | None:
        """The receipt of whichever of `hashes` was mined, as raw JSON: web3's formatting of
        a hundred logs (checksummed addresses, bytes) would cost more than the round trip."""
        for tx_hash in reversed(hashes):
            response = self.w3.provider.make_request(
                RPCEndpoint("eth_getTransactionReceipt"), [tx_hash]
            )
            if "error" in response:
                raise Web3RPCError(f"eth_getTransactionReceipt: {response['error']}")
            receipt = response.get("result")
            if receipt:
                return tx_hash, receipt
        return None

    def _from_receipt(self, row: Row, tx_hash: str, receipt: dict[str, Any]) -> Outcome:
        gas_used = int(receipt["gasUsed"], 16)
        block = int(receipt["blockNumber"], 16)
        self._calldata.pop(row.sequence, None)
        if int(receipt["status"], 16) != 1:
            return self._finish(
                row,
                State.FAILED,
                f"reverted when mined in block {block}",
                tx_hash=tx_hash,
                gas_used=gas_used,
                block=block,
            )
        for log in receipt["logs"]:
            if log["topics"] and log["topics"][0] == self._batch_applied.topic:
                fields = self._batch_applied.decode(log)
                applied, skipped = int(fields["applied"]), int(fields["skipped"])
                break
        else:
            return self._finish(
                row,
                State.FAILED,
                "mined without BatchApplied",
                tx_hash=tx_hash,
                gas_used=gas_used,
                block=block,
            )
        self.outbox.mark_confirmed(row.sequence, tx_hash, block, gas_used, applied, skipped)
        return Outcome(row.sequence, State.CONFIRMED, tx_hash, block, gas_used, applied, skipped)

    def _finish(self, row: Row, state: State, detail: str, **kw: Any) -> Outcome:
        self._calldata.pop(row.sequence, None)
        self.outbox.mark_done(row.sequence, state, detail)
        return Outcome(row.sequence, state, detail=detail, **kw)

    def _decode(self, exc: Exception) -> tuple[str, dict[str, Any]]:
        data = getattr(exc, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return self.chain.artifacts.decode_error(bytes.fromhex(data[2:]))
        return type(exc).__name__, {"message": str(exc)}


class _NonceConsumed(Exception):
    """The node says the nonce is used (our transaction mined, or another one)."""


class _Underpriced(Exception):
    """A replacement did not out-bid the transaction in the pool."""
