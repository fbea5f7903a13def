"""The write-ahead journal of one key's transactions on one chain (SQLite), and its records.

`TxSender` commits every transaction here BEFORE it broadcasts it, and every signed version of it
(replacements share the nonce), so a restarted process re-broadcasts the same bytes instead of
sending its purpose again under a new nonce (THREATS D09). The file is bound to the chain's
genesis hash, the chain id and the key: a restarted local chain never receives a dead chain's
transactions.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from offchain.chain.bindings import checksum
from offchain.chain.store import SqliteStore
from offchain.errors import ConfigError


def default_journal(role: str, chain_id: int, genesis_tag: str, address: str) -> Path:
    """Where a service keeps its key's journal unless told (`--journal`): one file per role,
    key and chain, named by the genesis too, so a restarted local chain starts a new one."""
    return Path(".marginsync") / f"{role}-{chain_id}-{genesis_tag}-{checksum(address)}.sqlite"


class TxState(StrEnum):
    PENDING = "pending"  # journaled; broadcast at least once (or about to be)
    MINED = "mined"  # a receipt with status 1
    REVERTED = "reverted"  # a receipt with status 0: mined, gas paid, no effect
    CANCELLED = "cancelled"  # our no-op replacement took the nonce (stuck at its fee cap)
    DROPPED = "dropped"  # the nonce went to a transaction that is not one of ours
    REJECTED = "rejected"  # the node refused it for good (e.g. insufficient funds)
    # Reported, never stored: a mined (or reverted, or cancelled) transaction's block left the
    # chain in a reorganisation; it is pending again, its same signed bytes re-broadcast.
    REORGED = "reorged"


@dataclass
class Pending:
    """A journaled transaction without a final receipt. `hashes` holds every signed version
    (replacements share the nonce, so at most one of them can ever be mined)."""

    id: int
    nonce: int
    purpose: str
    to: str
    data: bytes
    value: int
    gas: int
    fee_cap_wei: int
    max_fee_wei: int
    priority_fee_wei: int
    raw: bytes
    hashes: list[str]
    sent_block: int | None  # None until a poll first misses its receipt (see `_stuck`)
    sent_at_s: float
    delivered: bool = False
    cancelled: bool = False  # the latest version is a no-op self-transfer at this nonce
    # (head block, monotonic time) when a poll first found the nonce used and no receipt of ours.
    nonce_used_at: tuple[int, float] | None = None

    @property
    def tx_hash(self) -> str:
        return self.hashes[-1]


@dataclass(frozen=True)
class Outcome:
    """The end of one journaled transaction."""

    purpose: str
    nonce: int
    state: TxState
    tx_hash: str | None = None
    block: int | None = None
    gas_used: int = 0
    effective_gas_price_wei: int = 0
    receipt: dict[str, Any] | None = field(default=None, repr=False)  # raw JSON-RPC
    detail: str = ""


@dataclass(frozen=True)
class JournalRow:
    """One journal row, for inspection (tests, operators)."""

    id: int
    nonce: int
    purpose: str
    state: TxState
    hashes: tuple[str, ...]
    raw_txs: tuple[bytes, ...]
    mined_hash: str | None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce       INTEGER NOT NULL,
    purpose     TEXT NOT NULL,
    to_address  TEXT NOT NULL,
    data        BLOB NOT NULL,
    value       TEXT NOT NULL,
    gas         INTEGER NOT NULL,
    fee_cap_wei TEXT NOT NULL,
    state       TEXT NOT NULL,
    mined_hash  TEXT,
    block       INTEGER,
    gas_used    INTEGER,
    detail      TEXT,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS txs_state ON txs (state);
CREATE TABLE IF NOT EXISTS attempts (
    tx_hash          TEXT NOT NULL,
    tx_id            INTEGER NOT NULL REFERENCES txs (id),
    raw              BLOB NOT NULL,
    max_fee_wei      TEXT NOT NULL,
    priority_fee_wei TEXT NOT NULL,
    cancel           INTEGER NOT NULL,
    sent_at          REAL NOT NULL,
    -- A refused transaction's nonce is reused, so identical bytes may recur in a later row.
    PRIMARY KEY (tx_id, tx_hash)
);
CREATE INDEX IF NOT EXISTS attempts_tx ON attempts (tx_id);
"""


