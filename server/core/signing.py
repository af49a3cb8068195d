"""WS-Security (X.509 token profile) signatures between two security servers.

The only module that imports xmlsec.  ``sign_envelope`` adds a ``wsse:Security`` header
holding the signer's certificate (``wsse:BinarySecurityToken``), a ``wsu:Timestamp`` and
a ``ds:Signature`` over the Body, the X-Road headers and the Timestamp.
``verify_envelope`` checks the signature *and* that it covers exactly the elements the
caller is about to use: a signature that is valid but over other elements (signature
wrapping) is refused.  Every failure is one ``XRoadError`` with an X-Road code.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import itertools
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional, Sequence

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from . import errors
from .tags import children_named as _children_named, first_child as _child
from .errors import XRoadError
from .identifiers import MemberId

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = ("http://docs.oasis-open.org/wss/2004/01/"
           "oasis-200401-wss-wssecurity-secext-1.0.xsd")
WSU_NS = ("http://docs.oasis-open.org/wss/2004/01/"
          "oasis-200401-wss-wssecurity-utility-1.0.xsd")
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
X509V3 = ("http://docs.oasis-open.org/wss/2004/01/"
          "oasis-200401-wss-x509-token-profile-1.0#X509v3")
BASE64_BINARY = ("http://docs.oasis-open.org/wss/2004/01/"
                 "oasis-200401-wss-soap-message-security-1.0#Base64Binary")
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"

_HEADER = f"{{{SOAP_NS}}}Header"
_BODY = f"{{{SOAP_NS}}}Body"
_MUST_UNDERSTAND = f"{{{SOAP_NS}}}mustUnderstand"
_SECURITY = f"{{{WSSE_NS}}}Security"
_BST = f"{{{WSSE_NS}}}BinarySecurityToken"
_STR = f"{{{WSSE_NS}}}SecurityTokenReference"
_WSSE_REF = f"{{{WSSE_NS}}}Reference"
_TIMESTAMP = f"{{{WSU_NS}}}Timestamp"
_CREATED = f"{{{WSU_NS}}}Created"
_EXPIRES = f"{{{WSU_NS}}}Expires"
_WSU_ID = f"{{{WSU_NS}}}Id"
_SIGNATURE = f"{{{DS_NS}}}Signature"
_SIGNED_INFO = f"{{{DS_NS}}}SignedInfo"
_C14N_METHOD = f"{{{DS_NS}}}CanonicalizationMethod"
_SIG_METHOD = f"{{{DS_NS}}}SignatureMethod"
_REFERENCE = f"{{{DS_NS}}}Reference"
_TRANSFORMS = f"{{{DS_NS}}}Transforms"
_TRANSFORM = f"{{{DS_NS}}}Transform"
_DIGEST_METHOD = f"{{{DS_NS}}}DigestMethod"
_DIGEST_VALUE = f"{{{DS_NS}}}DigestValue"
_SIG_VALUE = f"{{{DS_NS}}}SignatureValue"
_KEY_INFO = f"{{{DS_NS}}}KeyInfo"

_SIGN_METHODS = {
    "rsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ecdsa-sha256": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_ALLOWED_SIG = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": rsa.RSAPublicKey,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": rsa.RSAPublicKey,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": rsa.RSAPublicKey,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ec.EllipticCurvePublicKey,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ec.EllipticCurvePublicKey,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ec.EllipticCurvePublicKey,
}
_DIGESTS = {
    _SHA256: hashlib.sha256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": hashlib.sha384,
    "http://www.w3.org/2001/04/xmlenc#sha512": hashlib.sha512,
}
_ALLOWED_DIGEST = frozenset(_DIGESTS)
# xmlsec transforms that sign / verify the canonical SignedInfo.
_XMLSEC_TRANSFORMS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.constants.TransformRsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.constants.TransformRsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.constants.TransformRsaSha512,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256":
        xmlsec.constants.TransformEcdsaSha256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384":
        xmlsec.constants.TransformEcdsaSha384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512":
        xmlsec.constants.TransformEcdsaSha512,
}


def _exc_c14n(el: etree._Element) -> bytes:
    """Exclusive canonical form (no comments) of ``el`` in its document.

    The same libxml2 canonicaliser xmlsec uses; done here once per element because
    xmlsec's own reference processing walks the whole document for every reference.
    """
    return etree.tostring(el, method="c14n", exclusive=True, with_comments=False)


def _b64(data: bytes) -> str:
    # binascii directly: base64.b64encode's wrapper is a measurable share per reference
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _digest_b64(el: etree._Element, algorithm: str = _SHA256) -> str:
    return _b64(_DIGESTS[algorithm](_exc_c14n(el)).digest())
# Every attribute that could act as an XML ID: a duplicate value among them is how a
# wrapping attack makes the verifier and the application look at different elements.
_ID_ATTRS = etree.XPath(
    "//@*[local-name()='Id' or local-name()='ID'] | //@xml:id")

_XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
_local = threading.local()
_ID_COUNTER = itertools.count(1)
_ID_PREFIX = os.urandom(6).hex()
# lxml picks this prefix when it must declare the wsu namespace for an attribute.
etree.register_namespace("wsu", WSU_NS)


def _invalid(message: str) -> XRoadError:
    return XRoadError(errors.INVALID_SIGNATURE, message)


def _name(el: etree._Element) -> str:
    """A short, readable name for an element in messages (``xrd:client``-like)."""
    q = etree.QName(el)
    return f"{el.prefix}:{q.localname}" if el.prefix else q.localname


class SigningKey:
    """A member's signing key and certificate, loaded once and reused per message."""

    __slots__ = ("cert", "cert_der", "algorithm", "_key", "_cert_b64", "_method_uri")

    def __init__(self, key_pem: bytes, cert_pem: bytes) -> None:
        try:
            private = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
        except (ValueError, TypeError) as exc:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             f"signing key or certificate is not readable PEM: {exc}")
        if isinstance(private, rsa.RSAPrivateKey):
            self.algorithm = "rsa-sha256"
        elif isinstance(private, ec.EllipticCurvePrivateKey):
            self.algorithm = "ecdsa-sha256"
        else:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             "signing key must be RSA or ECDSA")
        if private.public_key() != cert.public_key():
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             "signing certificate does not belong to the signing key "
                             f"(certificate subject {cert.subject.rfc4514_string()})")
        try:
            self._key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
        except xmlsec.Error as exc:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             f"xmlsec cannot load the signing key: {exc}")
        self.cert = cert
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self._cert_b64 = base64.b64encode(self.cert_der).decode("ascii")
        self._method_uri = _SIGN_METHODS[self.algorithm]

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> "SigningKey":
        try:
            key_pem, cert_pem = Path(key_path).read_bytes(), Path(cert_path).read_bytes()
        except OSError as exc:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             f"cannot read signing key or certificate: {exc}")
        return cls(key_pem, cert_pem)

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> "SigningKey":
        return cls(key_pem, cert_pem)

    def __repr__(self) -> str:  # never show key material
        return f"SigningKey({self.algorithm}, {self.cert.subject.rfc4514_string()})"


