"""The hash chain over logged records: pure functions, no I/O.

Each record's hash is ``sha256(prev_hash || canonical(record))`` where the canonical
encoding holds every field (the envelope and certificate through their SHA-256) and the
sequence number, each length-prefixed so no two different records encode alike.  A
chain keyed by server id starts from :data:`GENESIS`.  Verifying a run of records finds
edited, deleted, inserted and reordered records and names the sequence number.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Protocol

from .record import format_time

GENESIS = "0" * 64
_DOMAIN = b"tunduk-messagelog-record-v1"


class ChainFields(Protocol):
    server_id: str
    seq: int
    message_id: str
    client: str
    service: str
    direction: str
    side: str
    body_sha256: str


def _field(name: str, value: bytes) -> bytes:
    n = name.encode("ascii")
    return len(n).to_bytes(2, "big") + n + len(value).to_bytes(8, "big") + value


def _head(name: str) -> bytes:
    n = name.encode("ascii")
    return len(n).to_bytes(2, "big") + n


# Field name headers, precomputed: the encoding is the same as _field() per field.
_H_SERVER, _H_SEQ, _H_MID, _H_CLIENT, _H_SERVICE, _H_DIR, _H_SIDE, _H_ENV, _H_CERT, \
    _H_BODY, _H_CREATED = (_head(n) for n in (
        "server_id", "seq", "message_id", "client", "service", "direction", "side",
        "envelope_sha256", "signature_cert_sha256", "body_sha256", "created"))
_LEN = struct.Struct(">Q").pack


def encoding_prefix(server_id: str) -> bytes:
    """The part of every record's encoding before the seq field (one per chain)."""
    v = server_id.encode("utf-8")
    return _DOMAIN + _H_SERVER + _LEN(len(v)) + v


def seq_field(seq: int) -> bytes:
    v = str(int(seq)).encode("ascii")
    return _H_SEQ + _LEN(len(v)) + v


def encoding_tail(message_id: str, client: str, service: str, direction: str, side: str,
                  envelope_sha256: str, cert_sha256: str, body_sha256: str,
                  created: str) -> bytes:
    """The part of a record's encoding after the seq field.

    It does not depend on the record's place in the chain, so the caller's thread can
    build it before the record is queued; the writer adds prefix and seq.
    """
    m, c, s, d, si, e, ce, b, t = (
        message_id.encode("utf-8"), client.encode("utf-8"), service.encode("utf-8"),
        direction.encode("utf-8"), side.encode("utf-8"),
        envelope_sha256.lower().encode("utf-8"), cert_sha256.lower().encode("utf-8"),
        body_sha256.lower().encode("utf-8"), created.encode("utf-8"))
    return b"".join((
        _H_MID, _LEN(len(m)), m, _H_CLIENT, _LEN(len(c)), c, _H_SERVICE, _LEN(len(s)), s,
        _H_DIR, _LEN(len(d)), d, _H_SIDE, _LEN(len(si)), si, _H_ENV, _LEN(len(e)), e,
        _H_CERT, _LEN(len(ce)), ce, _H_BODY, _LEN(len(b)), b,
        _H_CREATED, _LEN(len(t)), t))


def canonical_encoding(server_id: str, seq: int, message_id: str, client: str,
                       service: str, direction: str, side: str, envelope_sha256: str,
                       cert_sha256: str, body_sha256: str, created: str) -> bytes:
    """The bytes hashed for one record (``created`` in :func:`format_time` form)."""
    return (encoding_prefix(server_id) + seq_field(seq) + encoding_tail(
        message_id, client, service, direction, side, envelope_sha256, cert_sha256,
        body_sha256, created))


def _canonical_encoding_reference(server_id: str, seq: int, message_id: str, client: str,
                                  service: str, direction: str, side: str,
                                  envelope_sha256: str, cert_sha256: str,
                                  body_sha256: str, created: str) -> bytes:
    """The definition, field by field (the fast path above must stay equal to it)."""
    parts = [
        ("server_id", server_id), ("seq", str(int(seq))), ("message_id", message_id),
        ("client", client), ("service", service), ("direction", direction),
        ("side", side), ("envelope_sha256", envelope_sha256.lower()),
        ("signature_cert_sha256", cert_sha256.lower()),
        ("body_sha256", body_sha256.lower()), ("created", created),
    ]
    return _DOMAIN + b"".join(_field(k, v.encode("utf-8")) for k, v in parts)


