"""What travels between two tunduk security servers besides the client's own message.

The X-Road ``requestHash`` is computed over the exact bytes the client sent to its own
security server.  The provider's server never sees those bytes (it receives the signed
envelope), so the consumer's server states their digest in a signed header of our own
namespace; the provider copies it into ``xroad:requestHash`` of the response and the
consumer checks it against what it computed.  The header is removed before the message
reaches the provider's backend.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Optional

from lxml import etree

from . import errors

TUNDUK_NS = "urn:tunduk:xsd:exchange:1"
REQUEST_DIGEST = f"{{{TUNDUK_NS}}}requestDigest"
SHA512_URI = "http://www.w3.org/2001/04/xmlenc#sha512"
_ALGORITHMS = {
    SHA512_URI: hashlib.sha512,
    "http://www.w3.org/2001/04/xmlenc#sha256": hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
}


def request_hash(raw: bytes, algorithm: str = SHA512_URI) -> str:
    """base64 digest of the exact request bytes, as X-Road's requestHash wants it."""
    return base64.b64encode(_ALGORITHMS[algorithm](raw).digest()).decode("ascii")


def add_request_digest(header: etree._Element, digest: str,
                       algorithm: str = SHA512_URI) -> etree._Element:
    el = etree.SubElement(header, REQUEST_DIGEST, nsmap={"tdk": TUNDUK_NS})
    el.set("algorithmId", algorithm)
    el.text = digest
    return el


def find_request_digest(header: Optional[etree._Element]) -> etree._Element:
    found = [] if header is None else header.findall(REQUEST_DIGEST)
    if len(found) != 1:
        raise errors.XRoadError(
            errors.INVALID_MESSAGE,
            "the request carries no tunduk request digest header (or more than one): "
            "was it sent by a tunduk security server?")
    el = found[0]
    if el.get("algorithmId") not in _ALGORITHMS or not (el.text or "").strip():
        raise errors.XRoadError(errors.INVALID_MESSAGE,
                                "the tunduk request digest header is malformed")
    return el
