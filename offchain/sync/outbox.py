"""The durable outbox: every attestation batch the engine makes, keyed by its EIP-712 digest.

A batch moves through these states, each change committed (SQLite, WAL, synchronous=FULL) before
the next step may act on it:

    persisted ──► signed ──► sent ──► confirmed | skipped | failed
        └──────────┴──────────┴─────► expired   (too old to be accepted on-chain; never sent)

* The sequence is allocated durably (`allocate_sequence` commits the counter) before the batch is
  built, so a crash never hands the same sequence to a different payload; the batch (sequence
  included) is persisted before any signature exists, so whatever is signed later is exactly
  what the outbox holds (D11: one (account, sequence), one payload, one digest).
* `sent` records the hash of the batch's transaction once the sender has journaled and
  broadcast it. The transaction itself (raw bytes, nonce, fee bumps) lives in the sender's
  journal (`offchain.chain.journal`, purpose `batch:<sequence>`): after a crash the same bytes are
  re-broadcast from there, never a new transaction with a new nonce.
* `skipped` means the chain already holds everything in the batch (`NothingApplied`; D12).

One outbox belongs to one verifier on one chain; opening it against another fails.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from offchain.attest import Batch, Entry
from offchain.chain.store import SqliteStore
from offchain.errors import ConfigError, MarginsyncError


class State(StrEnum):
    PERSISTED = "persisted"
    SIGNED = "signed"
    SENT = "sent"
    CONFIRMED = "confirmed"
    SKIPPED = "skipped"
    FAILED = "failed"
    EXPIRED = "expired"


OPEN_STATES = (State.PERSISTED, State.SIGNED, State.SENT)


class OutboxConflict(MarginsyncError):
    """A sequence already holds a different payload: refusing to make a second attestation."""


@dataclass(frozen=True)
class Row:
    sequence: int
    digest: bytes
    batch: Batch
    state: State
    signatures: bytes | None
    tick_at_s: float | None
    created_at_s: float
    tx_hash: str | None = None
    detail: str | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    sequence     INTEGER PRIMARY KEY,
    digest       BLOB NOT NULL UNIQUE,
    payload      TEXT NOT NULL,
    state        TEXT NOT NULL,
    signatures   BLOB,
    tick_at_s    REAL,
    created_at_s REAL NOT NULL,
    updated_at_s REAL NOT NULL,
    tx_hash      TEXT,
    block        INTEGER,
    gas_used     INTEGER,
    applied      INTEGER,
    skipped      INTEGER,
    detail       TEXT
);
CREATE INDEX IF NOT EXISTS batches_state ON batches (state);
"""


def encode_batch(batch: Batch) -> str:
    return json.dumps(
        {
            "sequence": batch.sequence,
            "issued_at": batch.issued_at,
            "price_asset_mask": batch.price_asset_mask,
            "prices_e18": [str(p) for p in batch.prices_e18],
            "entries": [
                [e.account, e.position_nonce, e.im_micro_usd, e.mm_micro_usd] for e in batch.entries
            ],
        },
        separators=(",", ":"),
    )


def decode_batch(text: str) -> Batch:
    d = json.loads(text)
    return Batch(
        sequence=int(d["sequence"]),
        issued_at=int(d["issued_at"]),
        price_asset_mask=int(d["price_asset_mask"]),
        prices_e18=tuple(int(p) for p in d["prices_e18"]),
        entries=tuple(Entry(str(a), int(n), int(im), int(mm)) for a, n, im, mm in d["entries"]),
    )


