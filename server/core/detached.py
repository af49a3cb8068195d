"""Detached XML-DSig signatures over the exact bytes of a message, between tunduk servers.

Why not WS-Security inside the envelope: it signs elements, so each one must get an ID,
be canonicalised on both sides, checked against wrapping, and the security header
stripped and the message re-serialised before a local system sees it; that bookkeeping
was ~60 % of the core's CPU (docs/design/detached-signatures.md).  Here the signer
commits to the message *bytes*, as X-Road does with its separate signature part, so
nothing can be wrapped and the bytes travel on unchanged.

The signature document (``ds:Signature``, built as text in canonical form) has exactly
two references: ``cid:message``, the SHA-256 of the message bytes, and ``#props``, a
``ds:Object`` holding the message's Content-Type, a ``wsu:Timestamp`` and, for a
request, the X-Road requestHash of the client's original SOAP message and a random
nonce.  Verification accepts that shape and nothing else.

One signing act has one SignedInfo (its digest is the replay key a provider
remembers), and one signature value: ECDSA signatures are written and accepted only
with a low s (an (r, n-s) twin would otherwise pass as another signature), and a
signature may live at most ``MAX_LIFETIME`` seconds, clocks differing by at most
``MAX_SKEW``.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import string
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import NamedTuple, Optional

import xmlsec
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from lxml import etree

from . import errors
from .errors import XRoadError
from .signing import (_ALLOWED_SIG, _DIGESTS, _SHA256, _XMLSEC_TRANSFORMS, DS_NS, EXC_C14N,
                      WSU_NS, SigningKey, TrustAnchor, _aware, _fragment_parser, _peer_cert,
                      _utc_text)

TUNDUK_SIG_NS = "urn:tunduk:xsd:signature:1"
MESSAGE_URI = "cid:message"
PROPS_ID = "props"
MAX_SIGNATURE_BYTES = 32 * 1024
SIGNATURE_HEADER = "X-Tunduk-Signature"
MAX_LIFETIME = 300       # s between a signature's Created and Expires, at most
MAX_SKEW = 60            # s two servers' clocks may differ

#: Order of the group of each curve tunduk signs with: a low s is at most half of it.
_CURVE_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
                     "581A0DB248B0A77AECEC196ACCC52973", 16),
    "secp521r1": int("01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
                     "FFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E9138"
                     "6409", 16),
}

_DS = f"{{{DS_NS}}}"
_T = f"{{{TUNDUK_SIG_NS}}}"
_W = f"{{{WSU_NS}}}"


@dataclass(frozen=True)
class VerifiedMessage:
    """What a verified message proves: who signed which bytes, when."""

    cert: x509.Certificate
    cert_der: bytes
    created: datetime
    signature_value: bytes
    request_hash: Optional[str]     # a request's requestHash (None on a response)
    expires: Optional[datetime] = None
    #: SHA-256 (hex) of the signed SignedInfo: one per signing act, whatever the
    #: signature value
    replay_key: Optional[str] = None


def escape(text: str) -> str:
    """XML character data (xml.sax.saxutils would pull urllib into the core)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _invalid(message: str) -> XRoadError:
    return XRoadError(errors.INVALID_SIGNATURE, message)


# ------------------------------------------------------------------- the document
#
# One template, written in exclusive canonical form: the signer fills it in, so the
# SignedInfo and ds:Object substrings are their own canonical forms (what is signed
# and digested), and the verifier matches a received document against the same
# template compiled to a regular expression.  Only the ``{field}`` parts vary.

_PROPS = (f'<ds:Object xmlns:ds="{DS_NS}" Id="{PROPS_ID}"><tsig:properties '
          f'xmlns:tsig="{TUNDUK_SIG_NS}"><tsig:contentType>{{content_type}}'
          f'</tsig:contentType>{{request_hash}}<tsig:nonce>{{nonce}}</tsig:nonce>'
          f'<wsu:Timestamp xmlns:wsu="{WSU_NS}">'
          '<wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires>'
          '</wsu:Timestamp></tsig:properties></ds:Object>')
