"""What travels between two tunduk security servers besides the client's own message.

The X-Road ``requestHash`` is computed over the exact bytes the client sent to its own
security server; the consumer's server states it in the signed properties of its
signature (core/detached.py) so that the provider can copy it into
``xroad:requestHash`` of the response even when it received a re-serialised SOAP part
(multipart), and the consumer checks it against what it computed.

Attachments (multipart/related: SOAP with attachments, MTOM) are not covered by the
signature over the SOAP part itself, so the sender adds one ``tdk:attachment`` header
per attachment with the SHA-256 of the part's exact raw bytes (MIME part headers, blank
line, content), in message order; the signature over the SOAP part then covers the
attachments through these digests; the receiver checks them after verifying the
signature and removes them.  Because the digests sit inside the signed SOAP part, the
message log's copy of it is enough evidence for the attachments too (non-repudiation)
without storing the attachment bytes.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Optional

from lxml import etree

from . import errors
from .mime import Part
from .tags import children_named

TUNDUK_NS = "urn:tunduk:xsd:exchange:1"
ATTACHMENT = f"{{{TUNDUK_NS}}}attachment"
SHA256_URI = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA512_URI = "http://www.w3.org/2001/04/xmlenc#sha512"
_ALGORITHMS = {
    SHA512_URI: hashlib.sha512,
    SHA256_URI: hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
}


def request_hash(raw: bytes, algorithm: str = SHA512_URI) -> str:
    """base64 digest of the exact request bytes, as X-Road's requestHash wants it."""
    return base64.b64encode(_ALGORITHMS[algorithm](raw).digest()).decode("ascii")


def attachment_digest(part: Part) -> str:
    """base64 SHA-256 of a part's exact raw bytes (header block and content)."""
    return base64.b64encode(hashlib.sha256(part.raw).digest()).decode("ascii")


def add_attachment_digests(header: etree._Element, parts) -> None:
    """One ``tdk:attachment`` per part, in order, to be signed with the other headers."""
    for part in parts:
        el = etree.SubElement(header, ATTACHMENT, nsmap={"tdk": TUNDUK_NS})
        el.set("contentId", part.content_id or "")
        el.set("algorithmId", SHA256_URI)
        el.text = attachment_digest(part)


def remove_attachment_digests(header: Optional[etree._Element]) -> None:
    if header is not None:
        for el in children_named(header, ATTACHMENT):
            header.remove(el)


def check_attachments(header: Optional[etree._Element], parts, what: str = "request") -> None:
    """The attachments received are exactly those the (verified) signature names.

    Call only after the signature over the headers has been verified.  A missing,
    extra, reordered or changed attachment is an InvalidSignatureValue: the signed
    message does not match what arrived.
    """
    signed = [] if header is None else children_named(header, ATTACHMENT)
    parts = list(parts)
    if len(signed) != len(parts):
        raise errors.XRoadError(
            errors.INVALID_SIGNATURE_VALUE,
            f"the {what} carries {len(parts)} attachment(s) but its signature covers "
            f"{len(signed)}: an attachment was "
            f"{'added' if len(parts) > len(signed) else 'removed'} after signing")
    for i, (el, part) in enumerate(zip(signed, parts), 1):
        cid = el.get("contentId") or ""
        if el.get("algorithmId") != SHA256_URI:
            raise errors.XRoadError(errors.INVALID_SIGNATURE_VALUE,
                                    f"signed digest of attachment {i} uses an unknown "
                                    "algorithm")
        if (part.content_id or "") != cid or \
                (el.text or "").strip() != attachment_digest(part):
            raise errors.XRoadError(
                errors.INVALID_SIGNATURE_VALUE,
                f"attachment {i} <{part.content_id or ''}> of the {what} does not match "
                f"the signed digest of attachment <{cid}>: it was changed after signing")