class Outbox(SqliteStore):
    """Thread-safe (one connection behind a lock): the engine's loop and its delivery thread
    share it."""

    def __init__(self, path: Path, *, chain_id: int, verifier: str) -> None:
        super().__init__(path, _SCHEMA)
        self._bind(chain_id, verifier.lower())

    def _bind(self, chain_id: int, verifier: str) -> None:
        with self._tx() as db:
            rows = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if "chain_id" not in rows:
                db.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("chain_id", str(chain_id)), ("verifier", verifier), ("next_sequence", "1")],
                )
                return
        if rows["chain_id"] != str(chain_id) or rows["verifier"] != verifier:
            raise ConfigError(
                f"outbox {self.path} belongs to verifier {rows['verifier']} on chain "
                f"{rows['chain_id']}, not {verifier} on chain {chain_id}",
                "give each deployment its own --outbox file",
            )

    # ------------------------------------------------------------------ sequences
    def allocate_sequence(self, floor: int = 1) -> int:
        """A sequence never handed out before by this outbox, at least `floor` (committed)."""
        with self._tx() as db:
            (current,) = db.execute("SELECT value FROM meta WHERE key='next_sequence'").fetchone()
            sequence = max(int(current), floor)
            db.execute("UPDATE meta SET value=? WHERE key='next_sequence'", (str(sequence + 1),))
        return sequence

    # ------------------------------------------------------------------ transitions
    def persist(self, batch: Batch, digest: bytes, tick_at_s: float | None = None) -> Row:
        """Records `batch` in state `persisted`. Idempotent for the same digest; a different
        payload under a recorded sequence raises `OutboxConflict`."""
        now = time.time()
        with self._tx() as db:
            found = db.execute(
                "SELECT digest FROM batches WHERE sequence=? OR digest=?", (batch.sequence, digest)
            ).fetchall()
            if found:
                if any(bytes(d) != digest for (d,) in found):
                    raise OutboxConflict(
                        f"sequence {batch.sequence} already holds a different attestation",
                        "this is a bug: sequences are allocated once; inspect the outbox",
                    )
            else:
                db.execute(
                    "INSERT INTO batches (sequence, digest, payload, state, tick_at_s, "
                    "created_at_s, updated_at_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        batch.sequence,
                        digest,
                        encode_batch(batch),
                        State.PERSISTED,
                        tick_at_s,
                        now,
                        now,
                    ),
                )
        row = self.get(batch.sequence)
        assert row is not None
        return row

    def mark_signed(self, sequence: int, signatures: bytes) -> None:
        self._move(sequence, (State.PERSISTED,), State.SIGNED, signatures=signatures)

    def mark_sent(self, sequence: int, tx_hash: str) -> None:
        """The sender journaled and broadcast the batch's transaction `tx_hash`."""
        self._move(sequence, (State.SIGNED, State.SENT), State.SENT, tx_hash=tx_hash)

    def mark_confirmed(
        self, sequence: int, tx_hash: str, block: int, gas_used: int, applied: int, skipped: int
    ) -> None:
        self._move(
            sequence,
            OPEN_STATES,
            State.CONFIRMED,
            tx_hash=tx_hash,
            block=block,
            gas_used=gas_used,
            applied=applied,
            skipped=skipped,
        )

    def reopen(self, sequence: int, detail: str) -> None:
        """A batch whose transaction's block left the chain: in flight again (`sent`)."""
        done = (State.CONFIRMED, State.FAILED, State.SKIPPED)
        self._move(sequence, done, State.SENT, detail=detail)

    def mark_done(self, sequence: int, state: State, detail: str) -> None:
        """skipped / failed / expired, with why."""
        self._move(sequence, OPEN_STATES, state, detail=detail)

    def _move(
        self, sequence: int, sources: tuple[State, ...], target: State, **cols: object
    ) -> None:
        sets = ", ".join(f"{c}=?" for c in cols)
        marks = ", ".join("?" for _ in sources)
        with self._tx() as db:
            db.execute(
                f"UPDATE batches SET state=?, updated_at_s=?{', ' + sets if sets else ''} "
                f"WHERE sequence=? AND state IN ({marks})",
                (target, time.time(), *cols.values(), sequence, *sources),
            )

    # ------------------------------------------------------------------ reads
    def get(self, sequence: int) -> Row | None:
        with self._lock:
            r = self._db.execute(
                "SELECT sequence, digest, payload, state, signatures, tick_at_s, created_at_s, "
                "tx_hash, detail FROM batches WHERE sequence=?",
                (sequence,),
            ).fetchone()
        return None if r is None else _row(r)

    def open_rows(self) -> list[Row]:
        """Rows not yet finished, oldest sequence first: what a restart must finish."""
        marks = ", ".join("?" for _ in OPEN_STATES)
        with self._lock:
            rows = self._db.execute(
                "SELECT sequence, digest, payload, state, signatures, tick_at_s, created_at_s, "
                f"tx_hash, detail FROM batches WHERE state IN ({marks}) ORDER BY sequence",
                OPEN_STATES,
            ).fetchall()
        return [_row(r) for r in rows]

    def max_sequence(self) -> int:
        with self._lock:
            (s,) = self._db.execute("SELECT MAX(sequence) FROM batches").fetchone()
        return int(s or 0)

    def depth(self) -> int:
        marks = ", ".join("?" for _ in OPEN_STATES)
        with self._lock:
            (n,) = self._db.execute(
                f"SELECT COUNT(*) FROM batches WHERE state IN ({marks})", OPEN_STATES
            ).fetchone()
        return int(n)

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM batches GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    def rows(self, states: tuple[State, ...] | None = None) -> list[Row]:
        """Every row (or those in `states`), by sequence: for tests and inspection."""
        query = (
            "SELECT sequence, digest, payload, state, signatures, tick_at_s, created_at_s, "
            "tx_hash, detail FROM batches"
        )
        args: tuple[object, ...] = ()
        if states:
            query += f" WHERE state IN ({', '.join('?' for _ in states)})"
            args = states
        with self._lock:
            found = self._db.execute(query + " ORDER BY sequence", args).fetchall()
        return [_row(r) for r in found]


def _row(r: tuple[object, ...]) -> Row:
    sequence, digest, payload, state, sigs, tick_at, created, tx_hash, detail = r
    return Row(
        sequence=int(sequence),  # type: ignore[call-overload]
        digest=bytes(digest),  # type: ignore[call-overload]
        batch=decode_batch(str(payload)),
        state=State(str(state)),
        signatures=None if sigs is None else bytes(sigs),  # type: ignore[call-overload]
        tick_at_s=None if tick_at is None else float(tick_at),  # type: ignore[arg-type]
        created_at_s=float(created),  # type: ignore[arg-type]
        tx_hash=None if tx_hash is None else str(tx_hash),
        detail=None if detail is None else str(detail),
    )
