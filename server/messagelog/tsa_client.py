"""RFC 3161 time-stamping client: build a request, POST it, verify the response.

Works with any RFC 3161 TSA.  Verification checks the status, the message imprint, the
nonce, the signer (the pinned TSA certificate, or the one in the token, which must have
the timeStamping extended key usage), the messageDigest signed attribute against the
TSTInfo, and the CMS signature over the signed attributes.
"""
from __future__ import annotations

import hashlib
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Optional

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

CONTENT_TYPE_QUERY = "application/timestamp-query"
CONTENT_TYPE_REPLY = "application/timestamp-reply"

_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
           "sha1": hashes.SHA1}


class TimestampError(Exception):
    """The TSA could not be reached, refused, or sent something that does not verify."""


@dataclass(frozen=True)
class TimestampToken:
    token_der: bytes         # the TimeStampToken (CMS ContentInfo) DER
    gen_time: datetime
    serial: int
    tsa_cert_der: bytes      # the certificate the token was verified against


def build_request(digest: bytes, nonce: Optional[int] = None,
                  hash_name: str = "sha256", cert_req: bool = True) -> tuple[bytes, int]:
    """DER TimeStampReq for ``digest`` (already hashed with ``hash_name``) and its nonce."""
    if nonce is None:
        nonce = secrets.randbits(63)
    req = tsp.TimeStampReq({
        "version": 1,
        "message_imprint": {"hash_algorithm": {"algorithm": hash_name},
                            "hashed_message": digest},
        "nonce": nonce,
        "cert_req": cert_req,
    })
    return req.dump(), nonce


def _hash(name: str, data: bytes) -> bytes:
    return hashlib.new(name, data).digest()