class Journal(SqliteStore):
    """The write-ahead record of one key's transactions on one chain (`journal.sqlite`).
    `":memory:"` keeps it in memory: no crash safety, for tests and one-shot runs."""

    def __init__(self, path: Path | str, *, chain_id: int, sender: str, genesis: str = "") -> None:
        """`genesis`: the chain's block-0 hash. A restarted local chain reuses the chain id, and
        re-broadcasting a dead chain's transactions onto it would leave a nonce gap."""
        super().__init__(path, _SCHEMA)
        self._bind(chain_id, str(checksum(sender)), genesis.lower())

    def _bind(self, chain_id: int, sender: str, genesis: str) -> None:
        wanted = {"chain_id": str(chain_id), "sender": sender, "genesis": genesis}
        with self._tx() as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if not meta:
                db.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", wanted.items())
                return
        if {k: meta.get(k) for k in wanted} != wanted:
            raise ConfigError(
                f"journal {self.path} belongs to {meta.get('sender')} on chain "
                f"{meta.get('chain_id')} (genesis {meta.get('genesis') or '?'}), not {sender} on "
                f"chain {chain_id} (genesis {genesis or '?'})",
                "give each key and chain its own --journal file; delete a restarted local "
                "chain's old journal",
            )

    def record(self, p: Pending) -> int:
        """A new transaction and its first signed version, committed before any broadcast."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT INTO txs (nonce, purpose, to_address, data, value, gas, fee_cap_wei, "
                "state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.nonce,
                    p.purpose,
                    p.to,
                    p.data,
                    str(p.value),
                    p.gas,
                    str(p.fee_cap_wei),
                    TxState.PENDING.value,
                    time.time(),
                ),
            )
            assert cursor.lastrowid is not None
            self._attempt(db, cursor.lastrowid, p)
            return cursor.lastrowid

    def record_replacement(self, p: Pending) -> None:
        with self._tx() as db:
            self._attempt(db, p.id, p)

    @staticmethod
    def _attempt(db: sqlite3.Connection, tx_id: int, p: Pending) -> None:
        db.execute(
            "INSERT INTO attempts (tx_hash, tx_id, raw, max_fee_wei, priority_fee_wei, cancel, "
            "sent_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                p.tx_hash,
                tx_id,
                p.raw,
                str(p.max_fee_wei),
                str(p.priority_fee_wei),
                int(p.cancelled),
                time.time(),
            ),
        )

    def finish(self, tx_id: int, outcome: Outcome) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE txs SET state=?, mined_hash=?, block=?, gas_used=?, detail=? WHERE id=?",
                (
                    outcome.state.value,
                    outcome.tx_hash,
                    outcome.block,
                    outcome.gas_used,
                    outcome.detail,
                    tx_id,
                ),
            )

    def reopen(self, tx_id: int) -> None:
        """A settled transaction whose block left the chain is pending again."""
        with self._tx() as db:
            db.execute(
                "UPDATE txs SET state=?, mined_hash=NULL, block=NULL, gas_used=NULL, detail=NULL "
                "WHERE id=?",
                (TxState.PENDING.value, tx_id),
            )

    def pending(self) -> list[Pending]:
        """Every transaction without a final state, oldest nonce first, latest version last."""
        return [p for p, _, _ in self._load("state=?", (TxState.PENDING.value,))]

    def landed_since(self, block: int) -> list[tuple[Pending, int, str]]:
        """(transaction, its block, the hash that landed) of every transaction with a receipt
        in `block` or later: what a restarted sender re-checks against the canonical chain."""
        landed = (TxState.MINED.value, TxState.REVERTED.value, TxState.CANCELLED.value)
        found = self._load("state IN (?, ?, ?) AND block >= ?", (*landed, block))
        return [(p, int(b), str(h)) for p, b, h in found]

    def _load(self, where: str, args: tuple[object, ...]) -> list[tuple[Pending, Any, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, nonce, purpose, to_address, data, value, gas, fee_cap_wei, block, "
                f"mined_hash FROM txs WHERE {where} ORDER BY nonce, id",
                args,
            ).fetchall()
            out: list[tuple[Pending, Any, Any]] = []
            for tx_id, nonce, purpose, to, data, value, gas, cap, block, mined in rows:
                attempts = self._db.execute(
                    "SELECT tx_hash, raw, max_fee_wei, priority_fee_wei, sent_at, cancel "
                    "FROM attempts "
                    "WHERE tx_id=? ORDER BY sent_at, rowid",
                    (tx_id,),
                ).fetchall()
                last = attempts[-1]
                p = Pending(
                    id=tx_id,
                    nonce=nonce,
                    purpose=purpose,
                    to=to,
                    data=bytes(data),
                    value=int(value),
                    gas=gas,
                    fee_cap_wei=int(cap),
                    max_fee_wei=int(last[2]),
                    priority_fee_wei=int(last[3]),
                    raw=bytes(last[1]),
                    hashes=[a[0] for a in attempts],
                    sent_block=None,
                    sent_at_s=float(last[4]),
                    cancelled=bool(last[5]),
                )
                out.append((p, block, mined))
            return out

    def rows(self, purpose: str | None = None) -> list[JournalRow]:
        """Every row (or every row for `purpose`), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, nonce, purpose, state, mined_hash FROM txs "
                "WHERE ? IS NULL OR purpose = ? ORDER BY id",
                (purpose, purpose),
            ).fetchall()
            out: list[JournalRow] = []
            for tx_id, nonce, purpose, state, mined in rows:
                attempts = self._db.execute(
                    "SELECT tx_hash, raw FROM attempts WHERE tx_id=? ORDER BY sent_at, rowid",
                    (tx_id,),
                ).fetchall()
                out.append(
                    JournalRow(
                        id=tx_id,
                        nonce=nonce,
                        purpose=purpose,
                        state=TxState(state),
                        hashes=tuple(a[0] for a in attempts),
                        raw_txs=tuple(bytes(a[1]) for a in attempts),
                        mined_hash=mined,
                    )
                )
            return out
