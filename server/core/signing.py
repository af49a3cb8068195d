"""Signing keys, the federation's trust anchor and the checks on signer certificates.

The XML-DSig signature itself (detached, over the exact message bytes) is
core/detached.py; this module loads keys once (xmlsec and cryptography objects),
validates certificates against the federation CAs with a per-certificate cache, maps a
certificate to its member, and holds the algorithm tables both use.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import xmlsec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from . import errors
from .errors import XRoadError
from .identifiers import MemberId

if TYPE_CHECKING:
    from ..conf.model import Federation

WSU_NS = ("http://docs.oasis-open.org/wss/2004/01/"
          "oasis-200401-wss-wssecurity-utility-1.0.xsd")
DS_NS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"

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
                             f"{_name(lambda: cert.issuer)!r}) was not issued by a "
                             "trusted CA of this federation")
        try:
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            raise XRoadError(errors.CERT_VALIDATION,
                             f"certificate {_subject(cert)!r} has no keyUsage extension")
        except ValueError as exc:       # the extensions are parsed only now
            raise XRoadError(errors.CERT_VALIDATION,
                             f"certificate {_subject(cert)!r} has unreadable extensions: "
                             f"{exc}")
        if usage == "signing":
            _check_non_repudiation(cert, ku)
        elif not ku.digital_signature:
            raise XRoadError(errors.CERT_VALIDATION,
                             f"certificate {_subject(cert)!r} key usage does not allow "
                             f"{usage}")
        return (cert, ca, (cert.not_valid_before_utc, cert.not_valid_after_utc),
                (ca.not_valid_before_utc, ca.not_valid_after_utc))

    def validate(self, cert: x509.Certificate, *, now: Optional[datetime] = None,
                 usage: str = "signing") -> None:
        """Accept ``cert`` only if a trusted CA issued it, it is valid now, and its
        key usage allows ``usage``; raise ``XRoadError(CertValidation)`` otherwise
        (``IncorrectCertificate`` for a signing certificate without nonRepudiation)."""
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


def _check_non_repudiation(cert: x509.Certificate, ku: x509.KeyUsage) -> None:
    """A message signature is non-repudiable, so its certificate must allow that: a
    certificate with digitalSignature alone is a TLS (auth) certificate, and a stolen
    TLS key must not be able to sign for its member."""
    if not ku.content_commitment:
        raise XRoadError(errors.INCORRECT_CERTIFICATE,
                         f"certificate {_subject(cert)!r} has no nonRepudiation "
                         "(contentCommitment) key usage: it is not a signing certificate "
                         "(a TLS certificate?); the sender must sign with its member's "
                         "signing certificate")


def refuse_auth_cert(cert_der: bytes, federation: "Federation") -> None:
    """Refuse a signer certificate that is a registered TLS (auth) certificate of any
    security server of the federation: a TLS key signs handshakes, not messages,
    whatever key usages its certificate claims."""
    fingerprint = hashlib.sha256(cert_der).hexdigest()
    for server in federation.servers:
        if fingerprint in server.auth_cert_sha256:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             f"the message is signed with the TLS (auth) certificate of "
                             f"security server {server} (sha256 {fingerprint[:16]}…): "
                             "the sender must sign with its member's signing certificate")


def _aware(now: Optional[datetime]) -> datetime:
    """``now`` as an aware datetime (naive values are taken as UTC)."""
    if now is None:
        return datetime.now(timezone.utc)
    return now if now.tzinfo is not None else now.replace(tzinfo=timezone.utc)


def _subject(cert: x509.Certificate) -> str:
    return _name(lambda: cert.subject)


def _name(read) -> str:
    """A certificate name for a message; the library parses names only when read, so
    a malformed one would otherwise turn a refusal into a crash."""
    try:
        return read().rfc4514_string()
    except ValueError:
        return "(unreadable name)"


_local = threading.local()


def _fragment_parser() -> etree.XMLParser:
    """This thread's parser (lxml parsers are bound to their thread's dictionary)."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(resolve_entities=False, no_network=True,
                                                 load_dtd=False)
    return parser


def _utc_text(t: datetime) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2024-05-01T10:00:00.000Z (what
    ``isoformat(timespec="milliseconds")`` writes, formatted directly: it is cheaper)."""
    t = t.astimezone(timezone.utc)
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond // 1000:03d}Z")


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
