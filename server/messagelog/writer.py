"""Group commit: one writer thread commits queued records in batches.

Callers of :meth:`GroupWriter.log` block until the batch holding their record is
committed (one transaction, up to ``max_batch`` records or whatever was queued), and
get XRoadError(MLOG_FAILED) if it was not: the message log fails closed.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Optional

from ..core.errors import MLOG_FAILED, XRoadError
from .record import LogRecord

log = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("record", "done", "error", "seq")

    def __init__(self, record: LogRecord) -> None:
        self.record = record
        self.done = threading.Event()
        self.error: Optional[str] = None
        self.seq: Optional[int] = None


class GroupWriter:
    def __init__(self, store_factory: Callable[[], object], server_id: str,
                 max_batch: int = 200, commit_timeout: float = 60.0) -> None:
        self._store_factory = store_factory
        self._store = None
        self.server_id = server_id
        self.max_batch = max_batch
        self.commit_timeout = commit_timeout
        self._queue: "queue.Queue[Optional[_Pending]]" = queue.Queue()
        self._closed = False
        self.last_error: Optional[str] = None
        self.committed = 0
        self._thread = threading.Thread(target=self._run, name="messagelog-writer",
                                        daemon=True)
        self._thread.start()

    def log(self, record: LogRecord) -> int:
        """Queue ``record``, wait for its commit, return its seq."""
        if self._closed:
            raise XRoadError(MLOG_FAILED, "message log is closed")
        p = _Pending(record)
        self._queue.put(p)
        if not p.done.wait(self.commit_timeout):
            raise XRoadError(MLOG_FAILED, f"message log did not commit the record within "
                                          f"{self.commit_timeout:.0f} s")
        if p.error is not None:
            raise XRoadError(MLOG_FAILED, p.error)
        assert p.seq is not None
        return p.seq

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                break
        if self._store is not None:
            self._store.close()
            self._store = None

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            if self._store is None:
                self._store = self._store_factory()
            seqs = self._store.append(self.server_id, [p.record for p in batch])
        except Exception as exc:
            msg = f"message log write failed, message not logged: {type(exc).__name__}: {exc}"
            log.error("%s", msg)
            self.last_error = msg
            # Reconnect next time: the connection may be the broken part.
            if self._store is not None:
                self._store.close()
                self._store = None
            for p in batch:
                p.error = msg
                p.done.set()
            return
        self.committed += len(batch)
        for p, seq in zip(batch, seqs):
            p.seq = seq
            p.done.set()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=self.commit_timeout)