_REQUEST_HASH = "<tsig:requestHash>{request_hash}</tsig:requestHash>"
_SIGNED_INFO = (
    f'<ds:SignedInfo xmlns:ds="{DS_NS}"><ds:CanonicalizationMethod Algorithm='
    f'"{EXC_C14N}"></ds:CanonicalizationMethod><ds:SignatureMethod Algorithm='
    f'"{{method}}"></ds:SignatureMethod><ds:Reference URI="{MESSAGE_URI}">'
    '<ds:DigestMethod Algorithm="{message_digest_method}"></ds:DigestMethod>'
    '<ds:DigestValue>{message_digest}</ds:DigestValue></ds:Reference>'
    f'<ds:Reference URI="#{PROPS_ID}"><ds:Transforms><ds:Transform Algorithm='
    f'"{EXC_C14N}"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm='
    '"{props_digest_method}"></ds:DigestMethod><ds:DigestValue>{props_digest}'
    '</ds:DigestValue></ds:Reference></ds:SignedInfo>')
_SIGNATURE = (f'<ds:Signature xmlns:ds="{DS_NS}">{{signed_info}}<ds:SignatureValue>'
              '{signature_value}</ds:SignatureValue><ds:KeyInfo><ds:X509Data>'
              '<ds:X509Certificate>{certificate}</ds:X509Certificate></ds:X509Data>'
              '</ds:KeyInfo>{props}</ds:Signature>')


def _pattern(template: str, fields: dict[str, str]) -> str:
    """``template`` as a regular expression: literal text escaped, each field replaced
    by its pattern."""
    out = []
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name is not None:
            out.append(fields[name])
    return "".join(out)


def _one_of(uris) -> str:
    return "|".join(re.escape(u) for u in uris)


_B64_RE = "[A-Za-z0-9+/]*={0,2}"
_TIME_RE = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z"
_EXACT = re.compile(_pattern(_SIGNATURE, {
    "signed_info": "(?P<signed_info>%s)" % _pattern(_SIGNED_INFO, {
        "method": f"(?P<method>{_one_of(_ALLOWED_SIG)})",
        "message_digest_method": f"(?P<message_digest_method>{_one_of(_DIGESTS)})",
        "message_digest": f"(?P<message_digest>{_B64_RE})",
        "props_digest_method": f"(?P<props_digest_method>{_one_of(_DIGESTS)})",
        "props_digest": f"(?P<props_digest>{_B64_RE})"}),
    "signature_value": f"(?P<signature_value>{_B64_RE})",
    "certificate": f"(?P<certificate>{_B64_RE})",
    "props": "(?P<props>%s)" % _pattern(_PROPS, {
        "content_type": "(?P<content_type>[^<]*)",
        "request_hash": "(?:%s)?" % _pattern(
            _REQUEST_HASH, {"request_hash": f"(?P<request_hash>{_B64_RE})"}),
        "nonce": f"(?P<nonce>{_B64_RE})",
        "created": f"(?P<created>{_TIME_RE})",
        "expires": f"(?P<expires>{_TIME_RE})"}),
}))

# What a Content-Type may hold to be signed: XML character data without control
# characters (a tab is allowed), so that the signature and the logged record stay XML.
_SIGNABLE_TEXT = re.compile("[\t\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*")


# ---------------------------------------------------------------------------- sign

def sign_message(data: bytes, content_type: str, key: SigningKey, *,
                 request_hash: Optional[str] = None, ttl: int = MAX_LIFETIME,
                 now: Optional[datetime] = None) -> bytes:
    """The signature document over ``data`` as sent with ``content_type``; a fresh
    nonce makes each call a signing act of its own."""
    if not _SIGNABLE_TEXT.fullmatch(content_type):
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"Content-Type {content_type!r} holds control characters")
    now = now or datetime.now(timezone.utc)
    props = _PROPS.format(
        content_type=escape(content_type),
        request_hash=(_REQUEST_HASH.format(request_hash=escape(request_hash))
                      if request_hash is not None else ""),
        nonce=_b64(os.urandom(16)),
        created=_utc_text(now), expires=_utc_text(now + timedelta(seconds=ttl)))
    signed_info = _SIGNED_INFO.format(
        method=key._method_uri,
        message_digest_method=_SHA256, message_digest=_b64(hashlib.sha256(data).digest()),
        props_digest_method=_SHA256,
        props_digest=_b64(hashlib.sha256(props.encode()).digest()))
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = key._key
        raw = ctx.sign_binary(signed_info.encode(), _XMLSEC_TRANSFORMS[key._method_uri])
    except xmlsec.Error as exc:
        raise XRoadError(errors.INTERNAL_ERROR, f"signing the message failed: {exc}")
    order = _curve_order(key.cert)
    if order is not None:
        raw = _low_s(raw, order)
    return _SIGNATURE.format(signed_info=signed_info, signature_value=_b64(raw),
                             certificate=key._cert_b64, props=props).encode()


