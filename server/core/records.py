"""Message log records built from signed envelopes (no storage here)."""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Optional

from lxml import etree

from ..messagelog.record import LogRecord
from .envelope import Envelope

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
WSU_ID = "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd}Id"


def body_digest_hex(env: Envelope) -> str:
    """The signature's own SHA-256 digest of the Body: computed once by xmlsec, reused.

    The signature covers the Body by reference; its DigestValue is the hash of the
    exclusive canonical Body, so the log needs no second canonicalisation.
    """
    body_id = env.body.get(WSU_ID)
    if body_id and env.header is not None:
        for ref in env.header.iter(f"{{{DS_NS}}}Reference"):
            if ref.get("URI") == f"#{body_id}":
                value = ref.findtext(f"{{{DS_NS}}}DigestValue")
                if value:
                    return base64.b64decode(value).hex()
    import hashlib  # unsigned envelopes (not expected on the logged paths)
    return hashlib.sha256(etree.tostring(env.body, method="c14n", exclusive=True)).hexdigest()


def make_record(env: Envelope, raw: bytes, *, direction: str, side: str,
                cert_der: bytes, service: Optional[str] = None) -> LogRecord:
    x = env.xroad
    return LogRecord(
        message_id=x.id,
        client=str(x.client),
        service=service if service is not None else str(x.service),
        direction=direction,
        side=side,
        envelope=raw,
        signature_cert_der=cert_der,
        body_sha256=body_digest_hex(env),
        created=datetime.now(timezone.utc),
    )
