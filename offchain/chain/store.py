"""A write-ahead SQLite file: what the sender's journal and the engine's outbox are built on.

WAL with `synchronous=FULL`, so a committed row survives a crash or power loss, which is what lets
a restart re-send exactly what was recorded before it was sent. One connection behind a lock:
the engine's loop and its delivery thread, or a keeper built in one thread and run in another,
share it. Transactions are `BEGIN IMMEDIATE`, so a writer never reads a state another is changing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteStore:
    """`path` is created with its folder; `":memory:"` keeps the store in memory (no crash
    safety: for tests and one-shot runs)."""

    def __init__(self, path: Path | str, schema: str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(schema)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