class TrustAnchor:
    """The CA certificate(s) whose member certificates we accept."""

    _USAGES = ("signing", "auth")

    def __init__(self, cas: Sequence[x509.Certificate]) -> None:
        if not cas:
            raise XRoadError(errors.CERT_VALIDATION, "no trusted CA certificate given")
        self.cas = tuple(cas)
        # (cert, usage) -> (cert, issuing CA) once the time-independent checks passed:
        # the CA signature check is the costly part, done once per certificate.
        self._checked: OrderedDict[tuple, tuple] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_pem(cls, pem: bytes) -> "TrustAnchor":
        try:
            cas = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise XRoadError(errors.CERT_VALIDATION,
                             f"trusted CA file is not PEM certificates: {exc}")
        return cls(cas)

    def _issuer_of(self, cert: x509.Certificate) -> Optional[x509.Certificate]:
        for ca in self.cas:
            try:
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return ca
        return None

    def _static_checks(self, cert: x509.Certificate, usage: str) -> tuple:
        """Checks that do not depend on the time; the result is cached per cert:
        (cert, issuing CA, and each one's validity period, read once because the
        library builds new datetime objects on every access)."""
        ca = self._issuer_of(cert)
        if ca is None:
            raise XRoadError(errors.CERT_VALIDATION,
                             f"certificate {_subject(cert)!r} (issuer "
                             f"{cert.issuer.rfc4514_string()!r}) was not issued by a "
                             "trusted CA of this federation")
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise XRoadError(errors.CERT_VALIDATION,
                             f"certificate {_subject(cert)!r} has no keyUsage extension")
        ok = (ku.digital_signature or ku.content_commitment) if usage == "signing" \
            else ku.digital_signature
        if not ok:
            raise XRoadError(errors.CERT_VALIDATION,
                             f"certificate {_subject(cert)!r} key usage does not allow "
                             f"{usage}")
        return (cert, ca, (cert.not_valid_before_utc, cert.not_valid_after_utc),
                (ca.not_valid_before_utc, ca.not_valid_after_utc))

    def validate(self, cert: x509.Certificate, *, now: Optional[datetime] = None,
                 usage: str = "signing") -> None:
        """Accept ``cert`` only if a trusted CA issued it, it is valid now, and its
        key usage allows ``usage``; raise ``XRoadError(CertValidation)`` otherwise."""
        if usage not in self._USAGES:
            raise ValueError(f"usage must be one of {self._USAGES}, got {usage!r}")
        now = _aware(now)
        cache_key = (cert, usage)
        with self._lock:
            pair = self._checked.get(cache_key)
            if pair is not None:
                self._checked.move_to_end(cache_key)
        if pair is None:
            pair = self._static_checks(cert, usage)  # raises; failures are not cached
            with self._lock:
                self._checked[cache_key] = pair
                if len(self._checked) > 256:
                    self._checked.popitem(last=False)
        for c, (not_before, not_after), what in ((pair[0], pair[2], "certificate"),
                                                 (pair[1], pair[3], "CA certificate")):
            if now < not_before:
                raise XRoadError(errors.CERT_VALIDATION,
                                 f"{what} {_subject(c)!r} is not valid before "
                                 f"{not_before}")
            if now > not_after:
                raise XRoadError(errors.CERT_VALIDATION,
                                 f"{what} {_subject(c)!r} expired at "
                                 f"{not_after}")