def _signer_matches(sid: cms.SignerIdentifier, cert: a_x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        ias = sid.chosen
        return (ias["issuer"] == cert.issuer
                and ias["serial_number"].native == cert.serial_number)
    if sid.name == "subject_key_identifier":
        return cert.key_identifier == sid.chosen.native
    return False


def _check_tsa_cert(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampError("TSA certificate has no extendedKeyUsage timeStamping")
    if ExtendedKeyUsageOID.TIME_STAMPING not in eku.value:
        raise TimestampError("TSA certificate is not for time-stamping (extendedKeyUsage)")


def _verify_signature(cert: x509.Certificate, signature: bytes, data: bytes,
                      hash_name: str, sig_algo: str) -> None:
    key = cert.public_key()
    h = _HASHES.get(hash_name)
    if h is None:
        raise TimestampError(f"unsupported digest algorithm {hash_name}")
    try:
        if isinstance(key, rsa.RSAPublicKey):
            if sig_algo == "rsassa_pss":
                key.verify(signature, data, padding.PSS(padding.MGF1(h()),
                                                        padding.PSS.AUTO), h())
            else:
                key.verify(signature, data, padding.PKCS1v15(), h())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(h()))
        else:
            raise TimestampError(f"unsupported TSA key type {type(key).__name__}")
    except InvalidSignature:
        raise TimestampError("time-stamp token signature does not verify with the TSA "
                             "certificate")


def verify_token(token_der: bytes, digest: Optional[bytes] = None,
                 tsa_cert_der: Optional[bytes] = None, nonce: Optional[int] = None,
                 hash_name: str = "sha256") -> TimestampToken:
    """Verify a TimeStampToken; return what it says.  Raises TimestampError.

    ``digest``: the imprint it must carry; ``tsa_cert_der``: the TSA certificate to
    pin (None: use the certificate included in the token).
    """
    try:
        ci = cms.ContentInfo.load(token_der)
        if ci["content_type"].native != "signed_data":
            raise TimestampError("time-stamp token is not CMS SignedData")
        sd = ci["content"]
        encap = sd["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise TimestampError("time-stamp token does not hold a TSTInfo")
        tst_bytes = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_bytes)
        signer_infos = sd["signer_infos"]
        if len(signer_infos) != 1:
            raise TimestampError("time-stamp token must have exactly one signer")
        si = signer_infos[0]
        included = [c.chosen for c in sd["certificates"]] if not isinstance(sd["certificates"], core.Void) else []
    except TimestampError:
        raise
    except Exception as exc:
        raise TimestampError(f"malformed time-stamp token: {exc}") from exc

    imprint = tst["message_imprint"]
    if digest is not None:
        if imprint["hash_algorithm"]["algorithm"].native != hash_name \
                or imprint["hashed_message"].native != digest:
            raise TimestampError("time-stamp token is for different data (message "
                                 "imprint mismatch)")
    if nonce is not None and tst["nonce"].native != nonce:
        raise TimestampError("time-stamp token nonce does not match the request")

    if tsa_cert_der is not None:
        signer_a = a_x509.Certificate.load(tsa_cert_der)
        if not _signer_matches(si["sid"], signer_a):
            raise TimestampError("time-stamp token was not signed by the expected TSA "
                                 "certificate")
    else:
        found = [c for c in included if _signer_matches(si["sid"], c)]
        if not found:
            raise TimestampError("time-stamp token does not include its TSA certificate")
        signer_a = found[0]
    cert = x509.load_der_x509_certificate(signer_a.dump())
    _check_tsa_cert(cert)

    digest_algo = si["digest_algorithm"]["algorithm"].native
    attrs = si["signed_attrs"]
    if isinstance(attrs, core.Void) or not len(attrs):
        raise TimestampError("time-stamp token has no signed attributes")
    md = None
    ctype = None
    for attr in attrs:
        t = attr["type"].native
        if t == "message_digest":
            md = attr["values"][0].native
        elif t == "content_type":
            ctype = attr["values"][0].native
    if ctype != "tst_info":
        raise TimestampError("time-stamp token content-type attribute is not TSTInfo")
    if md is None or md != _hash(digest_algo, tst_bytes):
        raise TimestampError("time-stamp token messageDigest does not match its TSTInfo")
    signed = attrs.dump()
    signed = b"\x31" + signed[1:]  # signed over the SET OF form, not the [0] IMPLICIT
    try:
        sig_algo = si["signature_algorithm"].signature_algo
    except ValueError as exc:
        raise TimestampError(f"unsupported signature algorithm: {exc}") from exc
    _verify_signature(cert, si["signature"].native, signed, digest_algo, sig_algo)
    return TimestampToken(token_der, tst["gen_time"].native, tst["serial_number"].native,
                          signer_a.dump())


class _TimeStampResp(core.Sequence):
    """TimeStampResp with the token OPTIONAL, as RFC 3161 has it (refusals carry none)."""

    _fields = [("status", tsp.PKIStatusInfo),
               ("time_stamp_token", cms.ContentInfo, {"optional": True})]


def parse_response(resp_der: bytes) -> bytes:
    """The token inside a TimeStampResp, or TimestampError if not granted."""
    try:
        resp = _TimeStampResp.load(resp_der)
        status = resp["status"]["status"].native
    except Exception as exc:
        raise TimestampError(f"malformed time-stamp response: {exc}") from exc
    if status not in ("granted", "granted_with_mods"):
        text = resp["status"]["status_string"].native
        fail = resp["status"]["fail_info"].native
        raise TimestampError(f"TSA refused the request: {status}"
                             + (f" ({', '.join(sorted(fail))})" if fail else "")
                             + (f": {' '.join(text)}" if text else ""))
    token = resp["time_stamp_token"]
    if isinstance(token, core.Void):   # (.native would decode the whole token: slow)
        raise TimestampError("TSA granted but sent no token")
    return token.dump()


class TsaClient:
    """Time-stamps digests at one TSA URL."""

    def __init__(self, url: str, tsa_cert_der: Optional[bytes] = None,
                 timeout: float = 20.0) -> None:
        self.url = url
        self.tsa_cert_der = tsa_cert_der
        self.timeout = timeout

    def timestamp(self, digest: bytes, hash_name: str = "sha256") -> TimestampToken:
        body, nonce = build_request(digest, hash_name=hash_name)
        req = urllib.request.Request(self.url, data=body, method="POST",
                                     headers={"Content-Type": CONTENT_TYPE_QUERY,
                                              "Accept": CONTENT_TYPE_REPLY})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read(1 << 20)
        except urllib.error.HTTPError as exc:
            raise TimestampError(f"TSA {self.url} answered HTTP {exc.code}") from exc
        except (OSError, urllib.error.URLError) as exc:
            raise TimestampError(f"cannot reach TSA {self.url}: {exc}") from exc
        token = parse_response(data)
        return verify_token(token, digest=digest, tsa_cert_der=self.tsa_cert_der,
                            nonce=nonce, hash_name=hash_name)
