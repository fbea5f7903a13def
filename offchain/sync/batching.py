"""Batches: selected accounts → one EIP-712 batch, persisted, then signed (D11).

The sequence is allocated durably before the batch is built and the batch is persisted before
any signature exists, so whatever is signed later is exactly what the outbox holds (one
(account, sequence), one payload, one digest). Requirements are rounded up to micro-USD, MM never
above IM (the verifier rejects it). The digest is packed by hand from the domain separator
computed once, and checked against `offchain.attest`'s definition at start.

`MARGINSYNC_ENGINE_CRASH_AT=persisted|signed|sent` is a TEST HOOK (`crash_point`): the process
SIGKILLs itself right after that step, so tests can prove a restart sends the same payload.
Never set it in production.
"""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable

import numpy as np
from eth_utils import keccak

from offchain.attest import UINT64_MAX, Batch, Domain, Entry, digest
from offchain.errors import MarginsyncError
from offchain.sync.book import Book, usd_to_e18
from offchain.sync.keys import SignerUnavailable
from offchain.sync.outbox import Outbox, Row, State
from offchain.sync.policy import FloatArray, IntArray

CRASH_ENV = "MARGINSYNC_ENGINE_CRASH_AT"


def crash_point(step: str) -> None:
    """TEST HOOK (D11): SIGKILL this process right after `step` when the env var names it."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def batch_digest(batch: Batch, separator: bytes) -> bytes:
    """`attest.digest` for a domain separator computed once."""
    return keccak(b"\x19\x01" + separator + batch.struct_hash())


class Batcher:
    def __init__(
        self, domain: Domain, outbox: Outbox, sign: Callable[[Batch, bytes], bytes]
    ) -> None:
        self.domain = domain
        self.outbox = outbox
        self.sign = sign
        self._separator = domain.separator()

    def digest(self, batch: Batch) -> bytes:
        return batch_digest(batch, self._separator)

    def check_digest(self) -> None:
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
        if self.digest(probe) != digest(probe, self.domain):
            raise MarginsyncError(
                "the engine's batch digest differs from offchain.attest.digest",
                "offchain/attest.py's typed data changed: update batch_digest in sync/batching.py",
            )

    def make(
        self,
        book: Book,
        chunk: IntArray,
        im_usd: FloatArray,
        mm_usd: FloatArray,
        px: FloatArray,
        issued_at: int,
        tick_at: float | None,
    ) -> Row:
        """persist → sign for the accounts at `chunk` of the book: one `signed` outbox row."""
        mask = int(np.bitwise_or.reduce(book.asset_mask[chunk])) if len(chunk) else 0
        assets = [a for a in range(len(book.symbols)) if mask >> a & 1]
        entries = []
        for i in chunk.tolist():
            mm = _micro_usd_up(float(mm_usd[i]))
            im = max(_micro_usd_up(float(im_usd[i])), mm)  # the verifier rejects MM above IM
            # Lowercase: the ABI encoding is the same, and no checksum is computed per entry.
            entries.append(Entry(book.accounts_lower[i], int(book.nonce_list[i]), im, mm))
        floor = book.mirror.attestations.max_sequence + 1
        sequence = self.outbox.allocate_sequence(floor=floor)
        batch = Batch(
            sequence=sequence,
            issued_at=issued_at,
            price_asset_mask=mask,
            prices_e18=tuple(usd_to_e18(float(px[a])) for a in assets),
            entries=tuple(entries),
        )
        message_digest = self.digest(batch)
        self.outbox.persist(batch, message_digest, tick_at)
        crash_point("persisted")
        try:
            signatures = self.sign(batch, message_digest)
        except SignerUnavailable as exc:
            # Never signed, so it can never reach the chain: close it rather than sign it late.
            self.outbox.mark_done(sequence, State.FAILED, f"signer unavailable: {exc.cause}")
            raise
        self.outbox.mark_signed(sequence, signatures)
        crash_point("signed")
        row = self.outbox.get(sequence)
        assert row is not None
        return row


def _micro_usd_up(usd: float) -> int:
    if not math.isfinite(usd) or usd <= 0:
        return 0
    return min(math.ceil(usd * 1e6), UINT64_MAX)