def _aware(now: Optional[datetime]) -> datetime:
    """``now`` as an aware datetime (naive values are taken as UTC)."""
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)


def _subject(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


@dataclass(frozen=True)
class VerifiedSignature:
    """What a verified message proves: who signed it, when, and the signature bytes."""

    cert: x509.Certificate
    cert_der: bytes
    created: datetime
    signature_value: bytes
    # hex SHA-256 of the exclusive canonical soap:Body, when the signature's reference
    # to it uses SHA-256: computed from the tree while checking that reference, reused
    # by the message log (core/records.py) instead of canonicalising the Body again
    body_sha256: Optional[str] = None


# ---------------------------------------------------------------------------- sign

def _fragment_parser() -> etree.XMLParser:
    """This thread's parser (lxml parsers are bound to their thread's dictionary)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True,
                                                 load_dtd=False)
    return parser


def _new_id() -> str:
    """A unique ID value: a random per-process prefix and a counter (no syscall)."""
    return f"id-{_ID_PREFIX}-{next(_ID_COUNTER):x}"


def _utc_text(t: datetime) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2024-05-01T10:00:00.000Z (what
    ``isoformat(timespec="milliseconds")`` writes, formatted directly: it is cheaper)."""
    t = t.astimezone(timezone.utc)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond // 1000:03d}Z")


def sign_envelope(envelope: etree._Element, key: SigningKey,
                  headers: Sequence[etree._Element], *, ttl: int = 300,
                  now: Optional[datetime] = None) -> str:
    """Sign Body, ``headers`` and a new Timestamp in place (a new wsse:Security header).

    ``headers`` are children of the envelope's soap:Header that the peer must be able
    to trust (the X-Road headers).  Returns the hex SHA-256 of the exclusive canonical
    Body as signed (what the message log records, see core/records.py), so that it is
    not computed twice.
    """
    body = _child(envelope, _BODY)
    if body is None:
        raise XRoadError(errors.MISSING_BODY, "cannot sign: the envelope has no soap:Body")
    header = _child(envelope, _HEADER)
    if header is None:
        header = etree.Element(_HEADER)
        body.addprevious(header)
    elif _child(header, _SECURITY) is not None:
        raise XRoadError(errors.INVALID_MESSAGE,
                         "the message already carries a wsse:Security header; "
                         "remove it before sending the message through X-Road")
    for h in headers:
        if h.getparent() is not header:
            raise XRoadError(errors.INTERNAL_ERROR,
                             f"cannot sign {_name(h)}: it is not a child of soap:Header")

    now = now or datetime.now(timezone.utc)
    # The signed elements get their ids first: their digests cover the wsu:Id.
    signed = (body, *headers)
    ids = []
    for el in signed:
        ref_id = _new_id()
        el.set(_WSU_ID, ref_id)
        ids.append(ref_id)
    body_sha256 = hashlib.sha256(_exc_c14n(body)).digest()
    digests = [_b64(body_sha256)] + [_digest_b64(el) for el in headers]
    # Timestamp and SignedInfo are written directly in canonical form (exclusive c14n
    # of an element does not depend on its context), so they are hashed and signed
    # without building them node by node; the verifier re-canonicalises them from the
    # tree, and a test checks plain xmlsec accepts the result.
    ts_id, bst_id = _new_id(), _new_id()
    timestamp = (f'<wsu:Timestamp xmlns:wsu="{WSU_NS}" wsu:Id="{ts_id}"><wsu:Created>'
                 f'{_utc_text(now)}</wsu:Created><wsu:Expires>'
                 f'{_utc_text(now + timedelta(seconds=ttl))}</wsu:Expires></wsu:Timestamp>')
    ids.append(ts_id)
    digests.append(base64.b64encode(hashlib.sha256(timestamp.encode()).digest()).decode())
    signed_info = "".join([
        f'<ds:SignedInfo xmlns:ds="{DS_NS}"><ds:CanonicalizationMethod Algorithm="',
        EXC_C14N, '"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="',
        key._method_uri, '"></ds:SignatureMethod>',
        *(f'<ds:Reference URI="#{ref_id}"><ds:Transforms><ds:Transform Algorithm='
          f'"{EXC_C14N}"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm='
          f'"{_SHA256}"></ds:DigestMethod><ds:DigestValue>{digest}</ds:DigestValue>'
          '</ds:Reference>' for ref_id, digest in zip(ids, digests)),
        '</ds:SignedInfo>'])
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = key._key
        raw = ctx.sign_binary(signed_info.encode(), _XMLSEC_TRANSFORMS[key._method_uri])
    except xmlsec.Error as exc:
        raise XRoadError(errors.INTERNAL_ERROR, f"signing the message failed: {exc}")
    security = (
        f'<wsse:Security xmlns:wsse="{WSSE_NS}" xmlns:wsu="{WSU_NS}" '
        f'xmlns:SOAP-ENV="{SOAP_NS}" SOAP-ENV:mustUnderstand="1">'
        f'<wsse:BinarySecurityToken ValueType="{X509V3}" EncodingType="{BASE64_BINARY}" '
        f'wsu:Id="{bst_id}">{key._cert_b64}</wsse:BinarySecurityToken>{timestamp}'
        f'<ds:Signature xmlns:ds="{DS_NS}">{signed_info}<ds:SignatureValue>'
        f'{base64.b64encode(raw).decode("ascii")}</ds:SignatureValue><ds:KeyInfo>'
        f'<wsse:SecurityTokenReference><wsse:Reference URI="#{bst_id}" '
        f'ValueType="{X509V3}"/></wsse:SecurityTokenReference></ds:KeyInfo>'
        '</ds:Signature></wsse:Security>')
    header.insert(0, etree.fromstring(security, _fragment_parser()))
    return body_sha256.hex()


# -------------------------------------------------------------------------- verify

@functools.lru_cache(maxsize=256)
def _peer_cert(der: bytes) -> tuple[x509.Certificate, "xmlsec.Key", type]:
    """Parse a peer certificate once per distinct certificate: the certificate, an
    xmlsec key of its public key (a bare key is ~100x cheaper to hand to a context
    than one loaded with its certificate) and the key's type."""
    cert = x509.load_der_x509_certificate(der)
    public = cert.public_key()
    spki = public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    kind = rsa.RSAPublicKey if isinstance(public, rsa.RSAPublicKey) else \
        ec.EllipticCurvePublicKey if isinstance(public, ec.EllipticCurvePublicKey) else None
    return cert, xmlsec.Key.from_memory(spki, xmlsec.KeyFormat.DER), kind


def _one(parent: etree._Element, tag: str, what: str) -> etree._Element:
    found = _children_named(parent, tag)
    if len(found) != 1:
        raise _invalid(f"{what}: expected exactly one {etree.QName(tag).localname}, "
                       f"found {len(found)}")
    return found[0]


def _ids(envelope: etree._Element) -> dict[str, list[tuple[etree._Element, str]]]:
    """ID value -> every (element, attribute name) carrying it.

    A value the signature refers to must occur exactly once (see ``_local_ref``): a
    duplicate is how a wrapping attack makes the verifier and the application look at
    different elements.  Duplicates elsewhere (business data with ``ID="1"`` twice)
    are the payload's own affair.
    """
    ids: dict[str, list[tuple[etree._Element, str]]] = {}
    for value in _ID_ATTRS(envelope):
        ids.setdefault(str(value), []).append((value.getparent(), value.attrname))
    return ids


def _local_ref(uri: Optional[str], ids: dict, what: str) -> etree._Element:
    if not uri or not uri.startswith("#") or len(uri) < 2:
        raise _invalid(f"{what} must point to an element by '#id', got {uri!r}")
    found = ids.get(uri[1:])
    if not found:
        raise _invalid(f"{what} points to {uri}, which is not in the message")
    if len(found) > 1:
        raise _invalid(f"the ID {uri[1:]!r} appears more than once in the message (on "
                       + " and ".join(_name(el) for el, _ in found) + "): the message "
                       "was altered or built wrongly (possible signature wrapping)")
    return found[0][0]


def _check_reference(ref: etree._Element, ids: dict
                     ) -> tuple[etree._Element, str, Optional[etree._Element]]:
    """The element a ds:Reference signs, its digest algorithm and its DigestValue
    element (None if missing), after checking it uses only allowed algorithms."""
    uri = ref.get("URI")
    target = _local_ref(uri, ids, "a signature reference")
    # one pass for the first Transforms, DigestMethod and DigestValue (what find()
    # returns for each), instead of a search per child
    transforms = digest = value = None
    for child in ref:
        tag = child.tag
        if tag == _TRANSFORMS:
            if transforms is None:
                transforms = child
        elif tag == _DIGEST_METHOD:
            if digest is None:
                digest = child
        elif tag == _DIGEST_VALUE:
            if value is None:
                value = child
    # exactly one child node (comments count), with the exclusive c14n algorithm and
    # no parameters; the found list is built only for the message
    if transforms is None or len(transforms) != 1 or \
            transforms[0].get("Algorithm") != EXC_C14N or len(transforms[0]):
        algs = [t.get("Algorithm") for t in transforms] if transforms is not None else []
        raise _invalid(f"signature reference {uri} must use exactly the exclusive "
                       f"canonicalization transform (without parameters), found {algs}")
    alg = None if digest is None else digest.get("Algorithm")
    if alg not in _ALLOWED_DIGEST:
        raise _invalid(f"signature reference {uri} uses digest {alg!r}; "
                       "only SHA-256, SHA-384 and SHA-512 are accepted")
    return target, alg, value


def _parse_time(ts: etree._Element, tag: str) -> datetime:
    el = _child(ts, tag)
    text = (el.text or "").strip() if el is not None else ""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"wsu:Timestamp {etree.QName(tag).localname} is missing or not "
                         f"an ISO 8601 time: {text!r}")
    if value.tzinfo is None:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"wsu:Timestamp {etree.QName(tag).localname} must be in UTC (end "
                         f"with Z): {text!r}")
    return value


