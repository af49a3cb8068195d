"""Group commit for SQLite on the event loop itself.

Why: with the threaded GroupWriter, the loop thread and the writer thread share the
GIL, and every sqlite3 call on the writer releases and retakes it; on a busy loop each
retake waits for the loop to let go (fifth session: 15 % of the provider's GIL time).
Here the records queued during one turn of the loop are committed in one transaction
on the loop, right after that turn, with the usual ``synchronous = FULL`` (the WAL is
fsynced inside COMMIT): no other thread, no hand-over, and a record's future is
resolved only after the COMMIT that made it durable returned.

The loop does nothing else while SQLite fsyncs (a few hundred microseconds on an SSD);
the CPU is free for the other processes meanwhile.  Measured on the 2-core benchmark
machine against an fsync on a helper thread (WAL with ``synchronous = NORMAL``, the
thread fsyncing the WAL file and waking the loop): 3.46 against 3.86 ms of CPU per
exchange, 321 against 293 exchanges/s.  On slow storage run more worker processes
than cores, so that one worker's fsync does not leave its core idle.

Another connection holding the write lock (a worker process, the writer thread of
this process, ``tunduk log`` maintenance) never blocks the loop: the connection has no
busy wait, and a busy batch is retried shortly, failing once it has waited longer than
``commit_timeout``.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Callable, Optional

from ..core.errors import MLOG_FAILED, XRoadError
from .record import LogRecord
from .store import ConnectionLost, PreparedRecord

log = logging.getLogger(__name__)

_RETRY_FIRST, _RETRY_MAX = 0.0005, 0.01   # s between tries while another writer commits


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the database's write lock (retry later)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY,
                                                   sqlite3.SQLITE_LOCKED)
        or "database is locked" in str(exc))


class LoopQueue:
    """What every event-loop writer shares: records queued by ``submit`` on the loop's
    thread (the only thread that may call these methods), futures resolved once the
    batch holding them is committed (None) or failed (the reason)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server_id: str, *,
                 max_batch: int = 200, commit_timeout: float = 60.0) -> None:
        self.loop = loop
        self.server_id = server_id
        self.max_batch = max_batch
        self.commit_timeout = commit_timeout
        self._waiting: list[tuple[PreparedRecord, asyncio.Future]] = []
        self._closed = False
        self.committed = 0
        self.batches = 0
        self.last_error: Optional[str] = None

    def submit(self, record: LogRecord) -> asyncio.Future:
        """Queue ``record``; the future's result is None once it is committed, or the
        reason it is not (the caller turns that into MessageLogFailed)."""
        if self._closed:
            raise XRoadError(MLOG_FAILED, "message log is closed")
        try:
            prepared = PreparedRecord.of(record)
        except Exception as exc:   # a malformed record is not logged: fail closed
            raise XRoadError(MLOG_FAILED, f"message log record rejected: {exc}") from exc
        future = self.loop.create_future()
        self._waiting.append((prepared, future))
        self._wake()
        return future

    def _wake(self) -> None:
        """Make sure a flush of ``_waiting`` follows (after this turn of the loop)."""
        raise NotImplementedError

    def _take(self) -> list[tuple[PreparedRecord, asyncio.Future]]:
        batch = self._waiting[:self.max_batch]
        del self._waiting[:self.max_batch]
        return batch

    def _succeeded(self, batch) -> None:
        self.committed += len(batch)
        self.batches += 1
        self.last_error = None           # writes work (again)
        for _, future in batch:
            if not future.done():
                future.set_result(None)

    def _failed(self, batch, exc: BaseException) -> None:
        if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
            exc = TimeoutError(f"no commit within {self.commit_timeout:.0f} s")
        msg = f"message log write failed, message not logged: {type(exc).__name__}: {exc}"
        log.error("%s", msg)
        self.last_error = msg
        for _, future in batch:
            if not future.done():
                future.set_result(msg)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Commit what is queued, then close (the engine calls this when it stops)."""
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class SqliteLoopWriter(LoopQueue):
    """Commits SQLite records on the loop itself (see the module's docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store_factory: Callable[[], object],
                 server_id: str, *, max_batch: int = 200,
                 commit_timeout: float = 60.0) -> None:
        super().__init__(loop, server_id, max_batch=max_batch,
                         commit_timeout=commit_timeout)
        self._store_factory = store_factory
        self._store = None
        self._flush_handle: Optional[asyncio.Handle] = None
        self._busy_since: Optional[float] = None
        self._retry = _RETRY_FIRST

    def _wake(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        while self._waiting:
            batch = self._take()
            try:
                self._append([r for r, _ in batch])
            except Exception as exc:
                if is_busy(exc) and self._retry_later(batch):
                    return
                self._fail(batch, exc)
                continue
            self._busy_since, self._retry = None, _RETRY_FIRST
            self._succeeded(batch)

    def _append(self, records: list[PreparedRecord]) -> None:
        if self._store is None:
            self._store = self._store_factory()
        try:
            self._store.append_prepared(self.server_id, records)
        except ConnectionLost:
            self._store.close()
            self._store = self._store_factory()
            self._store.append_prepared(self.server_id, records)

    def _retry_later(self, batch) -> bool:
        """Put ``batch`` back and try again shortly; False once it waited too long."""
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        if now - self._busy_since > self.commit_timeout:
            return False
        self._waiting[:0] = batch
        self._flush_handle = self.loop.call_later(self._retry, self._flush)
        self._retry = min(self._retry * 2, _RETRY_MAX)
        return True

    def _fail(self, batch, exc: BaseException) -> None:
        if self._store is not None:     # reconnect next time: it may be the broken part
            self._store.close()
            self._store = None
        self._busy_since, self._retry = None, _RETRY_FIRST
        self._failed(batch, exc)

    def close(self) -> None:
        """Commit what is still queued (waiting for the lock if need be), then close."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiting, self._waiting = self._waiting, []
        try:
            if waiting:
                self._append_blocking([r for r, _ in waiting])
                self._succeeded(waiting)
        except Exception as exc:
            self._fail(waiting, exc)
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    def _append_blocking(self, records: list[PreparedRecord]) -> None:
        deadline = time.monotonic() + self.commit_timeout
        while True:
            try:
                self._append(records)
                return
            except Exception as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(_RETRY_MAX)