def link_hash(prev_hash: str, prefix: bytes, seq: int, tail: bytes) -> str:
    """:func:`record_hash` of ``prefix + seq_field(seq) + tail`` without joining them."""
    h = hashlib.sha256(bytes.fromhex(prev_hash))
    h.update(prefix)
    h.update(seq_field(seq))
    h.update(tail)
    return h.hexdigest()


def record_hash(prev_hash: str, encoding: bytes) -> str:
    """Hex sha256(prev_hash bytes || encoding)."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + encoding).hexdigest()


def hash_stored(rec) -> str:  # rec: StoredRecord-like
    """Recompute the hash of a stored record from its fields and its prev_hash."""
    return record_hash(rec.prev_hash, encode_stored(rec))


def encode_stored(rec) -> bytes:
    return canonical_encoding(
        rec.server_id, rec.seq, rec.message_id, rec.client, rec.service, rec.direction,
        rec.side, hashlib.sha256(rec.envelope).hexdigest(),
        hashlib.sha256(rec.signature_cert_der).hexdigest(), rec.body_sha256,
        format_time(rec.created))


@dataclass(frozen=True)
class ChainEntry:
    """What verification needs of one record: its stored link and a recomputed hash."""

    seq: int
    prev_hash: str
    hash: str               # as stored
    computed_hash: str      # recomputed from the record's contents and its prev_hash
    message_id: str = ""


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    message_id: str
    kind: str   # "changed" | "missing" | "inserted" | "broken-link" | "order" | "head"
    detail: str

    def __str__(self) -> str:
        mid = f" (message id {self.message_id})" if self.message_id else ""
        return f"record seq {self.seq}{mid}: {self.detail}"


def verify_chain(entries: Iterable[ChainEntry], start_prev_hash: str = GENESIS,
                 start_seq: Optional[int] = None,
                 end: Optional[tuple[int, str]] = None) -> list[ChainProblem]:
    """Check that ``entries`` (in storage order) form one unbroken chain.

    ``start_seq`` is the seq the first entry must have (None: whatever it is);
    ``end`` is ``(seq, hash)`` the chain must end on (the chain head), if known.
    """
    problems: list[ChainProblem] = []
    expected_prev = start_prev_hash
    expected_seq = start_seq
    last: Optional[ChainEntry] = None
    for e in entries:
        gap = False
        if last is not None and e.seq <= last.seq:
            kind, what = ("inserted", "duplicate sequence number (record inserted?)") \
                if e.seq == last.seq else ("order", f"out of order after seq {last.seq} "
                                                    "(records reordered?)")
            problems.append(ChainProblem(e.seq, e.message_id, kind, what))
        elif expected_seq is not None and e.seq != expected_seq:
            first_missing, last_missing = expected_seq, e.seq - 1
            span = (f"seq {first_missing}" if first_missing == last_missing
                    else f"seqs {first_missing}..{last_missing}")
            problems.append(ChainProblem(first_missing, "", "missing",
                                         f"missing: {span} deleted from the chain"))
            gap = True
        if e.computed_hash != e.hash:
            problems.append(ChainProblem(e.seq, e.message_id, "changed",
                                         "contents changed (hash mismatch)"))
        elif e.prev_hash != expected_prev and not gap:
            problems.append(ChainProblem(
                e.seq, e.message_id, "broken-link",
                "does not follow the record before it (prev_hash mismatch: a record "
                "before it was changed, removed or inserted)"))
        expected_prev = e.hash
        expected_seq = e.seq + 1
        last = e
    if end is not None:
        end_seq, end_hash = end
        if last is None:
            if end_hash != start_prev_hash:
                problems.append(ChainProblem(end_seq, "", "head",
                                             "chain head names a record that is missing"))
        elif last.seq < end_seq:
            problems.append(ChainProblem(last.seq + 1, "", "missing",
                                         f"missing: seqs {last.seq + 1}..{end_seq} deleted "
                                         "from the end of the chain"))
        elif last.seq == end_seq and last.hash != end_hash:
            problems.append(ChainProblem(last.seq, last.message_id, "head",
                                         "hash differs from the chain head (changed?)"))
        elif last.seq > end_seq:
            problems.append(ChainProblem(end_seq + 1, "", "inserted",
                                         "records after the chain head (inserted?)"))
    return problems


def entries_of(records: Iterable) -> Iterator[ChainEntry]:
    """ChainEntry for each StoredRecord-like object."""
    for r in records:
        yield ChainEntry(r.seq, r.prev_hash, r.hash, hash_stored(r), r.message_id)
