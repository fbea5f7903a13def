"""Transactions of one key, sent so that a crash, a flaky RPC or a fee spike never doubles one.

The one transaction sender: generic over calldata (to, data, gas), the keeper sends its
liquidations with it and the engine its attestation batches (`offchain.sync.delivery`). The path
of one transaction:

1. `send` takes the next nonce (from the node's pending count once, then counted locally), prices
   it (EIP-1559: maxPriorityFeePerGas from the node, maxFeePerGas = k × next base fee + priority,
   never above the transaction's own cap), signs it, and commits nonce, raw bytes, hash and
   purpose to the journal BEFORE broadcasting (write-ahead). A process killed at any point after
   that re-broadcasts the same bytes on restart (`resume`), so a restart can never send the same
   purpose again under a new nonce (THREATS D09).
2. Transport failures (connection reset, timeout, HTTP 5xx, a response lost after the node took
   the transaction) re-send the same raw bytes, nothing else (D05). "Already known" is success;
   "nonce too low" means a receipt will decide.
3. `poll` reads receipts. A transaction with no receipt after `stuck_after_blocks` blocks or
   `stuck_after_s` seconds is replaced at the SAME nonce with both fee fields raised by at least
   `bump_bps` (12.5 % by default; nodes need 10 %) and never above its cap (D03); when the cap
   forbids that, a 21,000-gas transfer to ourselves takes the nonce instead, within the same
   budget. While one is stuck, `congested` tells the caller not to queue new nonces behind it.
4. A transaction the node refuses for good (insufficient funds) frees its nonce: the next one
   takes it, so a refusal never leaves a gap that stalls every later transaction.
5. Reorganisations: every poll checks the blocks of transactions settled in the last
   `REORG_DEPTH` blocks against the canonical chain (one header when nothing moved). A
   transaction whose block left the chain is reported `reorged`, journaled pending again and
   re-broadcast with its same bytes at its same nonce; when the node's nonce count falls behind
   ours with nothing of ours in flight to fill the gap, the next nonce is re-read from the node.

The journal (`journal.py`) is SQLite (WAL, synchronous=FULL): one file per key and chain, bound to
the chain's genesis hash so a restarted local chain never receives a dead chain's transactions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import requests
from eth_utils import keccak
from web3 import Web3
from web3.types import RPCEndpoint

from offchain.chain.bindings import checksum
from offchain.chain.journal import Journal, Outcome, Pending, TxState
from offchain.chain.signers import TxSigner
from offchain.errors import ConfigError, SendRejected

log = logging.getLogger("marginsync.sender")

GWEI = 10**9
BPS = 10_000
CANCEL_GAS = 21_000  # a zero-value transfer to ourselves: the cheapest way to use up a nonce
# Blocks a nonce must stay used with no receipt of ours before it counts as taken by another
# transaction (see `TxSender._nonce_lost`).
NONCE_LOST_AFTER_BLOCKS = 2
# How far back settled transactions are re-checked against the canonical chain.
REORG_DEPTH = 64


@dataclass(frozen=True)
class _Landed:
    """A settled transaction with a receipt, and the block that holds it."""

    p: Pending
    block: int
    block_hash: str


class _Landings:
    """What the sender settled in the last `REORG_DEPTH` blocks, to re-check against the chain."""

    def __init__(self) -> None:
        self._landed: list[_Landed] = []

    def add(self, p: Pending, outcome: Outcome) -> None:
        if outcome.receipt is not None and outcome.block is not None:
            self._landed.append(_Landed(p, outcome.block, str(outcome.receipt["blockHash"])))

    def left_the_chain(self, head: int, block_hash: Callable[[int], str | None]) -> list[_Landed]:
        """Those whose block is no longer canonical, by nonce. One header suffices when the
        newest landed block still stands, since every block before it then does too."""
        self._landed = [x for x in self._landed if head - x.block <= REORG_DEPTH]
        if not self._landed:
            return []
        newest = max(self._landed, key=lambda x: x.block)
        hashes = {newest.block: block_hash(newest.block)}
        if hashes[newest.block] == newest.block_hash:
            return []
        gone: list[_Landed] = []
        for x in sorted(self._landed, key=lambda x: x.p.nonce):
            if x.block not in hashes:
                hashes[x.block] = block_hash(x.block)
            if hashes[x.block] != x.block_hash:
                gone.append(x)
        self._landed = [x for x in self._landed if x not in gone]
        return gone


@dataclass(frozen=True)
class FeePolicy:
    """EIP-1559 pricing and replacement. A transaction's own cap (`send(fee_cap_wei=...)`) can
    only lower `max_fee_cap_wei`."""

    base_fee_multiplier: int = 2
    default_priority_fee_wei: int = 1 * GWEI
    max_fee_cap_wei: int = 500 * GWEI
    bump_bps: int = 1_250
    stuck_after_blocks: int = 3
    stuck_after_s: float = 36.0
    send_attempts: int = 5
    retry_delay_s: float = 0.05

    def __post_init__(self) -> None:
        if self.bump_bps < 1_000:
            raise ConfigError(
                f"fee bump of {self.bump_bps} bps is below the 10 % nodes require to replace",
                "use at least 1000 bps (default 1250)",
            )


@dataclass(frozen=True)
class Fees:
    """What the next block asks: its base fee, and the tip the node suggests."""

    base_fee_wei: int
    priority_fee_wei: int

    @property
    def inclusion_wei(self) -> int:
        """The least maxFeePerGas that can be included in the next block."""
        return self.base_fee_wei + self.priority_fee_wei


# ---------------------------------------------------------------------------- the sender
class _Delivery(StrEnum):
    ACCEPTED = "accepted"  # in the node's pool (or already there)
    NONCE_USED = "nonce used"  # mined already (ours, perhaps) or taken by another transaction
    UNDERPRICED = "underpriced"  # below the base fee, or not enough to replace
    UNDELIVERED = "undelivered"  # transport failures on every attempt
    REJECTED = "rejected"  # refused for a reason retrying cannot fix


_KNOWN = ("already known", "already imported", "known transaction")
_NONCE_USED = ("nonce too low", "nonce has already been used", "nonce is too low")
_UNDERPRICED = ("underpriced", "less than block base fee", "fee too low", "fee cap less than")


class TxSender:
    """Nonces, fees, journal, replacement and retries for one key. Not thread-safe: one owner
    (a keeper's loop) calls it."""

    def __init__(
        self,
        w3: Web3,
        signer: TxSigner,
        journal: Journal,
        *,
        chain_id: int,
        policy: FeePolicy | None = None,
    ) -> None:
        self.w3 = w3
        self.signer = signer
        self.address = str(checksum(signer.address))
        self.journal = journal
        self.chain_id = chain_id
        self.policy = policy or FeePolicy()
        self._next_nonce: int | None = None
        self._in_flight: dict[int, Pending] = {}  # by journal id
        self._carry: list[Outcome] = []  # settled outside `poll` (resume, refusals), reported by it
        self._landings = _Landings()

    # ------------------------------------------------------------------ state
    @property
    def in_flight(self) -> list[Pending]:
        return sorted(self._in_flight.values(), key=lambda p: p.nonce)

    def purposes(self) -> set[str]:
        return {p.purpose for p in self._in_flight.values()}

    @property
    def congested(self) -> bool:
        """A transaction of ours is stuck, or was and is not mined yet: anything new would only
        queue behind it, so callers wait rather than open new nonces (D03)."""
        if not self._in_flight:
            return False
        if self._next_nonce is not None and self._next_nonce < min(self._in_flight_nonces()):
            return False  # a refused nonce left a gap below them: only a new send fills it
        head = self._block_number()
        return any(len(p.hashes) > 1 or self._stuck(p, head) for p in self._in_flight.values())

    def _in_flight_nonces(self) -> list[int]:
        return [p.nonce for p in self._in_flight.values()]

    # ------------------------------------------------------------------ restart
    def resume(self) -> list[Outcome]:
        """Settles what a previous process journaled: a row whose transaction was mined is
        finished from its receipt; one whose nonce went elsewhere is dropped; every other row is
        re-broadcast with its SAME raw bytes and stays in flight. Rows that landed in the last
        `REORG_DEPTH` blocks are re-checked: one whose receipt is gone is pending again
        (`reorged`). Returns the settled ones."""
        done: list[Outcome] = []
        # The count first: a nonce below it with none of our receipts went to someone else.
        mined_count = self._nonce_count("latest")
        head = self._block_number()
        for p, block, tx_hash in self.journal.landed_since(head - REORG_DEPTH):
            receipt = self._rpc("eth_getTransactionReceipt", [tx_hash]).get("result")
            if receipt:
                at = int(receipt["blockNumber"], 16)
                self._landings.add(
                    p, Outcome(p.purpose, p.nonce, TxState.MINED, tx_hash, at, 0, 0, receipt)
                )
            else:
                self.journal.reopen(p.id)
                done.append(Outcome(p.purpose, p.nonce, TxState.REORGED, tx_hash, block))
        for p in self.journal.pending():
            p.sent_block, p.sent_at_s = head, time.monotonic()  # the stuck timers restart
            outcome = self._settle(p, mined_count, head)
            if outcome is not None:
                done.append(outcome)
                continue
            self._in_flight[p.id] = p
            self._deliver(p)
            log.info("resumed %s at nonce %d (%s)", p.purpose, p.nonce, p.tx_hash)
        pending_count = self._nonce_count("pending")
        top = max((p.nonce + 1 for p in self._in_flight.values()), default=0)
        self._next_nonce = max(pending_count, top)
        return done

    # ------------------------------------------------------------------ fees
    def fees(self) -> Fees:
        """The next block's base fee and the node's tip. The pending block's base fee is what
        the node admits transactions against; `eth_feeHistory`'s last entry (the same number on
        a consistent node) stands in where the pending block has none."""
        pending = self._rpc("eth_getBlockByNumber", ["pending", False]).get("result") or {}
        if pending.get("baseFeePerGas"):
            base = int(pending["baseFeePerGas"], 16)
        else:
            history = self._rpc("eth_feeHistory", [1, "latest", []]).get("result") or {}
            base = int((history.get("baseFeePerGas") or ["0x0"])[-1], 16)
        tip = self._rpc("eth_maxPriorityFeePerGas", [])
        priority = (
            int(tip["result"], 16) if "result" in tip else self.policy.default_priority_fee_wei
        )
        return Fees(base, priority)

    def price(self, fees: Fees, fee_cap_wei: int) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) for a new transaction under `fee_cap_wei`."""
        cap = min(fee_cap_wei, self.policy.max_fee_cap_wei)
        max_fee = min(
            fees.base_fee_wei * self.policy.base_fee_multiplier + fees.priority_fee_wei, cap
        )
        return max_fee, min(fees.priority_fee_wei, max_fee)

    # ------------------------------------------------------------------ sending
    def send(
        self,
        to: str,
        data: bytes,
        gas: int,
        *,
        purpose: str,
        fee_cap_wei: int | None = None,
        value: int = 0,
        fees: Fees | None = None,
    ) -> Pending:
        """Journals, then broadcasts, a new transaction. Raises `SendRejected` if the node
        refuses it for good; transport failures leave it in flight, to be re-sent by `poll`."""
        if self._next_nonce is None:
            self._carry += self.resume()
        fees = fees or self.fees()
        cap = min(fee_cap_wei or self.policy.max_fee_cap_wei, self.policy.max_fee_cap_wei)
        max_fee, priority = self.price(fees, cap)
        p = self._sign(
            Pending(
                id=0,
                nonce=self._take_nonce(),
                purpose=purpose,
                to=str(checksum(to)),
                data=data,
                value=value,
                gas=gas,
                fee_cap_wei=cap,
                max_fee_wei=max_fee,
                priority_fee_wei=priority,
                raw=b"",
                hashes=[],
                sent_block=None,
                sent_at_s=time.monotonic(),
            )
        )
        p.id = self.journal.record(p)
        self._in_flight[p.id] = p
        delivery = self._deliver(p)
        if delivery is _Delivery.REJECTED:
            raise SendRejected(f"the node refused {purpose} at nonce {p.nonce}")
        if delivery is _Delivery.NONCE_USED:
            # Mined already (the node took it before a lost response) or taken by another
            # process with this key. Never sent again under a new nonce from here: a receipt,
            # or a lasting lack of one, decides in `poll`. Later sends count from the node.
            self._next_nonce = self._nonce_count("pending")
        return p

    def poll(self) -> list[Outcome]:
        """Outcomes of in-flight transactions whose receipts are in; stuck ones are replaced."""
        done: list[Outcome] = []
        try:
            head = self._block_number()
            reorged = self._reorged(head)
            done += reorged
            in_flight = self.in_flight
            mined_count = self._nonce_count("latest") if in_flight else 0
            for p in in_flight:
                outcome = self._settle(p, mined_count, head)
                if outcome is not None:
                    done.append(outcome)
                elif self._stuck(p, head):
                    self._bump(p, head)
                elif not p.delivered:
                    self._deliver(p)
            if reorged or any(o.state is TxState.DROPPED for o in done):
                self._catch_up_nonce()
        except requests.RequestException as exc:
            # The node is unreachable: what is journaled stays in flight for the next poll.
            log.warning("poll interrupted by %s: %s", type(exc).__name__, exc)
        # Settled elsewhere (a refusal, an implicit resume) since the last poll, then these.
        done, self._carry = self._carry + done, []
        return done

    def wait(self, timeout_s: float) -> list[Outcome]:
        """Polls until nothing is in flight or `timeout_s` passes (fast at first: local chains
        mine at once)."""
        done = self.poll()
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while self._in_flight and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
            done += self.poll()
        return done

    # ------------------------------------------------------------------ internals
    def _take_nonce(self) -> int:
        if self._next_nonce is None:
            self._next_nonce = self._nonce_count("pending")
        held = set(self._in_flight_nonces())
        while self._next_nonce in held:  # filling a gap below transactions still in flight
            self._next_nonce += 1
        nonce = self._next_nonce
        self._next_nonce += 1
        return nonce

    def _reorged(self, head: int) -> list[Outcome]:
        """Transactions whose block left the chain: pending again, re-broadcast byte for byte
        (a later poll settles them anew)."""
        out: list[Outcome] = []
        for x in self._landings.left_the_chain(head, self._block_hash):
            p = replace(x.p, sent_block=None, sent_at_s=time.monotonic(), nonce_used_at=None)
            self.journal.reopen(p.id)
            self._in_flight[p.id] = p
            log.warning("%s at nonce %d: block %d left the chain", p.purpose, p.nonce, x.block)
            out.append(Outcome(p.purpose, p.nonce, TxState.REORGED, p.tx_hash, x.block))
            self._deliver(p)
        return out

    def _catch_up_nonce(self) -> None:
        """After a reorganisation or a lost nonce the node may count fewer transactions than we
        have numbered: a nonce below everything in flight is free again, and the next send
        takes it rather than queue behind a gap forever."""
        pending = self._nonce_count("pending")
        floor = min(self._in_flight_nonces(), default=None)
        behind = self._next_nonce is not None and pending < self._next_nonce
        if behind and (floor is None or pending < floor):
            self._next_nonce = pending

    def _sign(self, p: Pending) -> Pending:
        to, value, data, gas = (
            (self.address, 0, b"", CANCEL_GAS) if p.cancelled else (p.to, p.value, p.data, p.gas)
        )
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": p.nonce,
            "to": to,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": p.max_fee_wei,
            "maxPriorityFeePerGas": p.priority_fee_wei,
        }
        raw = self.signer.sign(tx)
        return replace(p, raw=raw, hashes=[*p.hashes, "0x" + keccak(raw).hex()], delivered=False)

    def _stuck(self, p: Pending, head: int) -> bool:
        """No receipt for `stuck_after_blocks` blocks since a poll first missed it, or for
        `stuck_after_s` seconds since it was sent. Blocks count from the first miss, not from
        the send: a round that sends many transactions may see as many blocks go by."""
        if p.sent_block is None:
            p.sent_block = head
        return (
            head - p.sent_block >= self.policy.stuck_after_blocks
            or time.monotonic() - p.sent_at_s >= self.policy.stuck_after_s
        )

    def _bump(self, p: Pending, head: int) -> None:
        """Replace `p` at its nonce: both fee fields up by at least `bump_bps`, and at least
        what the next block needs (D03). A transaction may cost at most gas × its fee cap; when
        the bump would break that, it is cancelled instead: a no-op transfer to ourselves at
        the same nonce (21,000 gas, so a far higher fee fits the same budget), which keeps
        later nonces from queueing behind a transaction that no longer pays."""
        fees = self.fees()
        p.sent_block, p.sent_at_s = head, time.monotonic()
        if (
            p.delivered
            and p.max_fee_wei >= fees.inclusion_wei
            and p.priority_fee_wei >= fees.priority_fee_wei
        ):
            # It offers what the next block asks: late, not underpriced. Replacing it (let
            # alone cancelling it) would only risk a transaction that can still land.
            self._deliver(p)
            return
        priority = max(fees.priority_fee_wei, _bumped(p.priority_fee_wei, self.policy.bump_bps))
        max_fee = max(
            fees.base_fee_wei * self.policy.base_fee_multiplier + priority,
            _bumped(p.max_fee_wei, self.policy.bump_bps),
        )
        if not p.cancelled and max_fee <= p.fee_cap_wei:
            self._replace(p, max_fee, priority)
        elif max_fee * CANCEL_GAS <= p.fee_cap_wei * p.gas:
            log.info("cancelling %s at nonce %d: over its fee cap", p.purpose, p.nonce)
            self._replace(replace(p, cancelled=True), max_fee, priority)
        else:
            log.warning(
                "%s at nonce %d is stuck: even a cancel is over its cap", p.purpose, p.nonce
            )
            self._deliver(p)

    def _replace(self, p: Pending, max_fee: int, priority: int) -> None:
        bumped = self._sign(
            replace(p, max_fee_wei=max_fee, priority_fee_wei=min(priority, max_fee))
        )
        self.journal.record_replacement(bumped)
        self._in_flight[p.id] = bumped
        log.info(
            "replaced %s at nonce %d: max fee %.3f → %.3f gwei",
            p.purpose,
            p.nonce,
            p.max_fee_wei / GWEI,
            bumped.max_fee_wei / GWEI,
        )
        self._deliver(bumped)

    def _deliver(self, p: Pending) -> _Delivery:
        try:
            delivery = _send_raw(self._rpc, p.raw, self.policy)
        except SendRejected as exc:
            log.warning("%s at nonce %d refused: %s", p.purpose, p.nonce, exc)
            if len(p.hashes) > 1:
                return _Delivery.REJECTED  # only the replacement: an earlier version may land
            # Refused for good, and no version of it is in any pool: the nonce is free again,
            # and the next transaction must take it rather than leave a gap.
            outcome = Outcome(p.purpose, p.nonce, TxState.REJECTED, detail=exc.cause)
            self._close(p, outcome)
            self._carry.append(outcome)
            self._next_nonce = self._nonce_count("pending")
            return _Delivery.REJECTED
        p.delivered = delivery in (_Delivery.ACCEPTED, _Delivery.NONCE_USED)
        if delivery is _Delivery.UNDERPRICED:
            # Not in the pool: let the next poll replace it rather than wait out the timer.
            p.sent_block = -(10**9)
        return delivery

    def _settle(self, p: Pending, mined_count: int, head: int) -> Outcome | None:
        """The outcome of `p` if it has one: a receipt of any version, or its nonce consumed
        by a transaction that is not ours. `mined_count` must be read before the receipts."""
        found = self._receipt(p)
        if found is not None:
            tx_hash, receipt = found
            if str(receipt["to"]).lower() == self.address.lower() != p.to.lower():
                state = TxState.CANCELLED
            elif int(receipt["status"], 16) == 1:
                state = TxState.MINED
            else:
                state = TxState.REVERTED
            outcome = Outcome(
                p.purpose,
                p.nonce,
                state,
                tx_hash,
                int(receipt["blockNumber"], 16),
                int(receipt["gasUsed"], 16),
                int(receipt.get("effectiveGasPrice") or "0x0", 16),
                receipt,
            )
        elif p.nonce < mined_count and self._nonce_lost(p, head):
            outcome = Outcome(p.purpose, p.nonce, TxState.DROPPED, detail="nonce used elsewhere")
        else:
            return None
        self._close(p, outcome)
        return outcome

    def _nonce_lost(self, p: Pending, head: int) -> bool:
        """True once `p`'s nonce has stayed used, with no receipt of any version of `p`, for
        `NONCE_LOST_AFTER_BLOCKS` blocks or `stuck_after_s` seconds. A node may count a nonce
        before it serves the receipt (Anvil between committing a block's state and storing its
        receipts; the replicas behind a load balancer). Taking that moment for a lost nonce
        journals a mined transaction as dropped, and `send` used to send its purpose again under
        a new nonce: the dropped transaction of the 5,000-account soak (issue 9.6)."""
        if p.nonce_used_at is None:
            p.nonce_used_at = (head, time.monotonic())
            return False
        block, seen_at = p.nonce_used_at
        return (
            head - block >= NONCE_LOST_AFTER_BLOCKS
            or time.monotonic() - seen_at >= self.policy.stuck_after_s
        )

    def _close(self, p: Pending, outcome: Outcome) -> None:
        self.journal.finish(p.id, outcome)
        self._in_flight.pop(p.id, None)
        self._landings.add(p, outcome)

    def _receipt(self, p: Pending) -> tuple[str, dict[str, Any]] | None:
        """The receipt of whichever version of `p` was mined, as raw JSON (web3's formatting of
        the logs would cost more than the round trip)."""
        for tx_hash in reversed(p.hashes):
            response = self._rpc("eth_getTransactionReceipt", [tx_hash])
            if "error" in response:
                raise requests.RequestException(f"eth_getTransactionReceipt: {response['error']}")
            if response.get("result"):
                return tx_hash, dict(response["result"])
        return None

    def _nonce_count(self, block: str) -> int:
        return _int(self._rpc("eth_getTransactionCount", [self.address, block]))

    def _block_hash(self, number: int) -> str | None:
        block = self._rpc("eth_getBlockByNumber", [hex(number), False]).get("result")
        return None if not block else str(block["hash"])

    def _block_number(self) -> int:
        return _int(self._rpc("eth_blockNumber", []))

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        return dict(self.w3.provider.make_request(RPCEndpoint(method), params))


def _send_raw(
    rpc: Callable[[str, list[Any]], dict[str, Any]], raw: bytes, policy: FeePolicy
) -> _Delivery:
    """Sends `raw`, and on transport failures sends the SAME bytes again (D05)."""
    delay = policy.retry_delay_s
    params = ["0x" + raw.hex()]
    for attempt in range(policy.send_attempts):
        try:
            response = rpc("eth_sendRawTransaction", params)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status < 500 and status != 429:  # 429: rate limited, as transient as a 5xx
                raise SendRejected(f"HTTP {status} from the node", "check the RPC URL") from exc
            log.warning("eth_sendRawTransaction: HTTP %d, resending (%d)", status, attempt + 1)
        except (requests.ConnectionError, requests.Timeout) as exc:
            # The node may have taken it before the connection dropped: only these bytes
            # may go out again, and the receipt decides.
            log.warning("eth_sendRawTransaction: %s, resending", type(exc).__name__)
        else:
            error = response.get("error")
            if error is None:
                return _Delivery.ACCEPTED
            message = str(error.get("message", error)).lower()
            if any(s in message for s in _KNOWN):
                return _Delivery.ACCEPTED
            if any(s in message for s in _NONCE_USED):
                return _Delivery.NONCE_USED
            if any(s in message for s in _UNDERPRICED):
                return _Delivery.UNDERPRICED
            raise SendRejected(f"the node refused the transaction: {message}")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)
    return _Delivery.UNDELIVERED


def _int(response: Mapping[str, Any]) -> int:
    if "error" in response:
        raise requests.RequestException(f"the node answered an error: {response['error']}")
    return int(response["result"], 16)


def _bumped(fee_wei: int, bump_bps: int) -> int:
    """`fee_wei` raised by `bump_bps`, rounded up so the bump is never below it."""
    return -(-fee_wei * (BPS + bump_bps) // BPS)
