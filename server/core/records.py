"""Message log records built from signed messages (no storage here).

A record's ``envelope`` is a container (``tdk:signedMessage``) holding the exact bytes
that were signed (base64), their Content-Type and the detached signature document
(core/detached.py), so that ``tunduk log verify`` can check the signature later.
"""
from __future__ import annotations

import binascii
import hashlib
from datetime import datetime, timezone
from typing import Optional

from lxml import etree

from ..messagelog.record import LogRecord
from .detached import escape
from .envelope import Envelope

CONTAINER_NS = "urn:tunduk:xsd:messagelog:1"
# The end tags around the signature document: archive verification cuts the document
# out between them, byte for byte (messagelog/envelope_check.py).
MESSAGE_END = b"</tdk:message>"
CONTAINER_END = b"</tdk:signedMessage>"


def body_digest_hex(env: Envelope) -> str:
    """SHA-256 of the exclusive canonical Body, recomputed here (~10 µs) rather than read
    from the signature: a DigestValue is only trustworthy inside the verified SignedInfo,
    and a peer may sign with SHA-384/512."""
    return hashlib.sha256(etree.tostring(env.body, method="c14n", exclusive=True,
                                         with_comments=False)).hexdigest()


def _attribute(text: str) -> str:
    """Text as an attribute value that reads back unchanged (a literal tab or line
    break in an attribute is read back as a space)."""
    return (escape(text).replace('"', "&quot;").replace("\t", "&#9;")
            .replace("\n", "&#10;").replace("\r", "&#13;"))


def signed_message(raw: bytes, content_type: str, signature: bytes) -> bytes:
    """The container a record keeps: the signed bytes, their type and the signature."""
    return b"".join([
        b'<tdk:signedMessage xmlns:tdk="', CONTAINER_NS.encode(), b'"><tdk:message',
        b' contentType="', _attribute(content_type).encode("utf-8"), b'">',
        binascii.b2a_base64(raw, newline=False), MESSAGE_END, signature, CONTAINER_END])


def make_record(env: Envelope, raw: bytes, *, direction: str, side: str,
                cert_der: bytes, content_type: str, signature: bytes,
                service: Optional[str] = None,
                replay_key: Optional[str] = None) -> LogRecord:
    """``raw``: the exact bytes ``signature`` covers, sent or received as
    ``content_type``; ``replay_key``: a received request's (the store keeps one record
    per key)."""
    x = env.xroad
    return LogRecord(
        message_id=x.id,
        client=str(x.client),
        service=service if service is not None else str(x.service),
        direction=direction,
        side=side,
        envelope=signed_message(raw, content_type, signature),
        signature_cert_der=cert_der,
        body_sha256=body_digest_hex(env),
        created=datetime.now(timezone.utc),
        replay_key=replay_key,
    )
