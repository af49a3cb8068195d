"""Offline checks of one logged envelope: its XML signature and its Body hash.

Used only by archive verification.  The envelope is WS-Security signed (XML-DSig,
references by wsu:Id, exc-c14n, RSA or ECDSA with SHA-256); the signature must verify
with the logged signer certificate and must cover the SOAP Body.
"""
from __future__ import annotations

import hashlib
from typing import Optional

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSU_NS = ("http://docs.oasis-open.org/wss/2004/01/"
          "oasis-200401-wss-wssecurity-utility-1.0.xsd")


def _parse(envelope: bytes) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=False)
    root = etree.fromstring(envelope, parser)
    if root.getroottree().docinfo.doctype:
        raise ValueError("envelope has a DOCTYPE")
    return root


def body_hashes(envelope: bytes) -> set[str]:
    """SHA-256 hex of the Body in the canonical forms a pipeline may have used."""
    root = _parse(envelope)
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
    except Exception as exc:
        return f"envelope is not well-formed XML ({exc})"
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