def _low_s(raw: bytes, order: int) -> bytes:
    """An ECDSA signature (r || s, fixed width) with s replaced by n - s when s is in
    the upper half: the same signature, in the one form verifiers accept."""
    half = len(raw) // 2
    s = int.from_bytes(raw[half:], "big")
    if s <= order // 2:
        return raw
    return raw[:half] + (order - s).to_bytes(half, "big")


def _curve_order(cert: x509.Certificate) -> Optional[int]:
    """The group order of an EC certificate's curve (None for RSA)."""
    return _CURVE_ORDERS.get(getattr(getattr(cert.public_key(), "curve", None), "name",
                                     None))


def _high_s(raw: bytes, cert: x509.Certificate) -> bool:
    order = _curve_order(cert)
    return order is not None and int.from_bytes(raw[len(raw) // 2:], "big") > order // 2


def header_value(signature: bytes) -> str:
    """The signature as an HTTP header value."""
    return _b64(signature)


def from_header(value: Optional[str]) -> Optional[bytes]:
    """The signature document from an HTTP header value (None if there is none)."""
    if value is None:
        return None
    if len(value) > MAX_SIGNATURE_BYTES * 4 // 3 + 4:
        raise _invalid(f"the {SIGNATURE_HEADER} header is larger than "
                       f"{MAX_SIGNATURE_BYTES} bytes")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"the {SIGNATURE_HEADER} header is not base64") from None


# -------------------------------------------------------------------------- verify

class _Checked(NamedTuple):
    """A signature whose shape, digests and value were checked (not trust or times)."""

    cert_der: bytes
    cert: x509.Certificate
    signature_value: bytes
    created: Optional[str]       # None only from a logged document without them
    expires: Optional[str]
    request_hash: Optional[str]
    signed_info: bytes           # the canonical SignedInfo that was signed


_WSSE_NS = (b"http://docs.oasis-open.org/wss/2004/01/"
            b"oasis-200401-wss-wssecurity-secext-1.0.xsd")


def _why_unsigned(data: bytes) -> str:
    """What the operator should do about a message without a signature header."""
    if _WSSE_NS in data:
        return (f"the message is not signed the way this server expects: no "
                f"{SIGNATURE_HEADER} header, but a WS-Security header inside the envelope "
                "— the other security server runs a tunduk version from before detached "
                "signatures; both servers of an exchange must run a version with them: "
                "upgrade that server")
    return (f"the message is not signed: no {SIGNATURE_HEADER} header (the sender is not "
            "a tunduk security server, or something between the two servers removed the "
            "header)")


def _check(data: bytes, content_type: str, signature: bytes,
           cert_der: Optional[bytes], *, exact: bool = True) -> _Checked:
    """Check a document in exactly the form ``sign_message`` writes.

    Matching the template is stricter than parsing it and needs no parser or
    canonicaliser: the SignedInfo and ds:Object are verified as the very bytes that
    were signed and digested.  Any other document goes to ``_check_structure``, which
    parses it and says what is wrong; with ``exact`` it is refused even if that finds
    nothing (live messages), without it it is accepted then (records logged by an
    older version, which accepted any formatting of the same XML)."""
    if len(signature) > MAX_SIGNATURE_BYTES:
        raise _invalid(f"the signature document is larger than {MAX_SIGNATURE_BYTES} bytes")
    try:
        m = _EXACT.fullmatch(signature.decode("utf-8"))
    except UnicodeDecodeError:
        m = None
    if m is None:
        checked = _check_structure(data, content_type, signature, cert_der)
        if exact:
            raise _invalid("the signature document is not in the exact form tunduk "
                           "servers write (it was re-serialised, or made by other "
                           "software)")
        return checked
    der, cert, sig_bytes = _check_crypto(
        data, cert_der, m["certificate"], m["method"],
        m["message_digest_method"], m["message_digest"], m["props_digest_method"],
        m["props_digest"], m["props"].encode(), m["signed_info"].encode(),
        m["signature_value"])
    signed_type = m["content_type"]
    if signed_type != escape(content_type):
        raise _content_type_mismatch(content_type, _unescape(signed_type))
    if not _SIGNABLE_TEXT.fullmatch(content_type):   # only a key holder could sign it
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"Content-Type {content_type!r} holds control characters")
    return _Checked(der, cert, sig_bytes, m["created"], m["expires"], m["request_hash"],
                    m["signed_info"].encode())


