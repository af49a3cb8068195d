"""PostgreSQL backend (psycopg2): several nodes may share one database.

Each write transaction locks the server's chain_head row with SELECT ... FOR UPDATE, so
batches from every process on every node form one sequence.
"""
from __future__ import annotations

import psycopg2

from .store import SqlStore

_SCHEMA_LOCK_KEY = 0x74756E64  # "tund": advisory lock serialising schema upgrades


class PostgresStore(SqlStore):
    BLOB = "BYTEA"
    PARAM = "%s"

    def __init__(self, dsn: str, connect_timeout: int = 10) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        super().__init__()

    def _connect(self):
        conn = psycopg2.connect(self.dsn, connect_timeout=self.connect_timeout)
        conn.autocommit = False
        return conn

    def _begin_write(self) -> None:
        pass  # psycopg2 opens a transaction with the first statement

    def _begin_read(self) -> None:
        pass

    def _end_read(self) -> None:
        self._rollback()

    def _schema_lock(self) -> None:
        self.conn.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))

    def _lock_head_sql(self) -> str:
        return ("SELECT seq, hash, archived_seq, archived_hash FROM chain_head "
                "WHERE server_id = ? FOR UPDATE")

    def _table_exists(self, name: str) -> bool:
        cur = self.conn.cursor()
        cur.execute("SELECT to_regclass(%s)", (name,))
        return cur.fetchone()[0] is not None
