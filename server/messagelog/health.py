"""What an operator's health check sees of the message log: no I/O of its own.

:func:`health` turns ``MessageLog.status()`` and ``check_accepting()`` into one JSON
document and an HTTP status: 200 while the server accepts exchanges, 503 whenever
it would refuse them: time-stamping failed past the grace period, or the log store
cannot be read or written (a full disk).  This is readiness, for load balancers;
``/livez`` says only that the process serves.  Nothing secret is shown: error texts pass through :func:`mask_secrets`.
"""
from __future__ import annotations

import re
from typing import Any

from ..core.errors import XRoadError

_DSN_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_SHOWN = ("backend", "server_id", "records", "last_seq", "archived_seq",
          "last_timestamp_time", "last_timestamped_seq", "timestamping",
          "timestamping_error", "last_error", "read_error", "write_error",
          "committed_by_this_process")


def mask_secrets(text: str) -> str:
    """``text`` with DSN / URL passwords replaced by ``***``."""
    text = _DSN_PASSWORD.sub(r"\1***", text)
    return _URL_PASSWORD.sub(r"\1***@", text)


def _clean(value: Any) -> Any:
    return mask_secrets(value) if isinstance(value, str) else value


def health(message_log) -> tuple[int, dict]:
    """(HTTP status, JSON document) for ``GET /healthz``."""
    try:
        status = message_log.status()
    except Exception as exc:  # status() itself broke: treat as unreachable
        status = {"read_error": f"cannot read the message log status: {exc}"}
    refusing = None
    try:
        message_log.check_accepting()
    except XRoadError as err:
        refusing = f"{err.code}: {err.message}"
    log_doc = {k: _clean(status[k]) for k in _SHOWN if k in status}
    broken = status.get("read_error") or status.get("write_error")
    if refusing is None and broken:
        refusing = f"MessageLogFailed: {broken}"    # every exchange would fail so
    accepting = refusing is None
    degraded = bool(status.get("last_error")) or status.get("timestamping") in (
        "failing", "refusing")
    doc: dict = {"status": "ok" if accepting and not degraded else "failing",
                 "accepting": accepting, "messagelog": log_doc}
    if refusing is not None:
        doc["refusing"] = _clean(refusing)
    return (200 if accepting else 503), doc