def _check_crypto(data: bytes, cert_der: Optional[bytes], cert_b64: str, method_uri: str,
                  msg_alg: str, msg_digest: str, props_alg: str, props_digest: str,
                  props: bytes, signed_info: bytes, value_b64: str
                  ) -> tuple[bytes, x509.Certificate, bytes]:
    """The signer certificate, both digests and the signature value over the canonical
    SignedInfo.  Returns (certificate DER, certificate, signature value)."""
    try:
        der = _strict_b64decode(cert_b64)
        cert, xkey, key_type = _peer_cert(der)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion,
            xmlsec.Error) as exc:
        raise XRoadError(errors.INCORRECT_CERTIFICATE,
                         f"the signer certificate in the signature cannot be read: {exc}")
    if cert_der is not None and der != cert_der:
        raise _invalid("the signature's certificate is not the logged signer certificate")
    if key_type is not _ALLOWED_SIG[method_uri]:
        raise _invalid(f"signature method {method_uri} does not match the signer's "
                       "certificate key type")
    if not _digest_matches(msg_alg, data, msg_digest):
        raise XRoadError(errors.INVALID_SIGNATURE_VALUE,
                         "the signature does not match the message: the message was "
                         "changed after signing")
    if not _digest_matches(props_alg, props, props_digest):
        raise XRoadError(errors.INVALID_SIGNATURE_VALUE,
                         "the signature does not match its properties (content type, "
                         "time): they were changed after signing")
    try:
        sig_bytes = _strict_b64decode(value_b64)
    except ValueError:
        raise _invalid("ds:SignatureValue is not base64") from None
    ctx = xmlsec.SignatureContext()
    try:
        ctx.key = xkey
        ctx.verify_binary(signed_info, _XMLSEC_TRANSFORMS[method_uri], sig_bytes)
    except xmlsec.VerificationError:
        raise XRoadError(errors.INVALID_SIGNATURE_VALUE,
                         "the signature value does not match the signed information: the "
                         "signature was changed or made with another key") from None
    except xmlsec.Error as exc:
        raise _invalid(f"the signature could not be checked: {exc}") from None
    return der, cert, sig_bytes


def _strict_b64decode(text: str) -> bytes:
    """Base64 in its one canonical spelling: a decoder ignores the spare bits of the
    last character, so without this check four documents would carry one signature."""
    data = base64.b64decode(text, validate=True)
    if _b64(data) != text:
        raise ValueError("base64 is not in canonical form")
    return data


def _digest_matches(alg: str, data: bytes, expected: str) -> bool:
    return expected.isascii() and \
        hmac.compare_digest(_b64(_DIGESTS[alg](data).digest()), expected)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _content_type_mismatch(sent: str, signed: Optional[str]) -> XRoadError:
    return XRoadError(errors.INVALID_SIGNATURE_VALUE,
                      f"the message was sent as {sent!r} but signed as {signed!r}")


def _time(text: Optional[str], what: str) -> datetime:
    text = (text or "").strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"the signature's {what} time is missing or not an ISO 8601 UTC "
                         f"time: {text!r}")
    return value


