"""What the pipeline hands to the message log: one signed message, as sent or received.

``body_sha256`` is the hex SHA-256 of the exclusive canonical form (exc-c14n, without
comments) of the SOAP ``Body`` element; ``tunduk log verify`` recomputes it from the
stored envelope (it also accepts inclusive c14n, for pipelines that used that).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

DIRECTIONS = ("request", "response")
SIDES = ("client", "server")


@dataclass(frozen=True)
class LogRecord:
    message_id: str          # xroad:id
    client: str              # "KG/GOV/70000002/centre"
    service: str             # "KG/GOV/70000001/registry/getBirthRecord/v1"
    direction: str           # "request" | "response"
    side: str                # "client" (consumer's server) | "server" (provider's server)
    envelope: bytes          # the full signed envelope exactly as sent/received
    signature_cert_der: bytes  # the signer's certificate
    body_sha256: str         # hex
    created: datetime        # UTC, when the pipeline logged it
    #: a received request's replay key (detached.VerifiedMessage.replay_key): the
    #: store refuses a second record with the same key (DuplicateRecord)
    replay_key: Optional[str] = None


@dataclass(frozen=True)
class StoredRecord:
    """A record as the store holds it: the logged fields plus its place in the chain."""

    server_id: str
    seq: int
    message_id: str
    client: str
    service: str
    direction: str
    side: str
    envelope: bytes
    signature_cert_der: bytes
    body_sha256: str
    created: datetime
    prev_hash: str
    hash: str

    @property
    def envelope_sha256(self) -> str:
        return hashlib.sha256(self.envelope).hexdigest()

    @property
    def cert_sha256(self) -> str:
        return hashlib.sha256(self.signature_cert_der).hexdigest()


def format_time(t: datetime) -> str:
    """One fixed text form for a time (UTC, microseconds), so hashes and sorting agree."""
    if t.tzinfo is None:
        raise ValueError("message log times must be timezone-aware (UTC)")
    if t.utcoffset():
        t = t.astimezone(timezone.utc)
    # = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for years 1000-9999, formatted directly
    # (cheaper; once per logged message)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond:06d}Z")


def parse_time(text: str) -> datetime:
    """Inverse of :func:`format_time`; also accepts plain ISO-8601 input from operators."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc)


def check_record(record: LogRecord) -> Optional[str]:
    """Why ``record`` cannot be logged, or None."""
    if record.direction not in DIRECTIONS:
        return f"direction must be one of {DIRECTIONS}, got {record.direction!r}"
    if record.side not in SIDES:
        return f"side must be one of {SIDES}, got {record.side!r}"
    if record.created.tzinfo is None:
        return "created must be timezone-aware (UTC)"
    if not isinstance(record.envelope, (bytes, bytearray)) or not record.envelope:
        return "envelope must be non-empty bytes"
    return None


class DuplicateRecord(str):
    """A writer's answer for a record whose replay key an earlier record holds: the
    request it logs was accepted before (the text says so)."""


def duplicate_answer() -> DuplicateRecord:
    return DuplicateRecord("the message log already holds a request with this replay "
                           "key: the signed request was accepted before")
