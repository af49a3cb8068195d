"""Group commit on the event loop: what every loop writer shares (LoopQueue), and the
SQLite writer, which commits on the loop thread itself.

Why: with the threaded GroupWriter, the loop thread and the writer thread share the
GIL, and every sqlite3 call on the writer releases and retakes it; on a busy loop each
retake waits for the loop to let go (fifth session: 15 % of the provider's GIL time).
Here the records queued during one turn of the loop are committed in one transaction
on the loop, right after that turn, with the usual ``synchronous = FULL`` (the WAL is
fsynced inside COMMIT): no other thread, no hand-over, and a record's future is
resolved only after the COMMIT that made it durable returned.

The loop does nothing else while SQLite fsyncs (a few hundred microseconds on an SSD;
now and then a WAL checkpoint, a few milliseconds), and a disk that stops answering
stops the loop; the CPU is free for the other processes meanwhile.  Measured on the
2-core benchmark machine against an fsync on a helper thread (WAL with ``synchronous
= NORMAL``, the thread fsyncing the WAL file and waking the loop): 3.46 against 3.86
ms of CPU per exchange, 321 against 293 exchanges/s.  On slow storage run more worker
processes than cores, so that one worker's fsync does not leave its core idle.

Another connection holding the write lock (a worker process, the writer thread of
this process, ``tunduk log`` maintenance) does not block the loop: the connection
never waits for the lock, not even when it is opened, and a busy batch is retried
shortly.  Every record has a deadline, ``commit_timeout`` after it was submitted:
a record not committed by then fails, however many batches were ahead of it.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Callable, Optional

from .record import LogRecord, duplicate_answer
from .store import ConnectionLost, PreparedRecord
from .writer import admit

log = logging.getLogger(__name__)

_RETRY_FIRST, _RETRY_MAX = 0.0005, 0.01   # s between tries while another writer commits
CLOSE_WAIT = 5.0     # s a closing writer still tries to commit what is queued


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the database's write lock (retry later)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)   # may be an extended code
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "database is locked" in str(exc)


class _Entry:
    __slots__ = ("record", "future", "deadline")

    def __init__(self, record: PreparedRecord, future: asyncio.Future,
                 deadline: float) -> None:
        self.record, self.future, self.deadline = record, future, deadline


class LoopQueue:
    """What every event-loop writer shares: records queued by ``submit`` on the loop's
    thread (the only thread that may call these methods), futures resolved once the
    batch holding them is committed (None) or failed (the reason), and a deadline per
    record."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server_id: str, *,
                 max_batch: int = 200, commit_timeout: float = 60.0) -> None:
        self.loop = loop
        self.server_id = server_id
        self.max_batch = max_batch
        self.commit_timeout = commit_timeout
        self._waiting: list[_Entry] = []
        self._closed = False
        self.committed = 0
        self.batches = 0
        self.last_error: Optional[str] = None

    def submit(self, record: LogRecord) -> asyncio.Future:
        """Queue ``record``; the future's result is None once it is committed, or the
        reason it is not (the caller turns that into MessageLogFailed)."""
        prepared = admit(record, self._closed)
        future = self.loop.create_future()
        self._waiting.append(_Entry(prepared, future,
                                    time.monotonic() + self.commit_timeout))
        self._wake()
        return future

    def _wake(self) -> None:
        """Make sure a flush of ``_waiting`` follows (after this turn of the loop)."""
        raise NotImplementedError

    def _take(self) -> list[_Entry]:
        """The next batch, after failing the records whose deadline has passed."""
        now = time.monotonic()
        if self._waiting and self._waiting[0].deadline <= now:
            expired = [e for e in self._waiting if e.deadline <= now]
            self._waiting = [e for e in self._waiting if e.deadline > now]
            self._failed(expired, self._timeout_error())
        batch = self._waiting[:self.max_batch]
        del self._waiting[:self.max_batch]
        return batch

    def _timeout_error(self) -> TimeoutError:
        return TimeoutError(f"not committed within {self.commit_timeout:g} s")

    def _succeeded(self, batch: list[_Entry], seqs: Optional[list] = None) -> None:
        """The batch is committed; ``seqs``: None for a record not written as a
        duplicate (its future says so)."""
        self.committed += len(batch)
        self.batches += 1
        self.last_error = None           # writes work (again)
        for i, e in enumerate(batch):
            if not e.future.done():
                e.future.set_result(duplicate_answer() if seqs is not None and
                                    seqs[i] is None else None)

    def _failed(self, batch: list[_Entry], exc: BaseException) -> None:
        msg = f"message log write failed, message not logged: {type(exc).__name__}: {exc}"
        log.error("%s", msg)
        self.last_error = msg
        for e in batch:
            if not e.future.done():
                e.future.set_result(msg)

    async def aclose(self) -> None:
        """Commit what is queued (for up to CLOSE_WAIT seconds), then close; the
        engine calls this when it stops."""
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class SqliteLoopWriter(LoopQueue):
    """Commits SQLite records on the loop itself (see the module's docstring).
    ``store_factory`` must open a store that never waits for a lock."""

    def __init__(self, loop: asyncio.AbstractEventLoop, store_factory: Callable[[], object],
                 server_id: str, *, max_batch: int = 200,
                 commit_timeout: float = 60.0) -> None:
        super().__init__(loop, server_id, max_batch=max_batch,
                         commit_timeout=commit_timeout)
        self._store_factory = store_factory
        self._store = None
        self._flush_handle: Optional[asyncio.Handle] = None
        self._retry = _RETRY_FIRST

    def _wake(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        while self._waiting:
            batch = self._take()
            if not batch:
                return
            try:
                seqs = self._append([e.record for e in batch])
            except Exception as exc:
                if is_busy(exc):          # not the store's fault: keep it, try again
                    self._waiting[:0] = batch
                    self._flush_handle = self.loop.call_later(self._retry, self._flush)
                    self._retry = min(self._retry * 2, _RETRY_MAX)
                    return
                self._drop_store()
                self._failed(batch, exc)
                continue
            self._retry = _RETRY_FIRST
            self._succeeded(batch, seqs)

    def _append(self, records: list[PreparedRecord]) -> list:
        if self._store is None:
            self._store = self._store_factory()
        try:
            return self._store.append_prepared(self.server_id, records)
        except ConnectionLost:
            self._drop_store()
            self._store = self._store_factory()
            return self._store.append_prepared(self.server_id, records)

    def _drop_store(self) -> None:
        """Reconnect next time: the connection may be the broken part."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def close(self) -> None:
        """Commit what is still queued, waiting up to CLOSE_WAIT seconds for the lock
        (this blocks: call it when the loop serves no more requests), then close."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        waiting, self._waiting = self._waiting, []
        try:
            if waiting:
                self._succeeded(waiting, self._append_blocking([e.record for e in waiting]))
        except Exception as exc:
            self._failed(waiting, exc)
        finally:
            self._drop_store()

    def _append_blocking(self, records: list[PreparedRecord]) -> list:
        deadline = time.monotonic() + CLOSE_WAIT
        while True:
            try:
                return self._append(records)
            except Exception as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(_RETRY_MAX)