def verify_message(data: bytes, content_type: str, signature: Optional[bytes],
                   trust: TrustAnchor, *, now: Optional[datetime] = None,
                   max_skew: int = MAX_SKEW,
                   max_lifetime: int = MAX_LIFETIME) -> VerifiedMessage:
    """Verify ``signature`` over ``data`` received as ``content_type``; the signer's
    certificate must be trusted and valid now, the signature fresh, canonical (low s)
    and not claim a lifetime over ``max_lifetime``."""
    if signature is None:
        raise _invalid(_why_unsigned(data))
    checked = _check(data, content_type, signature, None)
    if _high_s(checked.signature_value, checked.cert):
        raise XRoadError(errors.INVALID_SIGNATURE_VALUE,
                         "the ECDSA signature is not in canonical form (its s is in the "
                         "upper half of the group order): sign with a low s")
    now = _aware(now)
    trust.validate(checked.cert, now=now, usage="signing")
    created = _time(checked.created, "creation")
    expires = _time(checked.expires, "expiry")
    if not timedelta(0) < expires - created <= timedelta(seconds=max_lifetime):
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"the signature is valid from {_utc_text(created)} to "
                         f"{_utc_text(expires)}; a signature may live at most "
                         f"{max_lifetime} s after it was created")
    skew = timedelta(seconds=max_skew)
    if created > now + skew:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"the message was created in the future ({_utc_text(created)}, "
                         f"now {_utc_text(now)}): check the clocks of both servers")
    if expires < now - skew:
        raise XRoadError(errors.INVALID_TIMESTAMP,
                         f"the message expired at {_utc_text(expires)} (now "
                         f"{_utc_text(now)}): it is too old or a clock is wrong")
    return VerifiedMessage(checked.cert, checked.cert_der, created,
                           checked.signature_value, checked.request_hash, expires,
                           hashlib.sha256(checked.signed_info).hexdigest())


# ------------------------------------------------ documents not in the exact form
#
# Parsed, shape-checked and canonicalised: says what is wrong with a document (a
# missing reference, a foreign algorithm, a changed property ...) and lets archive
# verification read records whose signature an older version accepted.

def _check_structure(data: bytes, content_type: str, signature: bytes,
                     cert_der: Optional[bytes]) -> _Checked:
    root = _parse(signature)
    signed_info, value_el, key_info, obj = _shape(
        root, (_DS + "SignedInfo", _DS + "SignatureValue", _DS + "KeyInfo", _DS + "Object"),
        "ds:Signature")
    c14n, method, ref_msg, ref_props = _shape(
        signed_info, (_DS + "CanonicalizationMethod", _DS + "SignatureMethod",
                      _DS + "Reference", _DS + "Reference"), "ds:SignedInfo")
    _algorithm(c14n, (EXC_C14N,), "canonicalization method")
    method_uri = _algorithm(method, _ALLOWED_SIG, "signature method")
    msg_alg, msg_digest = _reference(ref_msg, MESSAGE_URI, transforms=False)
    props_alg, props_digest = _reference(ref_props, f"#{PROPS_ID}", transforms=True)
    if set(obj.attrib) != {"Id"} or obj.get("Id") != PROPS_ID:
        raise _invalid(f"ds:Object must have exactly Id={PROPS_ID!r}")
    (props,) = _shape(obj, (_T + "properties",), "ds:Object")
    (x509data,) = _shape(key_info, (_DS + "X509Data",), "ds:KeyInfo")
    (cert_el,) = _shape(x509data, (_DS + "X509Certificate",), "ds:X509Data")
    try:
        props_c14n = etree.tostring(obj, method="c14n", exclusive=True)
        signed_info_c14n = etree.tostring(signed_info, method="c14n", exclusive=True)
    except etree.C14NError as exc:      # e.g. a relative namespace URI
        raise _invalid(f"the signature cannot be canonicalised: {exc}") from None
    der, cert, sig_bytes = _check_crypto(
        data, cert_der, _squeeze(cert_el.text), method_uri, msg_alg, msg_digest,
        props_alg, props_digest, props_c14n, signed_info_c14n, _squeeze(value_el.text))
    signed_type = props.findtext(f"{_T}contentType")
    if signed_type != content_type:
        raise _content_type_mismatch(content_type, signed_type)
    rh = props.findtext(f"{_T}requestHash")
    return _Checked(der, cert, sig_bytes, props.findtext(f"{_W}Timestamp/{_W}Created"),
                    props.findtext(f"{_W}Timestamp/{_W}Expires"),
                    rh.strip() if rh is not None else None, signed_info_c14n)


