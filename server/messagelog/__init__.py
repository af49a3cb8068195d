"""The message log: every signed message a security server sends or receives, kept
durably in a hash chain and time-stamped, so neither side can later deny it.

The pipeline calls :func:`open_message_log` once and then ``log(record)`` for each
message; ``log`` returns only when the record is committed.  ``check_accepting`` refuses
new messages when time-stamping has failed for longer than the grace period.
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional, Protocol

from ..conf.model import MessageLogConf
from ..core.errors import MLOG_FAILED, XRoadError
from .record import LogRecord, check_record

__all__ = ["LogRecord", "MessageLog", "NullLog", "StoreLog", "open_message_log",
           "store_factory"]


class MessageLog(Protocol):
    enabled: bool       # False: records need not even be built (core/side.py)

    def log(self, record: LogRecord) -> None: ...
    def check_accepting(self) -> None: ...
    def status(self) -> dict: ...
    def close(self) -> None: ...


class NullLog:
    """The message log switched off (backend = "off"): accepts and keeps nothing."""

    enabled = False

    def log(self, record: LogRecord) -> None:
        return None

    def check_accepting(self) -> None:
        return None

    def status(self) -> dict:
        return {"backend": "off"}

    def close(self) -> None:
        return None


def _well_formed(record: LogRecord) -> LogRecord:
    problem = check_record(record)
    if problem:
        raise XRoadError(MLOG_FAILED, f"message log record rejected: {problem}")
    return record


def sqlite_path(conf: MessageLogConf, data_dir: Path) -> Path:
    return Path(conf.path) if conf.path else Path(data_dir) / "messagelog.sqlite3"


def store_factory(conf: MessageLogConf, data_dir: Path) -> Callable[[], object]:
    """A callable that opens a new store connection (one per thread)."""
    if conf.backend == "sqlite":
        from .sqlite import SqliteStore
        path = sqlite_path(conf, data_dir)
        return lambda: SqliteStore(path)
    if conf.backend in ("postgresql", "postgres"):
        if not conf.dsn:
            raise ValueError("message log backend postgresql needs a dsn")
        from .postgres import PostgresStore
        dsn = conf.dsn
        return lambda: PostgresStore(dsn)
    raise ValueError(f"unknown message log backend {conf.backend!r}")


def loop_writer_factory(conf: MessageLogConf, data_dir: Path) -> Callable[..., object]:
    """``factory(loop, server_id, max_batch=, commit_timeout=)``: a writer that commits
    on an event loop (the event-loop engine attaches one)."""
    if conf.backend == "sqlite":
        from .loop_writer import SqliteLoopWriter
        from .sqlite import SqliteStore
        path = sqlite_path(conf, data_dir)
        return lambda loop, server_id, **kw: SqliteLoopWriter(
            loop, lambda: SqliteStore(path, busy_timeout=0, migrate=False), server_id,
            **kw)
    from .loop_postgres import PostgresLoopWriter
    dsn = conf.dsn
    return lambda loop, server_id, **kw: PostgresLoopWriter(loop, dsn, server_id, **kw)


class StoreLog:
    """The message log over a SQL store, with group commit and optional time-stamping."""

    enabled = True

    def __init__(self, conf: MessageLogConf, factory: Callable[[], object], server_id: str,
                 tsa_cert_der: Optional[bytes] = None, max_batch: int = 200,
                 loop_factory: Optional[Callable[..., object]] = None) -> None:
        from .timestamper import Timestamper
        from .tsa_client import TsaClient
        from .writer import GroupWriter

        self.conf = conf
        self.server_id = server_id
        self._factory = factory
        # Open once now so a bad DSN / path or schema problem shows at start-up.
        self._status_store = factory()
        self._status_lock = threading.Lock()
        self.writer = GroupWriter(factory, server_id, max_batch=max_batch)
        self._loop_factory = loop_factory
        self.loop_writer = None     # a LoopQueue while an event loop is attached
        self.timestamper: Optional[Timestamper] = None
        if conf.tsa_url:
            self.timestamper = Timestamper(
                factory, server_id, TsaClient(conf.tsa_url, tsa_cert_der),
                conf.timestamp_interval, conf.timestamp_batch,
                conf.timestamp_failure_grace)
            self.timestamper.start()

    def log(self, record: LogRecord) -> None:
        self.writer.log(_well_formed(record))

    def submit(self, record: LogRecord, on_done) -> None:
        """``log`` without waiting: ``on_done(seq, error)`` follows from the writer
        thread once the record is committed (error None) or not."""
        self.writer.submit(_well_formed(record), on_done)

    def attach_loop(self, loop) -> None:
        """Let records submitted on ``loop`` be committed on it (loop_writer.py,
        loop_postgres.py) instead of by the writer thread, which stays for blocking
        callers."""
        if self._loop_factory is not None and self.loop_writer is None:
            self.loop_writer = self._loop_factory(
                loop, self.server_id, max_batch=self.writer.max_batch,
                commit_timeout=self.writer.commit_timeout)

    async def detach_loop(self) -> None:
        """Commit what the loop queued; later records use the writer thread."""
        writer, self.loop_writer = self.loop_writer, None
        if writer is not None:
            await writer.aclose()

    def submit_on_loop(self, record: LogRecord, loop):
        """A future of ``record``'s commit on ``loop`` (None when it is durable, else
        the reason it is not), or None when no writer is attached to ``loop``."""
        writer = self.loop_writer
        if writer is None or writer.loop is not loop:
            return None
        return writer.submit(_well_formed(record))

    def check_accepting(self) -> None:
        if self.timestamper is not None:
            self.timestamper.check_accepting()

    def status(self) -> dict:
        loop_writer = self.loop_writer
        out: dict = {"backend": self.conf.backend, "server_id": self.server_id,
                     "last_error": self.writer.last_error or (
                         loop_writer.last_error if loop_writer is not None else None),
                     "committed_by_this_process": self.writer.committed + (
                         loop_writer.committed if loop_writer is not None else 0)}
        for attempt in (1, 2):  # a stale connection gets one fresh retry
            try:
                out.update(self._read_status())
                out.pop("read_error", None)
                break
            except Exception as exc:
                with self._status_lock:
                    if self._status_store is not None:
                        self._status_store.close()
                        self._status_store = None
                out["read_error"] = f"cannot read the message log: {exc}"
        if "read_error" not in out:
            try:
                with self._status_lock:
                    self._status_store.probe_write(
                        datetime.now(timezone.utc).isoformat())
            except Exception as exc:
                out["write_error"] = f"cannot write the message log: {exc}"
                out["last_error"] = out["last_error"] or out["write_error"]
        if "read_error" in out:
            out["last_error"] = out["last_error"] or out["read_error"]
        if self.timestamper is None:
            out["timestamping"] = "off"
        else:
            out["timestamping"] = self.timestamper.state()
            if self.timestamper.last_error:
                out["timestamping_error"] = self.timestamper.last_error
                out["last_error"] = out["last_error"] or self.timestamper.last_error
        return out

    def _read_status(self) -> dict:
        out: dict = {}
        with self._status_lock:
            if self._status_store is None:
                self._status_store = self._factory()
            store = self._status_store
            head = store.head(self.server_id)
            # seqs are contiguous and archiving removes a prefix: no COUNT(*) scan
            # (load balancers poll /healthz every few seconds)
            out["records"] = head.seq - head.archived_seq
            out["last_seq"] = head.seq
            out["archived_seq"] = head.archived_seq
            ts = store.last_timestamp(self.server_id)
            out["last_timestamp_time"] = ts.stamped_at.isoformat() if ts else None
            out["last_timestamped_seq"] = ts.last_seq if ts else None
        return out

    def close(self) -> None:
        if self.timestamper is not None:
            self.timestamper.close()
        writer, self.loop_writer = self.loop_writer, None
        if writer is not None:      # still attached: its loop has stopped
            writer.close()
        self.writer.close()
        with self._status_lock:
            if self._status_store is not None:
                self._status_store.close()
                self._status_store = None


def open_message_log(conf: MessageLogConf, data_dir: Path, server_id: str,
                     tsa_cert_der: Optional[bytes] = None) -> MessageLog:
    """The message log the configuration asks for (NullLog when backend == "off").

    Raises XRoadError(MLOG_FAILED) when the store cannot be opened.
    """
    if conf.backend == "off":
        return NullLog()
    try:
        factory = store_factory(conf, data_dir)
        return StoreLog(conf, factory, server_id, tsa_cert_der=tsa_cert_der,
                        loop_factory=loop_writer_factory(conf, data_dir))
    except XRoadError:
        raise
    except Exception as exc:
        raise XRoadError(MLOG_FAILED, f"cannot open the message log "
                                      f"({conf.backend}): {exc}") from exc
