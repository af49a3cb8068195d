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
from xml.parsers import expat

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from ..core import detached
from ..core.envelope import document_charset
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
    """SHA-256 hex of the Body's exclusive canonical form (exc-c14n, without comments),
    the digest the pipeline logs (core/records.py); empty if there is no Body."""
    packed = _unpack(_parse(envelope))
    data, content_type = (envelope, None) if packed is None else packed
    digest = body_digest(data, content_type)
    return set() if digest is None else {digest}


XML_NS = "http://www.w3.org/XML/1998/namespace"
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"})
_ATTR_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;",
                               "\n": "&#xA;", "\r": "&#xD;"})


def body_digest(message: bytes, content_type: Optional[str] = None) -> Optional[str]:
    """SHA-256 hex of the exc-c14n form of the SOAP 1.1 Body of ``message``, or None.

    Streamed from expat in one pass: libxml2's canonicaliser sorts attributes and
    namespaces by repeated insertion and re-walks every namespace in scope, so its time
    grows with their square on crafted messages; this writes the same bytes in time
    linear in the message.
    """
    charset = document_charset(message, content_type)
    codec = {"utf-8": "utf-8-sig", "utf-16": "utf-16"}.get(charset, charset)
    c14n = _BodyC14n()
    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    parser.buffer_text = True
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.StartElementHandler = c14n.start
    parser.EndElementHandler = c14n.end
    parser.CharacterDataHandler = c14n.text
    parser.ProcessingInstructionHandler = c14n.pi
    parser.Parse(message.decode(codec), True)
    if not c14n.found:
        return None
    return hashlib.sha256("".join(c14n.out).encode("utf-8")).hexdigest()


def _refuse_doctype(*_args) -> None:
    raise ValueError("message has a DOCTYPE")


def _split(qname: str) -> tuple[str, str]:
    prefix, _, local = qname.rpartition(":")
    return prefix, local


class _BodyC14n:
    """Expat handlers writing the exclusive canonical form of the document element's
    first ``{SOAP 1.1}Body`` child: namespaces rendered where visibly used and not
    already rendered by an output ancestor, namespaces sorted by prefix, attributes by
    (namespace URI, local name)."""

    def __init__(self) -> None:
        self.bound: dict[str, list[str]] = {"xml": [XML_NS]}   # in scope
        self.rendered: dict[str, list[str]] = {}              # by output ancestors
        self.frames: list[tuple[list[str], list[str], str]] = []
        self.depth = 0
        self.inside = False
        self.found = False
        self.out: list[str] = []

    def _uri(self, prefix: str) -> str:
        stack = self.bound.get(prefix)
        if stack:
            return stack[-1]
        if prefix:
            raise ValueError(f"namespace prefix {prefix!r} is not declared")
        return ""

    def start(self, name: str, attrs: list[str]) -> None:
        declared, plain = [], []
        for i in range(0, len(attrs), 2):
            key, value = attrs[i], attrs[i + 1]
            if key == "xmlns" or key.startswith("xmlns:"):
                prefix = key[6:]
                declared.append(prefix)
                self.bound.setdefault(prefix, []).append(value)
            else:
                plain.append((key, value))
        self.depth += 1
        prefix, local = _split(name)
        if not self.inside and not self.found and self.depth == 2 \
                and local == "Body" and self._uri(prefix) == SOAP11_NS:
            self.inside = self.found = True
        rendered: list[str] = []
        if self.inside:
            rendered = self._write_start(name, prefix, plain)
        self.frames.append((declared, rendered, name))

    def _write_start(self, name: str, prefix: str, plain: list) -> list[str]:
        attributes, used = [], {prefix}
        for key, value in plain:
            p, local = _split(key)
            if p and p != "xml":
                used.add(p)
            attributes.append(("" if not p else self._uri(p), local, key, value))
        namespaces = []
        for p in used:
            uri = self._uri(p)
            stack = self.rendered.get(p)
            if (stack[-1] if stack else "" if not p else None) != uri:
                namespaces.append(p)
                self.rendered.setdefault(p, []).append(uri)
        parts = ["<", name]
        for p in sorted(namespaces):      # URIs as written: libxml2 does not escape them
            parts += (" xmlns:" if p else " xmlns", p, '="', self.rendered[p][-1], '"')
        for _uri, _local, key, value in sorted(attributes, key=lambda a: a[:2]):
            parts += (" ", key, '="', value.translate(_ATTR_ESCAPES), '"')
        parts.append(">")
        self.out.append("".join(parts))
        return namespaces

    def end(self, name: str) -> None:
        declared, rendered, _ = self.frames.pop()
        if self.inside:
            self.out.append(f"</{name}>")
            for p in rendered:
                self.rendered[p].pop()
        for p in declared:
            self.bound[p].pop()
        self.depth -= 1
        if self.depth == 1:
            self.inside = False

    def text(self, data: str) -> None:
        if self.inside:
            self.out.append(data.translate(_TEXT_ESCAPES))

    def pi(self, target: str, data: str) -> None:
        if self.inside:
            self.out.append(f"<?{target} {data}?>" if data else f"<?{target}?>")


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