def verify_envelope(envelope: etree._Element, trust: TrustAnchor,
                    required: Sequence[etree._Element], *,
                    now: Optional[datetime] = None, max_skew: int = 300
                    ) -> VerifiedSignature:
    """Verify the WS-Security signature and that it covers exactly ``required``
    (the Body and headers the caller will use) plus the Timestamp."""
    header = _child(envelope, _HEADER)
    if header is None:
        raise _invalid("the message is not signed: it has no soap:Header "
                       "with a wsse:Security header")
    secs = _children_named(header, _SECURITY)
    if not secs:
        raise _invalid("the message is not signed: soap:Header has no wsse:Security")
    if len(secs) > 1:
        raise _invalid(f"soap:Header has {len(secs)} wsse:Security headers; "
                       "exactly one is allowed")
    sec = secs[0]
    sigs = list(sec.iter(_SIGNATURE))
    if len(sigs) != 1 or sigs[0].getparent() is not sec:
        raise _invalid(f"wsse:Security must hold exactly one ds:Signature directly, "
                       f"found {len(sigs)}")
    sig = sigs[0]
    ts = _one(sec, _TIMESTAMP, "wsse:Security")
    extra = [_name(c) for c in sec if isinstance(c.tag, str)
             and c.tag not in (_BST, _TIMESTAMP, _SIGNATURE)]
    if extra:
        raise _invalid("wsse:Security may hold only the BinarySecurityToken, the "
                       "Timestamp and the Signature; it also holds " + ", ".join(extra))
    ids = _ids(envelope)

    signed_info = _one(sig, _SIGNED_INFO, "ds:Signature")
    c14n = _child(signed_info, _C14N_METHOD)
    if c14n is None or c14n.get("Algorithm") != EXC_C14N or len(c14n):
        raise _invalid("ds:SignedInfo must use exclusive canonicalization "
                       f"({EXC_C14N})")
    method = _child(signed_info, _SIG_METHOD)
    method_uri = method.get("Algorithm") if method is not None else None
    key_type = _ALLOWED_SIG.get(method_uri)
    if key_type is None:
        raise _invalid(f"signature method {method_uri!r} is not accepted; use RSA or "
                       "ECDSA with SHA-256/384/512")

    wanted = {id(el): el for el in required}
    wanted[id(ts)] = ts
    covered: dict[int, etree._Element] = {}
    refs = []    # (the element a ds:Reference signs, its digest algorithm, DigestValue)
    for ref in _children_named(signed_info, _REFERENCE):
        target, alg, value = _check_reference(ref, ids)
        if id(target) in covered:
            raise _invalid(f"{_name(target)} is referenced twice by the signature")
        covered[id(target)] = target
        refs.append((target, alg, value))
    missing = [_name(el) for k, el in wanted.items() if k not in covered]
    if missing:
        raise _invalid("the signature does not cover " + ", ".join(missing) +
                       " (it must sign the Body, the X-Road headers and the Timestamp "
                       "of this message)")
    extra = [_name(el) for k, el in covered.items() if k not in wanted]
    if extra:
        raise _invalid("the signature covers elements the message does not use: " +
                       ", ".join(extra) + " (possible signature wrapping)")

    key_info = _one(sig, _KEY_INFO, "ds:Signature")
    token_ref = _one(_one(key_info, _STR, "ds:KeyInfo"), _WSSE_REF,
                     "wsse:SecurityTokenReference")
    bst = _local_ref(token_ref.get("URI"), ids, "wsse:SecurityTokenReference")
    if bst.tag != _BST or bst.getparent() is not sec:
        raise _invalid("ds:KeyInfo must point to a wsse:BinarySecurityToken in the "
                       "same wsse:Security header")
    if bst.get("ValueType") != X509V3:
        raise _invalid(f"wsse:BinarySecurityToken must hold an X.509 v3 certificate "
                       f"(ValueType {X509V3})")
    try:
        der = base64.b64decode("".join((bst.text or "").split()), validate=True)
        cert, xkey, cert_key_type = _peer_cert(der)
    except (ValueError, xmlsec.Error) as exc:
        raise XRoadError(errors.INCORRECT_CERTIFICATE,
                         f"the signer certificate in wsse:BinarySecurityToken cannot be "
                         f"read: {exc}")
    now = _aware(now)
    trust.validate(cert, now=now, usage="signing")
    if cert_key_type is not key_type:
        raise _invalid(f"signature method {method_uri} does not match the signer's "
                       "certificate key type")

    # XML-DSig core validation: each reference digest, then the signature over the
    # canonical SignedInfo (xmlsec checks the signature value).
    body_sha256 = None
    for target, alg, value in refs:
        expected = ((value.text or "") if value is not None else "").strip()
        raw_digest = _DIGESTS[alg](_exc_c14n(target)).digest()
        actual = _b64(raw_digest)
        if alg == _SHA256 and target.tag == _BODY and target.getparent() is envelope:
            body_sha256 = raw_digest.hex()
        if not hmac.compare_digest(expected, actual):
            raise XRoadError(errors.INVALID_SIGNATURE_VALUE,
                             f"the signature does not match the message: {_name(target)} "
                             "was changed after signing")
    value_el = _child(sig, _SIG_VALUE)
    try:
        sig_bytes = base64.b64decode("".join((value_el.text or "").split())
                                     if value_el is not None else "", validate=True)
    except ValueError:
        raise _invalid("ds:SignatureValue is not base64")
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = xkey
        ctx.verify_binary(_exc_c14n(signed_info), _XMLSEC_TRANSFORMS[method_uri], sig_bytes)
    except xmlsec.VerificationError:
        raise XRoadError(errors.INVALID_SIGNATURE_VALUE,
                         "the signature value does not match the signed information: "
                         "the signature was changed or made with another key")
    except xmlsec.Error as exc:
        raise _invalid(f"the signature could not be checked: {exc}")

    created = _parse_time(ts, _CREATED)
    expires = _parse_time(ts, _EXPIRES)
    skew = timedelta(seconds=max_skew)
    if created > now + skew:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"the message was created in the future ({_utc_text(created)}, "
                         f"now {_utc_text(now)}): check the clocks of both servers")
    if expires < now - skew:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"the message expired at {_utc_text(expires)} (now "
                         f"{_utc_text(now)}): it is too old or a clock is wrong")
    return VerifiedSignature(cert=cert, cert_der=der, created=created,
                             signature_value=sig_bytes, body_sha256=body_sha256)


