"""Offline checks of one logged message: its signature and its Body hash.

Used only by archive verification.  Records hold a ``tdk:signedMessage`` container
(core/records.py): the exact signed bytes and their detached signature
(core/detached.py), which must verify with the logged signer certificate.  Records
written before detached signatures hold a WS-Security signed envelope (XML-DSig,
references by wsu:Id, exc-c14n); its signature must verify with the logged signer
certificate and cover the SOAP Body.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Optional

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from ..core import detached
from ..core.envelope import parse_xml
from ..core.records import CONTAINER_END, CONTAINER_NS, MESSAGE_END

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSU_NS = ("http://docs.oasis-open.org/wss/2004/01/"
          "oasis-200401-wss-wssecurity-utility-1.0.xsd")


def _parse(envelope: bytes) -> etree._Element:
    # huge_tree: a message near the size limit is one base64 text node of over 10 MB
    # (libxml2's default cap); records come from our own store, entities stay off.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=True, remove_comments=False)
    root = etree.fromstring(envelope, parser)
    if root.getroottree().docinfo.doctype:
        raise ValueError("envelope has a DOCTYPE")
    return root


_CONTAINER = f"{{{CONTAINER_NS}}}signedMessage"
_MESSAGE = f"{{{CONTAINER_NS}}}message"


def _unpack(root: etree._Element) -> Optional[tuple[bytes, str]]:
    """(signed bytes, their Content-Type) of a container record, None for an older
    in-envelope record; ValueError if the container is malformed."""
    if root.tag != _CONTAINER:
        return None
    children = [c for c in root if isinstance(c.tag, str)]
    if len(children) != 2 or children[0].tag != _MESSAGE \
            or children[1].tag != f"{{{DSIG_NS}}}Signature":
        raise ValueError("the signedMessage container must hold tdk:message and "
                         "ds:Signature")
    msg = children[0]
    data = base64.b64decode("".join((msg.text or "").split()), validate=True)
    return data, msg.get("contentType") or ""


def _signature_bytes(envelope: bytes) -> bytes:
    """The signature document exactly as it was received and logged: it verifies only
    in that form (core/detached.py), and lxml would re-serialise it."""
    start = envelope.find(MESSAGE_END)
    if start < 0 or not envelope.endswith(CONTAINER_END):
        raise ValueError("the signedMessage container is not in the form tunduk writes")
    return envelope[start + len(MESSAGE_END):-len(CONTAINER_END)]


def logged_message(envelope: bytes) -> bytes:
    """The signed message bytes a record holds (the envelope itself for records written
    before detached signatures)."""
    packed = _unpack(_parse(envelope))
    return envelope if packed is None else packed[0]


def body_hashes(envelope: bytes) -> set[str]:
    """SHA-256 hex of the Body in the canonical forms a pipeline may have used."""
    root = _parse(envelope)
    packed = _unpack(root)
    if packed is not None:
        root = parse_xml(packed[0], packed[1])
    body = root.find(f"{{{SOAP11_NS}}}Body")
    if body is None:
        return set()
    out = set()
    for exclusive in (True, False):
        out.add(hashlib.sha256(etree.tostring(body, method="c14n", exclusive=exclusive,
                                              with_comments=False)).hexdigest())
    return out


def check_signature(envelope: bytes, cert_der: bytes) -> Optional[str]:
    """None if the envelope's signature verifies with ``cert_der`` and covers the Body;
    otherwise what is wrong."""
    try:
        root = _parse(envelope)
        packed = _unpack(root)
        signature = _signature_bytes(envelope) if packed is not None else b""
    except Exception as exc:
        return f"envelope is not well-formed XML ({exc})"
    if packed is not None:
        why = detached.check_logged(packed[0], packed[1], signature, cert_der)
        return None if why is None else f"signature does not verify: {why}"
    sigs = root.findall(f".//{{{DSIG_NS}}}Signature")
    if not sigs:
        return "envelope has no XML signature"
    if len(sigs) > 1:
        return "envelope has more than one XML signature"
    sig = sigs[0]
    body = root.find(f"{{{SOAP11_NS}}}Body")
    if body is None:
        return "envelope has no SOAP Body"
    body_id = body.get(f"{{{WSU_NS}}}Id") or body.get("Id")
    refs = {r.get("URI") for r in sig.iter(f"{{{DSIG_NS}}}Reference")}
    if not body_id or f"#{body_id}" not in refs:
        return "XML signature does not cover the SOAP Body"
    try:
        cert = x509.load_der_x509_certificate(cert_der)
        pem = cert.public_bytes(serialization.Encoding.PEM)
    except Exception as exc:
        return f"signer certificate unreadable ({exc})"
    try:
        xmlsec.tree.add_ids(root, ["Id"])
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem)
        ctx.verify(sig)
    except xmlsec.Error as exc:
        return f"XML signature does not verify with the signer certificate ({exc})"
    return None
