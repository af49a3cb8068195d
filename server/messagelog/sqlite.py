"""SQLite backend: one file, WAL, synchronous=FULL so a commit survives power loss.

Worker processes of one server share the file; BEGIN IMMEDIATE takes the write lock
before the chain head is read, so their batches never interleave.  A connection for
the event loop (loop_writer.py) is opened with ``busy_timeout = 0`` and
``migrate=False``: it never waits for the lock (opening included), it retries later.
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

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_S,
                 migrate: bool = True) -> None:
        """``busy_timeout``: seconds to wait for another connection's lock (0: raise
        "database is locked" at once).  ``migrate=False``: the schema is known to be in
        place (the server created it at start-up); nothing is written on opening."""
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self.migrate = migrate
        super().__init__()

    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = self._to_wal(conn, self.busy_timeout)
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(
                    f"cannot switch {self.path} to WAL mode ({mode})")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self) -> None:
        if self.migrate:
            super()._migrate()

    @staticmethod
    def _to_wal(conn, wait: float = BUSY_TIMEOUT_S) -> str:
        """``PRAGMA journal_mode = WAL``, retried for ``wait`` seconds: while another
        process creates or switches the same new file, SQLite answers "database is
        locked" at once instead of calling the busy handler."""
        deadline = time.monotonic() + wait
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
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
