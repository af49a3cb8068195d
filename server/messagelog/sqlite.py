"""SQLite backend: one file, WAL, synchronous=FULL so a commit survives power loss.

Worker processes of one server share the file; BEGIN IMMEDIATE takes the write lock
before the chain head is read, so their batches never interleave.  A connection for
the event loop (loop_writer.py) is opened with ``busy_timeout = 0``: it must not wait
for the lock, it retries later.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from .store import SqlStore

BUSY_TIMEOUT_S = 30.0


class SqliteStore(SqlStore):
    BLOB = "BLOB"
    PARAM = "?"

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        super().__init__()

    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        mode = self._to_wal(conn)
        if str(mode).lower() != "wal":
            conn.close()
            raise sqlite3.OperationalError(f"cannot switch {self.path} to WAL mode ({mode})")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _migrate(self) -> None:
        super()._migrate()     # creating the schema may wait for another process
        if self.busy_timeout != BUSY_TIMEOUT_S:
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")

    @staticmethod
    def _to_wal(conn) -> str:
        """``PRAGMA journal_mode = WAL``, retried: while another process creates or
        switches the same new file, SQLite answers "database is locked" at once
        instead of calling the busy handler."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(0.01)

    def _begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def _begin_read(self) -> None:
        self.conn.execute("BEGIN")

    def _end_read(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _commit(self) -> None:
        self.conn.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except Exception:
            pass

    def _table_exists(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,)).fetchone()
        return row is not None
