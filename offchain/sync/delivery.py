"""Signed batches to the AttestationVerifier through the one transaction sender.

The outbox keeps each batch's state (persisted → signed → sent → confirmed | skipped | failed |
expired); `offchain.chain.sender.TxSender` keeps the transactions: nonces, EIP-1559 fees and
bumps (D03), the write-ahead journal (D09/D11), same-bytes retries (D05), restart recovery. One
batch is one sender purpose, `batch:<sequence>`. The path of one `signed` row:

1. Pre-flight: one simulation of `submit` at the pending block. A batch the chain already holds
   reverts `NothingApplied` and is recorded as `skipped` with nothing sent (D12); an expired one
   as `expired`; any other revert as `failed`, with the decoded custom error.
2. `TxSender.send` journals the signed transaction, then broadcasts it; the outbox then records
   `sent` and the hash. A crash in between leaves a journaled transaction and a `signed` row:
   recovery finds the transaction by its purpose and never sends the batch twice.
3. `poll` turns the sender's outcomes into the rows' states: mined → `confirmed` with
   `BatchApplied`'s counts; reverted, dropped, cancelled or refused → `failed` (the policy then
   selects the accounts again); reorged → `sent` again, awaiting the same transaction.

Blocking calls; the engine runs them in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.types import RPCEndpoint

from offchain.attest import Batch
from offchain.chain import Chain, checksum
from offchain.chain import journal as tx
from offchain.chain.bindings import TRANSPORT_ERRORS
from offchain.chain.sender import TxSender
from offchain.errors import ConfigError, MarginsyncError, SendRejected
from offchain.sync.keys import LOCAL_CHAIN_IDS
from offchain.sync.metrics import event
from offchain.sync.outbox import Outbox, Row, State

GWEI = 10**9
PURPOSE = "batch:"
_REVERTS = (ContractCustomError, ContractLogicError, ContractPanicError)


def _word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def encode_submit(selector: bytes, batch: Batch, signatures: bytes) -> bytes:
    """Calldata of `AttestationVerifier.submit(MarginBatch batch, bytes signatures)`, ABI-encoded
    by hand: web3's normalisers and even eth_abi's validation cost ~0.1 ms per entry, most of a
    tick's latency at a thousand accounts. Layout: two head offsets, then the batch tuple (three
    static words, offsets of `pricesE18` and `entries` relative to the tuple, then the price
    array and the length-prefixed, zero-padded packed entries), then the length-prefixed,
    zero-padded signatures. `tests/test_engine_crash.py` holds it equal to eth_abi's encoding."""
    prices = _word(len(batch.prices_e18)) + b"".join(_word(p) for p in batch.prices_e18)
    packed = batch.packed_entries
    entries = _word(len(packed)) + packed + bytes(-len(packed) % 32)
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


def ensure_gas(chain: Chain, address: str, key_setting: str) -> None:
    """A key of the engine's must hold ETH for gas; on a local chain the engine tops it up."""
    if int(chain.w3.eth.get_balance(checksum(address))) > 0:
        return
    if chain.chain_id in LOCAL_CHAIN_IDS:
        chain.w3.provider.make_request(RPCEndpoint("anvil_setBalance"), [address, hex(10**21)])
        return
    raise ConfigError(
        f"the engine's transaction key {address} has no ETH for gas",
        f"fund it, or set {key_setting} to a funded key",
    )


