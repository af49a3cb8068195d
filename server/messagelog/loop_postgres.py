"""Group commit for PostgreSQL on the event loop, over one asynchronous psycopg2
connection: no writer thread, so no hand-over of the GIL per batch.

A batch costs the two round trips of the blocking store (``BEGIN; SELECT … FOR
UPDATE`` for the chain head, then every insert, the head update and the ``COMMIT`` in
one statement string, postgres.py); while they travel the loop serves other requests,
and the records those log queue up for the next batch: one batch in flight at a time.
Each record must be committed within ``commit_timeout`` of its submission (a batch is
given what is left of its oldest record's time); when that runs out the batch fails
closed and its connection is dropped (the server aborts its transaction).  Any failure
drops the connection; the next batch connects again, within ``connect_timeout`` (libpq
does not bound a non-blocking connect itself; a host name is resolved on the loop's
resolver, not by libpq, which would block).  When the connection is found dead at the
first round trip of a batch (the database restarted), nothing was written and the
batch is retried once on a new connection.
"""
from __future__ import annotations

import asyncio
import ipaddress
import time
from datetime import datetime, timezone
from typing import Optional

import psycopg2
import psycopg2.extensions as pgext

from . import chain
from .loop_writer import CLOSE_WAIT, LoopQueue
from .postgres import LOCK_HEAD_SQL, batch_sql
from .record import format_time
from .store import (PRUNE_EVERY, PRUNE_REPLAY_KEYS_SQL, Head, KnownCerts, PreparedRecord, chain_rows,
                    replay_cutoff, replay_keys, without_duplicates)

_CREATE_HEAD_SQL = ("INSERT INTO chain_head (server_id, seq, hash, archived_seq, "
                    "archived_hash) VALUES (%s, 0, %s, 0, %s) ON CONFLICT DO NOTHING; "
                    + LOCK_HEAD_SQL)