def _squeeze(text: Optional[str]) -> str:
    return "".join((text or "").split())


def _parse(signature: bytes) -> etree._Element:
    # Only the element, in UTF-8: the message log embeds these bytes as they came, so
    # nothing may stand before or after it (an XML declaration there, or another
    # encoding, would make the logged record unreadable).
    if not signature.startswith(b"<") or signature[1:2] in (b"?", b"!"):
        raise _invalid("the signature document must be the ds:Signature element alone, "
                       "in UTF-8, without an XML declaration")
    try:
        root = etree.fromstring(signature, _fragment_parser())
    except etree.XMLSyntaxError as exc:
        raise _invalid(f"the signature document is not well-formed XML: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise _invalid("the signature document must not have a DOCTYPE")
    if root.getprevious() is not None or root.getnext() is not None:
        raise _invalid("the signature document must hold nothing but ds:Signature")
    if root.tag != _DS + "Signature":
        raise _invalid(f"the signature document is a {etree.QName(root).localname}, "
                       "not a ds:Signature")
    return root


def _elements(parent: etree._Element) -> list[etree._Element]:
    """Child elements; comments, processing instructions and text are refused."""
    if parent.text and parent.text.strip():
        raise _invalid("unexpected text in the signature")
    out = []
    for child in parent:
        if not isinstance(child.tag, str):
            raise _invalid(f"unexpected {type(child).__name__} in the signature")
        if child.tail and child.tail.strip():
            raise _invalid("unexpected text in the signature")
        out.append(child)
    return out


def _shape(parent: etree._Element, tags: tuple[str, ...], what: str) -> list:
    found = _elements(parent)
    if [c.tag for c in found] != list(tags):
        names = [etree.QName(c).localname for c in found]
        want = [etree.QName(t).localname for t in tags]
        raise _invalid(f"{what} must hold exactly {want}, found {names}")
    return found


def _algorithm(el: etree._Element, allowed, what: str) -> str:
    alg = el.get("Algorithm")
    if alg not in allowed or len(el):
        raise _invalid(f"{what} {alg!r} is not accepted")
    return alg


def _reference(ref: etree._Element, uri: str, transforms: bool) -> tuple[str, str]:
    """(digest algorithm, expected digest value) of a ds:Reference of the fixed shape."""
    if ref.get("URI") != uri or set(ref.attrib) != {"URI"}:
        raise _invalid(f"signature reference must have URI {uri!r}, found "
                       f"{ref.get('URI')!r}")
    if transforms:
        tr, method, value = _shape(ref, (_DS + "Transforms", _DS + "DigestMethod",
                                         _DS + "DigestValue"), f"reference {uri}")
        (t,) = _shape(tr, (_DS + "Transform",), "ds:Transforms")
        _algorithm(t, (EXC_C14N,), f"reference {uri} transform")
    else:
        method, value = _shape(ref, (_DS + "DigestMethod", _DS + "DigestValue"),
                               f"reference {uri}")
    alg = _algorithm(method, _DIGESTS, f"reference {uri} digest method")
    return alg, _squeeze(value.text)


# ------------------------------------------------------------------------ offline

def check_logged(data: bytes, content_type: str, signature: bytes,
                 cert_der: bytes) -> Optional[str]:
    """Offline check of a logged message (archive verification): the signature matches
    the bytes and was made with ``cert_der``.  None if so, else what is wrong.  Trust
    and times are not checked: the certificate may have expired since."""
    try:
        _check(data, content_type, signature, cert_der, exact=False)
    except XRoadError as exc:
        return exc.message
    return None
