"""Group commit: one writer thread commits queued records in batches.

Callers of :meth:`GroupWriter.log` block until the batch holding their record is
committed (one transaction, up to ``max_batch`` records or whatever was queued), and
get XRoadError(MLOG_FAILED) if it was not: the message log fails closed.

The writer thread holds the GIL as little as it can: each caller prepares its own
record (hashes, time text, the chain-independent part of the encoding) before
queueing it, the queue is the C ``SimpleQueue``, and a waiting caller sleeps on a
plain lock that the writer releases (no Event/Condition machinery per record).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional

from ..core.errors import MLOG_FAILED, XRoadError
from .record import LogRecord, duplicate_answer
from .store import ConnectionLost, PreparedRecord

log = logging.getLogger(__name__)


def admit(record: LogRecord, closed: bool) -> PreparedRecord:
    """``record`` prepared for a writer's queue (on the caller's thread); refused with
    MLOG_FAILED when the writer is closed or the record malformed (fail closed)."""
    if closed:
        raise XRoadError(MLOG_FAILED, "message log is closed")
    try:
        return PreparedRecord.of(record)
    except Exception as exc:
        raise XRoadError(MLOG_FAILED, f"message log record rejected: {exc}") from exc


#: ``on_done(seq, error)``: called from the writer thread once the record's batch is
#: committed (error None) or failed (seq None).
OnDone = Callable[[Optional[int], Optional[str]], None]


class _Pending:
    __slots__ = ("record", "lock", "error", "seq", "on_done")

    def __init__(self, record: PreparedRecord, on_done: Optional[OnDone] = None) -> None:
        self.record = record
        self.on_done = on_done
        self.lock = threading.Lock()
        self.lock.acquire()          # released by the writer when the batch is done
        self.error: Optional[str] = None
        self.seq: Optional[int] = None

    def settle(self) -> None:
        self.lock.release()
        if self.on_done is not None:
            try:
                self.on_done(self.seq, self.error)
            except Exception:            # the waiter's problem, not the batch's
                log.exception("message log completion callback failed")


class GroupWriter:
    def __init__(self, store_factory: Callable[[], object], server_id: str,
                 max_batch: int = 200, commit_timeout: float = 60.0,
                 group_wait: float = 0.0) -> None:
        self._store_factory = store_factory
        self._store = None
        self.server_id = server_id
        self.max_batch = max_batch
        self.commit_timeout = commit_timeout
        # Seconds to wait for more records before committing a batch smaller than the
        # number of callers waiting (0: commit whatever is queued at once).
        self.group_wait = group_wait
        self._queue: "queue.SimpleQueue[Optional[_Pending]]" = queue.SimpleQueue()
        self._closed = False
        self.last_error: Optional[str] = None
        self.last_error_time: Optional[float] = None   # time.time() of last_error
        self.committed = 0
        self.batches = 0
        self._last_batch = 0
        self._thread = threading.Thread(target=self._run, name="messagelog-writer",
                                        daemon=True)
        self._thread.start()

    def log(self, record: LogRecord) -> int:
        """Queue ``record``, wait for its commit, return its seq."""
        p = self._enqueue(record, None)
        if not p.lock.acquire(timeout=self.commit_timeout):
            raise XRoadError(MLOG_FAILED, f"message log did not commit the record within "
                                          f"{self.commit_timeout:.0f} s")
        if p.error is not None:
            raise XRoadError(MLOG_FAILED, p.error)
        assert p.seq is not None
        return p.seq

    def submit(self, record: LogRecord, on_done: OnDone) -> None:
        """Queue ``record`` without waiting: ``on_done(seq, error)`` follows from the
        writer thread (an event loop's edge turns it into a future)."""
        self._enqueue(record, on_done)

    def _enqueue(self, record: LogRecord, on_done: Optional[OnDone]) -> _Pending:
        p = _Pending(admit(record, self._closed), on_done)
        self._queue.put(p)
        return p

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        while True:
            first = get()
            if first is None:
                break
            batch = [first]
            stop = False
            deadline = None
            while len(batch) < self.max_batch:
                try:
                    nxt = get_nowait()
                except queue.Empty:
                    # Wait only under concurrency (the last batch had company): a lone
                    # caller never waits.
                    if self.group_wait <= 0 or self._last_batch < 2:
                        break
                    if deadline is None:
                        deadline = time.monotonic() + self.group_wait
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        nxt = get(timeout=left)
                    except queue.Empty:
                        break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._last_batch = len(batch)
            self._commit(batch)
            if stop:
                break
        if self._store is not None:
            self._store.close()
            self._store = None

    def _commit(self, batch: list[_Pending]) -> None:
        records = [p.record for p in batch]
        try:
            if self._store is None:
                self._store = self._store_factory()
            try:
                seqs = self._store.append_prepared(self.server_id, records)
            except ConnectionLost:
                # The database restarted since this connection was last used; nothing
                # of the batch was written, so one retry on a new connection is safe.
                self._store.close()
                self._store = None
                self._store = self._store_factory()
                seqs = self._store.append_prepared(self.server_id, records)
        except Exception as exc:
            msg = f"message log write failed, message not logged: {type(exc).__name__}: {exc}"
            log.error("%s", msg)
            self.last_error = msg
            self.last_error_time = time.time()
            # Reconnect next time: the connection may be the broken part.
            if self._store is not None:
                self._store.close()
                self._store = None
            for p in batch:
                p.error = msg
                p.settle()
            return
        # Writes work again: an old error no longer describes the log.
        self.last_error = None
        self.committed += len(batch)
        self.batches += 1
        for p, seq in zip(batch, seqs):
            p.seq = seq
            if seq is None:
                p.error = duplicate_answer()
            p.settle()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=self.commit_timeout)
