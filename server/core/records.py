"""Message log records built from signed envelopes (no storage here)."""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Optional

from lxml import etree

from ..messagelog.record import LogRecord
from .envelope import Envelope



def body_digest_hex(env: Envelope) -> str:
    """SHA-256 of the exclusive canonical Body, recomputed here (~10 µs) rather than read
    from the signature: a DigestValue is only trustworthy inside the verified SignedInfo,
    and a peer may sign with SHA-384/512."""
    return hashlib.sha256(etree.tostring(env.body, method="c14n", exclusive=True,
                                         with_comments=False)).hexdigest()


def make_record(env: Envelope, raw: bytes, *, direction: str, side: str,
                cert_der: bytes, service: Optional[str] = None,
                body_sha256: Optional[str] = None) -> LogRecord:
    """``body_sha256``: body_digest_hex(env) if the caller has just computed exactly
    that (sign_envelope's result, VerifiedSignature.body_sha256), else None."""
    x = env.xroad
    return LogRecord(
        message_id=x.id,
        client=str(x.client),
        service=service if service is not None else str(x.service),
        direction=direction,
        side=side,
        envelope=raw,
        signature_cert_der=cert_der,
        body_sha256=body_sha256 if body_sha256 is not None else body_digest_hex(env),
        created=datetime.now(timezone.utc),
    )