# --------------------------------------------------------------------------- strip

def _drop_wsu_decl(el: etree._Element) -> None:
    """Remove the now unused wsu namespace declaration that signing left on ``el``.

    lxml can only drop unused declarations wholesale (``cleanup_namespaces``), which
    would also drop a default namespace that is declared but used by no element: such
    a declaration may still give meaning to QName-valued text, so in that one case
    the harmless ``xmlns:wsu`` stays.
    """
    keep: list[str] = []
    ours = False
    defaults: set[str] = set()
    for _, (prefix, uri) in etree.iterwalk(el, events=("start-ns",)):
        if uri == WSU_NS:
            ours = True
        elif not prefix:
            defaults.add(uri)
        else:
            keep.append(prefix)
    if not ours:
        return
    if defaults:
        used = {etree.QName(e).namespace for e in el.iter() if isinstance(e.tag, str)
                and e.prefix is None}
        if not defaults <= used:
            return
    etree.cleanup_namespaces(el, keep_ns_prefixes=keep)


def strip_security(envelope: etree._Element) -> None:
    """Remove what ``sign_envelope`` added, before the message goes to a local system.

    The soap:Header stays, even if empty.
    """
    header = _child(envelope, _HEADER)
    targets = _children_named(envelope, _BODY)
    if header is not None:
        for sec in _children_named(header, _SECURITY):
            header.remove(sec)
        targets.extend(el for el in header if isinstance(el.tag, str))
    for el in targets:
        if _WSU_ID in el.attrib:
            del el.attrib[_WSU_ID]
            _drop_wsu_decl(el)


# ------------------------------------------------------------------------ identity

@functools.lru_cache(maxsize=256)
def cert_member_id(cert: x509.Certificate) -> MemberId:
    """The member a signing certificate belongs to (subject serialNumber).

    Cached per certificate (peers sign with a handful; failures are not cached)."""
    values = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1:
        subject = cert.subject.rfc4514_string()
        raise XRoadError(errors.INCORRECT_CERTIFICATE,
                         f"certificate {subject!r} must have exactly one subject "
                         "serialNumber holding the member id INSTANCE/CLASS/CODE")
    text = values[0].value
    try:
        return MemberId.parse(text if isinstance(text, str) else text.decode())
    except (ValueError, XRoadError) as exc:
        subject = cert.subject.rfc4514_string()
        raise XRoadError(errors.INCORRECT_CERTIFICATE,
                         f"certificate {subject!r} serialNumber {text!r} is not a member "
                         f"id INSTANCE/CLASS/CODE: {exc}")
