"""The SQL store behind the message log, shared by the SQLite and PostgreSQL backends.

One :class:`SqlStore` wraps one database connection and is used by one thread.  Every
write is one transaction that first locks the chain head row of the server id, so any
number of threads, worker processes and nodes writing the same chain produce a single
valid sequence.  The schema is versioned and upgraded by the server itself.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterator, Optional, Sequence

from . import chain
from .record import LogRecord, StoredRecord, format_time, parse_time

# (version, statements).  {BLOB} is the dialect's binary type.  Never edit a released
# migration: append a new one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (1, [
        """CREATE TABLE chain_head (
            server_id TEXT PRIMARY KEY,
            seq BIGINT NOT NULL,
            hash TEXT NOT NULL,
            archived_seq BIGINT NOT NULL,
            archived_hash TEXT NOT NULL)""",
        "CREATE TABLE certs (sha256 TEXT PRIMARY KEY, der {BLOB} NOT NULL)",
        """CREATE TABLE records (
            server_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            message_id TEXT NOT NULL,
            client TEXT NOT NULL,
            service TEXT NOT NULL,
            direction TEXT NOT NULL,
            side TEXT NOT NULL,
            envelope {BLOB} NOT NULL,
            cert_sha256 TEXT NOT NULL,
            body_sha256 TEXT NOT NULL,
            created TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (server_id, seq))""",
        "CREATE INDEX records_message_id ON records (server_id, message_id)",
        "CREATE INDEX records_created ON records (server_id, created)",
        """CREATE TABLE timestamps (
            server_id TEXT NOT NULL,
            first_seq BIGINT NOT NULL,
            last_seq BIGINT NOT NULL,
            chain_hash TEXT NOT NULL,
            token {BLOB} NOT NULL,
            stamped_at TEXT NOT NULL,
            PRIMARY KEY (server_id, last_seq))""",
    ]),
    # Replay keys claimed once for the whole database: a provider accepts each
    # signing act once, and two security servers (two chains, two head locks)
    # sharing one log cannot both accept it.
    (2, [
        "CREATE TABLE replay_keys (replay_key TEXT PRIMARY KEY, seen TEXT NOT NULL)",
    ]),
    # One row a health check rewrites: can this server write its log right now?
    (3, [
        "CREATE TABLE health_probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL)",
        "INSERT INTO health_probe (id, at) VALUES (1, '')",
    ]),
]
#: Claimed replay keys are kept this long (a signature's acceptance window, and more).
REPLAY_KEEP_SECONDS = 900
PRUNE_EVERY = 1000       # batches between removals of keys past REPLAY_KEEP_SECONDS
PRUNE_REPLAY_KEYS_SQL = "DELETE FROM replay_keys WHERE seen < ?"
SCHEMA_VERSION = MIGRATIONS[-1][0]

_RECORD_COLS = ("r.server_id, r.seq, r.message_id, r.client, r.service, r.direction, "
                "r.side, r.envelope, c.der, r.body_sha256, r.created, r.prev_hash, r.hash")


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    archived_seq: int
    archived_hash: str


@dataclass(frozen=True)
class Timestamp:
    server_id: str
    first_seq: int
    last_seq: int
    chain_hash: str
    token: bytes
    stamped_at: datetime


class PreparedRecord:
    """A record with everything that does not depend on its place in the chain done:
    hashes, time text and the tail of its canonical encoding (built once, by the
    caller's thread, before the record is queued for the writer)."""

    __slots__ = ("message_id", "client", "service", "direction", "side", "envelope",
                 "cert_der", "cert_sha256", "body_sha256", "created", "tail", "replay_key")

    def __init__(self, r: LogRecord) -> None:
        self.message_id, self.client, self.service = r.message_id, r.client, r.service
        self.direction, self.side = r.direction, r.side
        self.envelope = bytes(r.envelope)
        self.cert_der = bytes(r.signature_cert_der)
        self.cert_sha256 = hashlib.sha256(self.cert_der).hexdigest()
        self.body_sha256 = r.body_sha256.lower()
        self.created = format_time(r.created)
        self.replay_key = r.replay_key
        self.tail = chain.encoding_tail(
            r.message_id, r.client, r.service, r.direction, r.side,
            hashlib.sha256(self.envelope).hexdigest(), self.cert_sha256, self.body_sha256,
            self.created)

    @classmethod
    def of(cls, r: "LogRecord | PreparedRecord") -> "PreparedRecord":
        return r if isinstance(r, PreparedRecord) else cls(r)


class KnownCerts:
    """SHA-256s of the certificates committed through one connection, so a batch
    inserts only certificates the store may not have.  Filled only after a commit: a
    rolled back batch must not leave its certificates here."""

    MAX = 10_000

    def __init__(self) -> None:
        self._known: set = set()

    def missing(self, records: Sequence[PreparedRecord]) -> dict[str, bytes]:
        known = self._known
        return {r.cert_sha256: r.cert_der for r in records if r.cert_sha256 not in known}

    def committed(self, certs: dict[str, bytes]) -> None:
        if len(self._known) + len(certs) > self.MAX:
            self._known.clear()
        self._known.update(certs)


def without_duplicates(records: Sequence[PreparedRecord], seen: set
          ) -> tuple[list[PreparedRecord], list[bool]]:
    """The records to write, and for each of ``records`` whether it is a duplicate:
    its replay key is in ``seen`` (keys already stored) or on an earlier record."""
    keep, dup, seen = [], [], set(seen)
    for r in records:
        key = r.replay_key
        if key is not None and key in seen:
            dup.append(True)
            continue
        if key is not None:
            seen.add(key)
        keep.append(r)
        dup.append(False)
    return keep, dup


def replay_keys(records: Sequence[PreparedRecord]) -> list[str]:
    return [r.replay_key for r in records if r.replay_key is not None]


def replay_cutoff() -> str:
    """Claimed keys older than this (stored time text) may go."""
    return format_time(datetime.now(timezone.utc) - timedelta(seconds=REPLAY_KEEP_SECONDS))


def chain_rows(server_id: str, head: "Head", records: Sequence[PreparedRecord]
               ) -> tuple[list[tuple], int, str]:
    """The records' table rows linked after ``head``, and the new head's seq and
    hash (the one part of a write that needs the locked head)."""
    prefix = chain.encoding_prefix(server_id)
    link = chain.link_hash
    seq, prev = head.seq, head.hash
    rows = []
    for r in records:
        seq += 1
        h = link(prev, prefix, seq, r.tail)
        rows.append((server_id, seq, r.message_id, r.client, r.service, r.direction,
                     r.side, r.envelope, r.cert_sha256, r.body_sha256, r.created, prev, h))
        prev = h
    return rows, seq, prev


class StoreError(Exception):
    """The store could not do what was asked (the cause is chained)."""


class ConnectionLost(StoreError):
    """The connection was found dead before anything of a batch was sent to be
    committed: nothing was written, so the batch may be retried on a new connection."""


class SqlStore:
    """Dialect-neutral SQL; subclasses give the connection, the binary type, locking."""

    BLOB = "BLOB"
    PARAM = "?"

    def __init__(self) -> None:
        self._certs_stored = KnownCerts()
        self._batches = 0
        self.conn = self._connect()
        self._migrate()

    # -- dialect hooks -----------------------------------------------------------------
    def _connect(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _begin_write(self) -> None:
        """Start a transaction that will write (SQLite: BEGIN IMMEDIATE)."""
        raise NotImplementedError

    def _begin_read(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        self.conn.commit()

    def _rollback(self) -> None:
        try:
            self.conn.rollback()
        except Exception:
            pass

    def _schema_lock(self) -> None:
        """Serialise schema creation between processes (inside the write transaction)."""

    def _lock_head_sql(self) -> str:
        return "SELECT seq, hash, archived_seq, archived_hash FROM chain_head WHERE server_id = ?"

    def _insert_ignore(self, table: str, cols: str, nvals: int) -> str:
        marks = ", ".join(["?"] * nvals)
        return f"INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT DO NOTHING"

    def _table_exists(self, name: str) -> bool:
        raise NotImplementedError

    def _is_disconnect(self, exc: Exception) -> bool:
        """Whether ``exc`` means the connection itself is gone (server restarted)."""
        return False

    # -- plumbing ----------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return text if self.PARAM == "?" else text.replace("?", self.PARAM)

    def _exec(self, cur, sql: str, params: Sequence = ()) -> None:
        cur.execute(self._sql(sql), tuple(params))

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass

    def _migrate(self) -> None:
        self._begin_write()
        try:
            self._schema_lock()
            cur = self.conn.cursor()
            if not self._table_exists("schema_version"):
                self._exec(cur, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
            self._exec(cur, "SELECT MAX(version) FROM schema_version")
            current = cur.fetchone()[0] or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"message log schema version {current} is newer than this server "
                    f"knows ({SCHEMA_VERSION}): upgrade tunduk")
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for stmt in statements:
                    self._exec(cur, stmt.replace("{BLOB}", self.BLOB))
                self._exec(cur, "INSERT INTO schema_version (version) VALUES (?)", (version,))
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def schema_version(self) -> int:
        cur = self.conn.cursor()
        self._begin_read()
        try:
            self._exec(cur, "SELECT MAX(version) FROM schema_version")
            return int(cur.fetchone()[0])
        finally:
            self._end_read()

    def _end_read(self) -> None:
        self._rollback()

    def _lock_head(self, cur, server_id: str) -> Head:
        """Lock and read the chain head row (inside a write transaction).

        The row exists after the chain's first write, so it is read first and only
        created (insert-ignore, then read again) when missing.
        """
        self._exec(cur, self._lock_head_sql(), (server_id,))
        row = cur.fetchone()
        if row is None:
            self._exec(cur, self._insert_ignore(
                "chain_head", "server_id, seq, hash, archived_seq, archived_hash", 5),
                (server_id, 0, chain.GENESIS, 0, chain.GENESIS))
            self._exec(cur, self._lock_head_sql(), (server_id,))
            row = cur.fetchone()
        seq, h, aseq, ahash = row
        return Head(int(seq), h, int(aseq), ahash)

    # -- writes ------------------------------------------------------------------------
    _INSERT_RECORD = ("INSERT INTO records (server_id, seq, message_id, client, service, "
                      "direction, side, envelope, cert_sha256, body_sha256, created, "
                      "prev_hash, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)")

    def append(self, server_id: str, records: Sequence[LogRecord]) -> list[Optional[int]]:
        """Chain and insert ``records`` in one transaction; return their seqs (None for
        a record whose replay key is already stored: it is not written)."""
        return self.append_prepared(server_id, [PreparedRecord.of(r) for r in records])

    def append_prepared(self, server_id: str,
                        records: Sequence["PreparedRecord"]) -> list[Optional[int]]:
        """:meth:`append` for records whose chain-independent part is already encoded."""
        try:
            try:
                cur = self.conn.cursor()
                head = self._begin_and_lock_head(cur, server_id)
            except Exception as exc:
                if self._is_disconnect(exc):
                    raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
                raise
            stored = self.claim_replay_keys(cur, replay_keys(records))
            keep, dup = without_duplicates(records, stored)
            new_certs = self._certs_stored.missing(keep)
            rows, seq, last = chain_rows(server_id, head, keep)
            self._write_and_commit(cur, server_id, list(new_certs.items()), rows, seq, last)
        except BaseException:
            self._rollback()
            raise
        self._certs_stored.committed(new_certs)
        seqs = iter(row[1] for row in rows)
        return [None if d else next(seqs) for d in dup]

    def probe_write(self, at: str) -> None:
        """Write and commit one small row: raises what a record's commit would raise
        now (a full disk, a read-only database, a lost connection)."""
        try:
            cur = self.conn.cursor()
            self._begin_write()
            self._exec(cur, "UPDATE health_probe SET at = ? WHERE id = 1", (at,))
            self._commit()
        except BaseException:
            self._rollback()
            raise

    def claim_replay_keys(self, cur, keys: list[str]) -> set:
        """Claim ``keys`` in this transaction; the ones claimed before (duplicates).
        A unique key table, not a lookup: a concurrent claim of the same key by
        another chain's writer waits for this transaction and then finds it."""
        self._batches += 1
        if self._batches % PRUNE_EVERY == 0:
            self._exec(cur, PRUNE_REPLAY_KEYS_SQL, (replay_cutoff(),))
        if not keys:
            return set()
        now = format_time(datetime.now(timezone.utc))
        seen = set()
        for key in dict.fromkeys(keys):
            self._exec(cur, self._insert_ignore("replay_keys", "replay_key, seen", 2),
                       (key, now))
            if cur.rowcount == 0:
                seen.add(key)
        return seen

    def _begin_and_lock_head(self, cur, server_id: str) -> Head:
        self._begin_write()
        return self._lock_head(cur, server_id)

    def _write_and_commit(self, cur, server_id: str, certs: list[tuple[str, bytes]],
                          rows: list[tuple], seq: int, head_hash: str) -> None:
        """Insert certificates and records, move the chain head, commit."""
        if certs:
            cur.executemany(self._sql(self._insert_ignore("certs", "sha256, der", 2)), certs)
        cur.executemany(self._sql(self._INSERT_RECORD), rows)
        self._exec(cur, "UPDATE chain_head SET seq = ?, hash = ? WHERE server_id = ?",
                   (seq, head_hash, server_id))
        self._commit()

    def add_timestamp(self, server_id: str, first_seq: int, last_seq: int, chain_hash: str,
                      token: bytes, stamped_at: datetime) -> bool:
        """Store a token unless another process already covered ``last_seq``."""
        self._begin_write()
        try:
            cur = self.conn.cursor()
            self._lock_head(cur, server_id)
            self._exec(cur, "SELECT MAX(last_seq) FROM timestamps WHERE server_id = ?",
                       (server_id,))
            covered = cur.fetchone()[0]
            if covered is not None and int(covered) >= last_seq:
                self._rollback()
                return False
            self._exec(cur, "INSERT INTO timestamps (server_id, first_seq, last_seq, "
                       "chain_hash, token, stamped_at) VALUES (?,?,?,?,?,?)",
                       (server_id, first_seq, last_seq, chain_hash, bytes(token),
                        format_time(stamped_at)))
            self._commit()
            return True
        except BaseException:
            self._rollback()
            raise

    def remove_archived(self, server_id: str, last_seq: int, last_hash: str) -> int:
        """Drop records up to ``last_seq`` (already archived and verified) and their
        timestamps; remember ``last_hash`` so the live chain stays verifiable."""
        self._begin_write()
        try:
            cur = self.conn.cursor()
            head = self._lock_head(cur, server_id)
            self._exec(cur, "SELECT hash FROM records WHERE server_id = ? AND seq = ?",
                       (server_id, last_seq))
            row = cur.fetchone()
            if row is None or row[0] != last_hash or last_seq <= head.archived_seq:
                raise StoreError(f"cannot remove records up to seq {last_seq}: the live "
                                 "store no longer matches the archive")
            self._exec(cur, "DELETE FROM records WHERE server_id = ? AND seq <= ?",
                       (server_id, last_seq))
            n = cur.rowcount
            self._exec(cur, "DELETE FROM timestamps WHERE server_id = ? AND last_seq <= ?",
                       (server_id, last_seq))
            self._exec(cur, "UPDATE chain_head SET archived_seq = ?, archived_hash = ? "
                       "WHERE server_id = ?", (last_seq, last_hash, server_id))
            self._commit()
            return n
        except BaseException:
            self._rollback()
            raise

    # -- reads -------------------------------------------------------------------------
    def head(self, server_id: str) -> Head:
        self._begin_read()
        try:
            cur = self.conn.cursor()
            self._exec(cur, "SELECT seq, hash, archived_seq, archived_hash FROM chain_head "
                       "WHERE server_id = ?", (server_id,))
            row = cur.fetchone()
        finally:
            self._end_read()
        if row is None:
            return Head(0, chain.GENESIS, 0, chain.GENESIS)
        return Head(int(row[0]), row[1], int(row[2]), row[3])

    def _row(self, row) -> StoredRecord:
        return StoredRecord(row[0], int(row[1]), row[2], row[3], row[4], row[5], row[6],
                            bytes(row[7]), bytes(row[8]) if row[8] is not None else b"",
                            row[9], parse_time(row[10]), row[11], row[12])

    def records(self, server_id: str, first_seq: int = 0, last_seq: Optional[int] = None,
                chunk: int = 500) -> Iterator[StoredRecord]:
        """Records in seq order, read in chunks (so long chains need little memory)."""
        after = first_seq - 1
        while True:
            sql = (f"SELECT {_RECORD_COLS} FROM records r LEFT JOIN certs c "
                   "ON c.sha256 = r.cert_sha256 WHERE r.server_id = ? AND r.seq > ?")
            params: list = [server_id, after]
            if last_seq is not None:
                sql += " AND r.seq <= ?"
                params.append(last_seq)
            sql += f" ORDER BY r.seq LIMIT {int(chunk)}"
            self._begin_read()
            try:
                cur = self.conn.cursor()
                self._exec(cur, sql, params)
                rows = cur.fetchall()
            finally:
                self._end_read()
            if not rows:
                return
            for row in rows:
                yield self._row(row)
            after = int(rows[-1][1])

    def search(self, server_id: str, message_id: Optional[str] = None,
               client: Optional[str] = None, service: Optional[str] = None,
               since: Optional[datetime] = None, until: Optional[datetime] = None,
               limit: int = 1000) -> list[StoredRecord]:
        sql = (f"SELECT {_RECORD_COLS} FROM records r LEFT JOIN certs c "
               "ON c.sha256 = r.cert_sha256 WHERE r.server_id = ?")
        params: list = [server_id]
        for col, val in (("message_id", message_id), ("client", client),
                         ("service", service)):
            if val is not None:
                sql += f" AND r.{col} = ?"
                params.append(val)
        if since is not None:
            sql += " AND r.created >= ?"
            params.append(format_time(since))
        if until is not None:
            sql += " AND r.created < ?"
            params.append(format_time(until))
        sql += f" ORDER BY r.seq LIMIT {int(limit)}"
        self._begin_read()
        try:
            cur = self.conn.cursor()
            self._exec(cur, sql, params)
            return [self._row(r) for r in cur.fetchall()]
        finally:
            self._end_read()

    def _scalar(self, sql: str, params: Sequence):
        self._begin_read()
        try:
            cur = self.conn.cursor()
            self._exec(cur, sql, params)
            row = cur.fetchone()
            return None if row is None else row[0]
        finally:
            self._end_read()

    def count(self, server_id: str) -> int:
        return int(self._scalar("SELECT COUNT(*) FROM records WHERE server_id = ?",
                                (server_id,)))

    def last_seq_before(self, server_id: str, until: datetime) -> int:
        """The highest seq logged before ``until`` (0 if none)."""
        v = self._scalar("SELECT MAX(seq) FROM records WHERE server_id = ? AND created < ?",
                         (server_id, format_time(until)))
        return int(v or 0)

    def record_hash_at(self, server_id: str, seq: int) -> Optional[str]:
        return self._scalar("SELECT hash FROM records WHERE server_id = ? AND seq = ?",
                            (server_id, seq))

    def unstamped(self, server_id: str, limit: int) -> Optional[tuple[int, int, str]]:
        """(first_seq, last_seq, hash of last_seq) of records no timestamp covers yet."""
        head = self.head(server_id)
        covered = self._scalar("SELECT MAX(last_seq) FROM timestamps WHERE server_id = ?",
                               (server_id,))
        first = max(int(covered or 0), head.archived_seq) + 1
        if head.seq < first:
            return None
        last = min(head.seq, first + max(1, limit) - 1)
        h = self.record_hash_at(server_id, last)
        if h is None:
            return None
        return first, last, h

    def timestamps(self, server_id: str, first_seq: int = 0,
                   last_seq: Optional[int] = None) -> list[Timestamp]:
        """Timestamps whose range overlaps [first_seq, last_seq], in order."""
        sql = ("SELECT server_id, first_seq, last_seq, chain_hash, token, stamped_at "
               "FROM timestamps WHERE server_id = ? AND last_seq >= ?")
        params: list = [server_id, first_seq]
        if last_seq is not None:
            sql += " AND first_seq <= ?"
            params.append(last_seq)
        sql += " ORDER BY last_seq"
        self._begin_read()
        try:
            cur = self.conn.cursor()
            self._exec(cur, sql, params)
            rows = cur.fetchall()
        finally:
            self._end_read()
        return [Timestamp(r[0], int(r[1]), int(r[2]), r[3], bytes(r[4]), parse_time(r[5]))
                for r in rows]

    def last_timestamp(self, server_id: str) -> Optional[Timestamp]:
        """The newest timestamp (one row: health checks call this often)."""
        self._begin_read()
        try:
            cur = self.conn.cursor()
            self._exec(cur, "SELECT server_id, first_seq, last_seq, chain_hash, token, "
                       "stamped_at FROM timestamps WHERE server_id = ? "
                       "ORDER BY last_seq DESC LIMIT 1", (server_id,))
            r = cur.fetchone()
        finally:
            self._end_read()
        if r is None:
            return None
        return Timestamp(r[0], int(r[1]), int(r[2]), r[3], bytes(r[4]), parse_time(r[5]))