class PostgresLoopWriter(LoopQueue):
    def __init__(self, loop: asyncio.AbstractEventLoop, dsn: str, server_id: str, *,
                 max_batch: int = 200, commit_timeout: float = 60.0,
                 connect_timeout: float = 10.0) -> None:
        super().__init__(loop, server_id, max_batch=max_batch,
                         commit_timeout=commit_timeout)
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._conn = None
        self._known = KnownCerts()
        self._batches = 0
        self._task: Optional[asyncio.Task] = None
        self._watched: Optional[int] = None     # fd a _wait has registered with the loop

    def _wake(self) -> None:
        if self._task is None:
            self._task = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._take()
                if not batch:
                    return
                left = min(e.deadline for e in batch) - time.monotonic()
                try:
                    async with asyncio.timeout(max(left, 0.0)):
                        seqs = await self._commit([e.record for e in batch])
                except TimeoutError:
                    self._drop_connection()
                    self._failed(batch, self._timeout_error())
                except Exception as exc:
                    self._drop_connection()
                    self._failed(batch, exc)
                except BaseException:            # cancelled: nobody is left hanging
                    self._drop_connection()
                    self._failed(batch, RuntimeError("the message log was closed"))
                    raise
                else:
                    self._succeeded(batch, seqs)
        finally:
            self._task = None

    async def _commit(self, records: list[PreparedRecord]) -> list:
        """Commit ``records``; a list with None for each one not written as a
        duplicate (see store.without_duplicates)."""
        fresh = self._conn is None
        conn = await self._connection()
        try:
            row = await self._query(conn, "BEGIN; " + LOCK_HEAD_SQL, (self.server_id,))
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            if fresh or not conn.closed:
                raise
            # Dead before anything was written: once more on a new connection.
            self._drop_connection()
            conn = await self._connection()
            row = await self._query(conn, "BEGIN; " + LOCK_HEAD_SQL, (self.server_id,))
        if row is None:        # the chain's first write
            row = await self._query(conn, _CREATE_HEAD_SQL, (
                self.server_id, chain.GENESIS, chain.GENESIS, self.server_id))
        head = Head(int(row[0]), row[1], int(row[2]), row[3])
        keys = list(dict.fromkeys(replay_keys(records)))
        seen: set = set()
        cur = conn.cursor()
        self._batches += 1
        if self._batches % PRUNE_EVERY == 0:
            await self._execute(conn, cur, PRUNE_REPLAY_KEYS_SQL.replace("?", "%s"),
                                (replay_cutoff(),))
        if keys:     # claimed once for the database (store.claim_replay_keys)
            await self._execute(
                conn, cur, "INSERT INTO replay_keys (replay_key, seen) SELECT k, %s "
                "FROM unnest(%s::text[]) AS k ON CONFLICT DO NOTHING RETURNING replay_key",
                (format_time(datetime.now(timezone.utc)), keys))
            seen = set(keys) - {r[0] for r in cur.fetchall()}
        keep, dup = without_duplicates(records, seen)
        new_certs = self._known.missing(keep)
        rows, seq, last = chain_rows(self.server_id, head, keep)
        await self._execute(conn, cur, batch_sql(cur, self.server_id,
                                                 list(new_certs.items()), rows, seq, last))
        self._known.committed(new_certs)
        seqs = iter(r[1] for r in rows)
        return [None if d else next(seqs) for d in dup]

    async def _connection(self):
        if self._conn is not None and not self._conn.closed:
            return self._conn
        self._drop_connection()
        conn = None
        try:
            async with asyncio.timeout(self.connect_timeout):
                params = await self._resolved()
                conn = psycopg2.connect(**params, async_=True)
                await self._wait(conn)
                (mode,) = await self._query(conn, "SHOW synchronous_commit")
                if str(mode).lower() == "off":
                    # A logged message is released only once its record is durable.
                    await self._query(conn, "SET synchronous_commit = on")
        except BaseException as exc:
            self._forget_fd()
            if conn is not None:
                conn.close()
            if isinstance(exc, TimeoutError):
                raise psycopg2.OperationalError(
                    f"could not connect to the database within "
                    f"{self.connect_timeout:g} s") from None
            raise
        self._conn, self._known = conn, KnownCerts()
        return conn

    async def _resolved(self) -> dict:
        """The DSN's parameters, a single host name resolved by the loop (as
        ``hostaddr``, ``host`` kept for TLS and passwords) so that libpq need not."""
        params = pgext.parse_dsn(self.dsn)
        host = params.get("host")
        if host and "hostaddr" not in params and "," not in host \
                and not host.startswith("/"):
            try:
                ipaddress.ip_address(host)
            except ValueError:
                infos = await self.loop.getaddrinfo(host, int(params.get("port") or 5432),
                                                    type=1)   # SOCK_STREAM
                params["hostaddr"] = infos[0][4][0]
        return params

    async def _query(self, conn, sql: str, params=None) -> Optional[tuple]:
        """Run ``sql``; the first row of its last result, if it has one."""
        cur = conn.cursor()
        await self._execute(conn, cur, sql, params)
        return cur.fetchone() if cur.description is not None else None

    async def _execute(self, conn, cur, sql, params=None) -> None:
        cur.execute(sql, params)
        await self._wait(conn)

    async def _wait(self, conn) -> None:
        """Poll ``conn`` until its operation is done, sleeping on the loop meanwhile."""
        loop = self.loop
        while True:
            state = conn.poll()
            if state == pgext.POLL_OK:
                return
            if state not in (pgext.POLL_READ, pgext.POLL_WRITE):
                raise psycopg2.OperationalError(f"unexpected poll state {state}")
            ready = loop.create_future()
            fd = conn.fileno()
            reading = state == pgext.POLL_READ
            (loop.add_reader if reading else loop.add_writer)(fd, _set, ready)
            self._watched = fd
            try:
                await ready
            finally:
                self._forget_fd(reading)

    def _forget_fd(self, reading: Optional[bool] = None) -> None:
        """Unregister the fd a _wait watches (once: after close its number may be
        reused)."""
        fd, self._watched = self._watched, None
        if fd is None or self.loop.is_closed():
            return
        if reading is not False:
            self.loop.remove_reader(fd)
        if reading is not True:
            self.loop.remove_writer(fd)

    def _drop_connection(self) -> None:
        """Close the connection; a transaction it had open is aborted by the server."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._forget_fd()
            try:
                conn.close()
            except Exception:
                pass

    async def aclose(self) -> None:
        """Let the batch in flight and what is queued commit for up to CLOSE_WAIT
        seconds, then close (what is left fails)."""
        self._closed = True
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_WAIT)
            except Exception:
                pass
        self.close()

    def close(self) -> None:
        """Close at once: queued records fail; a batch in flight fails when its task
        next runs (its connection is closed now)."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        waiting, self._waiting = self._waiting, []
        if waiting:
            self._failed(waiting, RuntimeError("the message log was closed"))
        self._drop_connection()


def _set(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