class Delivery:
    """The engine's side of the sender: rows in, outcomes out."""

    def __init__(
        self,
        chain: Chain,
        verifier: Contract,
        outbox: Outbox,
        sender: TxSender,
        *,
        on_sent: Callable[[Row], None] = lambda _row: None,
    ) -> None:
        self.chain = chain
        self.verifier = verifier
        self.outbox = outbox
        self.sender = sender
        self.on_sent = on_sent
        abi: dict[str, Any] = {
            str(i.get("name")): i for i in verifier.abi if i.get("type") in ("function", "event")
        }
        self._selector = function_abi_to_4byte_selector(abi["submit"])
        self._batch_applied = BatchAppliedLog(verifier.abi)
        self._calldata: dict[int, bytes] = {}
        self._rows: dict[int, Row] = {}  # sent, awaiting an outcome, by sequence
        self._access_list_ok = True

    @property
    def in_flight(self) -> int:
        return len(self._rows)

    def ensure_funds(self) -> None:
        """The sender key must hold ETH for gas; on a local chain the engine tops it up."""
        ensure_gas(self.chain, self.sender.address, "MARGINSYNC_PRIVATE_KEY")

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
        call = {
            "from": self.sender.address,
            "to": self.verifier.address,
            "data": "0x" + self.calldata(row).hex(),
        }
        gas_or_error = self._simulate(call)
        if isinstance(gas_or_error, int):
            return gas_or_error * 12 // 10 + 10_000
        name, args = gas_or_error
        if name == "NothingApplied":
            return self._finish(row, State.SKIPPED, "already applied on-chain (NothingApplied)")
        if name == "AttestationExpired":
            return self._finish(row, State.EXPIRED, f"{name} {args}")
        return self._finish(row, State.FAILED, f"pre-flight reverts {name} {args}")

    def send(self, row: Row) -> Outcome | None:
        """Pre-flight, then journal and broadcast one `signed` row. None: it is in flight."""
        gas = self.preflight(row)
        if isinstance(gas, Outcome):
            return gas
        try:
            p = self.sender.send(
                self.verifier.address, self.calldata(row), gas, purpose=_purpose(row.sequence)
            )
        except SendRejected as exc:
            return self._finish(row, State.FAILED, f"refused by the node: {exc}")
        self.outbox.mark_sent(row.sequence, p.tx_hash)
        self._rows[row.sequence] = row
        event(
            "batch_sent",
            sequence=row.sequence,
            nonce=p.nonce,
            tx=p.tx_hash,
            entries=len(row.batch.entries),
            gas=gas,
            max_fee_gwei=p.max_fee_wei / GWEI,
        )
        self.on_sent(row)
        return None

    def poll(self) -> list[Outcome]:
        """Outcomes of the batches whose transactions have one; stuck ones are re-priced."""
        return self._outcomes(self.sender.poll())

    def wait(self, timeout_s: float = 120.0) -> list[Outcome]:
        """Polls until every batch in flight has an outcome (fast at first: Anvil mines at
        once), or raises `TimeoutError`; what is unfinished stays in the outbox and journal."""
        outcomes = self._outcomes(self.sender.wait(timeout_s))
        if self._rows:
            raise TimeoutError(
                f"no receipt for batches {sorted(self._rows)} after {timeout_s:.0f} s; they "
                "stay in the outbox and resume on restart"
            )
        return outcomes

    async def serve(
        self,
        queue: asyncio.Queue[Row],
        stop: asyncio.Event,
        done: Callable[[Outcome], None],
        progress: Callable[[str], None],
    ) -> None:
        """The service's delivery task: sends the rows the passes queue, polls what is in
        flight (backing off while nothing changes) and reports every outcome to `done`."""
        delay = 0.002
        while not stop.is_set():
            rows: list[Row] = []
            if not self.in_flight:
                rows.append(await queue.get())
            while not queue.empty():
                rows.append(queue.get_nowait())
            for row in rows:
                try:
                    result = await asyncio.to_thread(self.send, row)
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
                    done(result)
            if rows:
                delay = 0.002
            if self.in_flight:
                try:
                    outcomes = await asyncio.to_thread(self.poll)
                except TRANSPORT_ERRORS:
                    # The node is away: what is in flight stays journaled; poll again later
                    # (the pass loop reports the outage and decides when to give up).
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                for o in outcomes:
                    done(o)
                    if o.state == State.CONFIRMED:
                        progress(
                            f"batch #{o.sequence}: {o.applied} applied, {o.skipped} skipped, "
                            f"gas {o.gas_used:,}, block {o.block}"
                        )
                if self.in_flight:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.25)

    # ------------------------------------------------------------------ after a restart
    def recover(self, rows: Sequence[Row]) -> tuple[list[Outcome], list[Row]]:
        """The journal first: transactions a previous process sent are settled from their
        receipts or re-broadcast byte for byte (`TxSender.resume`), and their rows follow them.
        Returns those outcomes and the open rows that have no transaction yet."""
        outcomes = self._outcomes(self.sender.resume())
        settled = {o.sequence for o in outcomes}
        flying = self.sender.purposes()
        to_send: list[Row] = []
        for row in rows:
            purpose = _purpose(row.sequence)
            if row.sequence in settled:
                continue
            if purpose in flying:
                self._rows[row.sequence] = row
                continue
            mined = [r for r in self.sender.journal.rows(purpose) if r.mined_hash]
            receipt = self._receipt(mined[-1].mined_hash) if mined else None
            if mined and receipt is not None:
                outcomes.append(self._from_receipt(row, str(mined[-1].mined_hash), receipt))
            else:
                to_send.append(row)
        return outcomes, to_send

    # ------------------------------------------------------------------ internals
    def _outcomes(self, done: Sequence[tx.Outcome]) -> list[Outcome]:
        out: list[Outcome] = []
        for o in done:
            if not o.purpose.startswith(PURPOSE):
                continue
            sequence = int(o.purpose[len(PURPOSE) :])
            row = self._rows.pop(sequence, None) or self.outbox.get(sequence)
            if row is None:
                continue
            if o.state is tx.TxState.REORGED:
                # Its block left the chain: the sender re-sends the same bytes; the row waits
                # for that transaction again (or is superseded by a newer batch).
                self.outbox.reopen(sequence, f"block {o.block} left the chain")
                self._rows[sequence] = row
                event("batch_reorged", level=30, sequence=sequence, block=o.block)
            elif o.state is tx.TxState.MINED and o.receipt is not None:
                out.append(self._from_receipt(row, str(o.tx_hash), o.receipt))
            elif o.state is tx.TxState.REVERTED:
                out.append(
                    self._finish(
                        row,
                        State.FAILED,
                        f"reverted when mined in block {o.block}",
                        tx_hash=o.tx_hash,
                        gas_used=o.gas_used,
                        block=o.block,
                    )
                )
            else:
                out.append(self._finish(row, State.FAILED, f"transaction {o.state}: {o.detail}"))
        return out

    def _from_receipt(self, row: Row, tx_hash: str, receipt: dict[str, Any]) -> Outcome:
        gas_used = int(receipt["gasUsed"], 16)
        block = int(receipt["blockNumber"], 16)
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
        self._calldata.pop(row.sequence, None)
        self.outbox.mark_confirmed(row.sequence, tx_hash, block, gas_used, applied, skipped)
        return Outcome(row.sequence, State.CONFIRMED, tx_hash, block, gas_used, applied, skipped)

    def _finish(self, row: Row, state: State, detail: str, **kw: Any) -> Outcome:
        self._calldata.pop(row.sequence, None)
        self.outbox.mark_done(row.sequence, state, detail)
        return Outcome(row.sequence, state, detail=detail, **kw)

    def _simulate(self, call: dict[str, str]) -> int | tuple[str, dict[str, Any]]:
        """Gas used by `call` at the pending block, or the decoded revert (name, args)."""
        if self._access_list_ok:
            response = self._rpc("eth_createAccessList", [call, "pending"])
            error = response.get("error")
            result = response.get("result") or {}
            if error is not None and error.get("code") == -32601:  # method not found
                self._access_list_ok = False
            elif error is not None:
                return self._revert_of(error)
            elif result.get("error"):  # geth reports a revert inside the result, without data
                return self._revert_of(self._rpc("eth_call", [call, "pending"]).get("error") or {})
            else:
                return int(result["gasUsed"], 16)
        try:
            return int(self.chain.w3.eth.estimate_gas(call, "pending"))  # type: ignore[arg-type]
        except _REVERTS as exc:
            data = getattr(exc, "data", None)
            if isinstance(data, str) and data.startswith("0x"):
                return self.chain.artifacts.decode_error(bytes.fromhex(data[2:]))
            return type(exc).__name__, {"message": str(exc)}

    def _receipt(self, tx_hash: str | None) -> dict[str, Any] | None:
        found = self._rpc("eth_getTransactionReceipt", [tx_hash]).get("result")
        return dict(found) if found else None

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        return dict(self.chain.w3.provider.make_request(RPCEndpoint(method), params))

    def _revert_of(self, error: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            return self.chain.artifacts.decode_error(bytes.fromhex(data[2:]))
        return "Error", {"message": str(error.get("message", error))}


def _purpose(sequence: int) -> str:
    return f"{PURPOSE}{sequence}"
