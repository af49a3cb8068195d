"""PostgreSQL backend (psycopg2): several nodes may share one database.

Each write transaction locks the server's chain_head row with SELECT ... FOR UPDATE, so
batches from every process on every node form one sequence.

The connection runs in autocommit mode and the store sends BEGIN/COMMIT itself, so a
batch costs two round trips: ``BEGIN; SELECT ... FOR UPDATE`` (the chain needs the
head) and ``INSERT ...; UPDATE chain_head ...; COMMIT``.  Commits are synchronous: a
session whose ``synchronous_commit`` is ``off`` is switched back on.
"""
from __future__ import annotations

import psycopg2

from .store import Head, SqlStore

_SCHEMA_LOCK_KEY = 0x74756E64  # "tund": advisory lock serialising schema upgrades
_RECORD_VALUES = "(" + ",".join(["%s"] * 13) + ")"
LOCK_HEAD_SQL = ("SELECT seq, hash, archived_seq, archived_hash FROM chain_head "
                 "WHERE server_id = %s FOR UPDATE")


def batch_sql(cur, server_id: str, certs: list[tuple[str, bytes]], rows: list[tuple],
              seq: int, head_hash: str) -> bytes:
    """One round trip: every insert, the head update and the COMMIT.  If a statement
    fails, PostgreSQL skips the rest (no COMMIT) and the caller rolls back."""
    parts = []
    if certs:
        parts.append(cur.mogrify(
            "INSERT INTO certs (sha256, der) VALUES "
            + ",".join(["(%s,%s)"] * len(certs)) + " ON CONFLICT DO NOTHING",
            [v for c in certs for v in c]))
    if rows:
        parts.append(b"INSERT INTO records (server_id, seq, message_id, client, service, "
                     b"direction, side, envelope, cert_sha256, body_sha256, created, "
                     b"prev_hash, hash) VALUES "
                     + b",".join(cur.mogrify(_RECORD_VALUES, r) for r in rows))
    parts.append(cur.mogrify("UPDATE chain_head SET seq = %s, hash = %s "
                             "WHERE server_id = %s", (seq, head_hash, server_id)))
    parts.append(b"COMMIT")
    return b"; ".join(parts)


class PostgresStore(SqlStore):
    BLOB = "BYTEA"
    PARAM = "%s"

    def __init__(self, dsn: str, connect_timeout: int = 10) -> None:
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        super().__init__()

    def _connect(self):
        conn = psycopg2.connect(self.dsn, connect_timeout=self.connect_timeout)
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("SHOW synchronous_commit")
        if str(cur.fetchone()[0]).lower() == "off":
            # A logged message is released only once its record is durable.
            cur.execute("SET synchronous_commit = on")
        return conn

    def _begin_write(self) -> None:
        self.conn.cursor().execute("BEGIN")

    def _begin_read(self) -> None:
        self.conn.cursor().execute("BEGIN")

    def _end_read(self) -> None:
        self._rollback()

    def _commit(self) -> None:
        self.conn.cursor().execute("COMMIT")

    def _rollback(self) -> None:
        try:
            self.conn.cursor().execute("ROLLBACK")
        except Exception:
            pass

    def _schema_lock(self) -> None:
        self.conn.cursor().execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))

    def _lock_head_sql(self) -> str:
        return LOCK_HEAD_SQL.replace("%s", "?")

    def _begin_and_lock_head(self, cur, server_id: str) -> Head:
        # One round trip: BEGIN and the locking read together.
        cur.execute("BEGIN; " + LOCK_HEAD_SQL, (server_id,))
        row = cur.fetchone()
        if row is None:
            return self._lock_head(cur, server_id)
        return Head(int(row[0]), row[1], int(row[2]), row[3])

    def _write_and_commit(self, cur, server_id: str, certs: list[tuple[str, bytes]],
                          rows: list[tuple], seq: int, head_hash: str) -> None:
        cur.execute(batch_sql(cur, server_id, certs, rows, seq, head_hash))

    def _is_disconnect(self, exc: Exception) -> bool:
        return isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) \
            and bool(self.conn.closed)

    def _table_exists(self, name: str) -> bool:
        cur = self.conn.cursor()
        cur.execute("SELECT to_regclass(%s)", (name,))
        return cur.fetchone()[0] is not None

