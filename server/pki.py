"""Development PKI: one CA that directly signs every member's signing certificate and
every security server's auth (TLS) certificate.

Good enough for development, tests and the demo; a production federation would use
real certification authorities and keep keys in hardware.  Private keys are written
unencrypted with mode 0600 and never printed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import ipaddress
import os
from pathlib import Path
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .core.identifiers import MemberId

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]

CA_DAYS = 3650
CERT_DAYS = 730
KEY_TYPES = ("rsa", "ec")


def generate_key(key_type: str = "ec") -> PrivateKey:
    """A fresh RSA-2048 or ECDSA P-256 private key."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"key type must be one of {KEY_TYPES}, got {key_type!r}")


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write ``key`` as unencrypted PEM, creating the file with mode 0600 from the start
    (no window in which the key is world-readable).  An existing file is replaced."""
    data = key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    path = Path(path)
    if path.exists() or path.is_symlink():
        path.unlink()  # O_CREAT keeps an old file's mode; start from a fresh inode
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def load_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{path}: only RSA and EC private keys are supported")
    return key


def load_cert(data: bytes) -> x509.Certificate:
    """Parse one certificate, PEM or DER."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def fingerprint_sha256(cert_pem_or_der: bytes) -> str:
    """Lowercase hex SHA-256 of the certificate's DER encoding (how the federation
    names a server's auth certificate)."""
    der = load_cert(cert_pem_or_der).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def cert_serial_number_attr(cert: x509.Certificate) -> Optional[str]:
    """The subject's serialNumber attribute (our member id), or None."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return str(attrs[0].value) if attrs else None


# ------------------------------------------------------------------ what a cert is for
#
# A signing certificate makes non-repudiable signatures, so it must say so
# (nonRepudiation, called contentCommitment in RFC 5280 and here); a TLS (auth)
# certificate must be usable by both ends of a mutual TLS connection.  The key of one
# must never serve as the other: anyone holding a server's TLS key could then sign for
# its member.  check-conf applies these rules to a server's own certificates; the
# message verifier (core/signing.py) applies the signing rule to every signer.

TLS_USAGES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
              ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def _extension(cert: x509.Certificate, kind: type) -> Optional[x509.ExtensionType]:
    """The value of the extension of class ``kind``, or None (also if unreadable)."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):
        return None


def sign_cert_problem(cert: x509.Certificate) -> Optional[str]:
    """Why ``cert`` cannot be a member's signing certificate, or None if it can."""
    ku = _extension(cert, x509.KeyUsage)
    if ku is None or not ku.content_commitment:
        return ("has no nonRepudiation (contentCommitment) key usage, so it is not a "
                "signing certificate (a TLS certificate?)")
    return None


def auth_cert_problem(cert: x509.Certificate) -> Optional[str]:
    """Why ``cert`` cannot be a security server's TLS (auth) certificate, or None."""
    eku = _extension(cert, x509.ExtendedKeyUsage)
    missing = [name for oid, name in TLS_USAGES.items() if eku is None or oid not in eku]
    if missing:
        return (f"has no extended key usage {' and '.join(missing)}, so it is not a TLS "
                "certificate (a signing certificate?)")
    return None


def _validity(not_before: Optional[_dt.datetime], days: int) -> tuple[_dt.datetime, _dt.datetime]:
    start = not_before or (_dt.datetime.now(_dt.timezone.utc) - _dt.timedelta(minutes=5))
    if start.tzinfo is None:
        start = start.replace(tzinfo=_dt.timezone.utc)
    return start, start + _dt.timedelta(days=days)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    Path(path).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(ca_key: Path, ca_cert: Path) -> tuple[PrivateKey, x509.Certificate]:
    return load_private_key(ca_key), load_cert(Path(ca_cert).read_bytes())


def create_ca(out_dir: Path, name: str = "tunduk development CA", key_type: str = "ec",
              *, not_before: Optional[_dt.datetime] = None,
              days: int = CA_DAYS) -> tuple[Path, Path]:
    """Create ``out_dir/ca.key`` and ``out_dir/ca.pem``: a self-signed CA."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    key = generate_key(key_type)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start, end = _validity(not_before, days)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = out_dir / "ca.key", out_dir / "ca.pem"
    write_private_key(key_path, key)
    _write_cert(cert_path, cert)
    return key_path, cert_path


def _issue(ca_key: Path, ca_cert: Path, subject: x509.Name, key_type: str,
           extensions: list[tuple[x509.ExtensionType, bool]], out_key: Path,
           out_cert: Path, not_before: Optional[_dt.datetime], days: int) -> x509.Certificate:
    issuer_key, issuer = _load_ca(ca_key, ca_cert)
    key = generate_key(key_type)
    start, end = _validity(not_before, days)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(issuer_key, hashes.SHA256())
    Path(out_key).parent.mkdir(parents=True, exist_ok=True)
    Path(out_cert).parent.mkdir(parents=True, exist_ok=True)
    write_private_key(Path(out_key), key)
    _write_cert(Path(out_cert), cert)
    return cert


def _member_subject(cn: str, member: MemberId, member_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, member_name),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, str(member)),
    ])


def issue_sign_cert(ca_key: Path, ca_cert: Path, member: MemberId, member_name: str,
                    out_key: Path, out_cert: Path, key_type: str = "rsa", *,
                    not_before: Optional[_dt.datetime] = None,
                    days: int = CERT_DAYS) -> x509.Certificate:
    """Issue a member's signing certificate (CN=member code, serialNumber=member id)."""
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=True, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False)
    return _issue(ca_key, ca_cert, _member_subject(member.member_code, member, member_name),
                  key_type, [(usage, True)], out_key, out_cert, not_before, days)


def issue_auth_cert(ca_key: Path, ca_cert: Path, member: MemberId, member_name: str,
                    server_code: str, out_key: Path, out_cert: Path, key_type: str = "rsa",
                    *, not_before: Optional[_dt.datetime] = None,
                    days: int = CERT_DAYS) -> x509.Certificate:
    """Issue a security server's TLS certificate (CN=server code, serialNumber=owner id,
    valid for localhost/127.0.0.1, usable as TLS server and client)."""
    # keyEncipherment is meaningless for EC keys, but the convention asks for it and
    # TLS stacks accept it; keep both key types identical in shape.
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=True,
        data_encipherment=False, key_agreement=False, key_cert_sign=False,
        crl_sign=False, encipher_only=False, decipher_only=False)
    eku = x509.ExtendedKeyUsage(list(TLS_USAGES))
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ])
    return _issue(ca_key, ca_cert, _member_subject(server_code, member, member_name),
                  key_type, [(usage, True), (eku, False), (san, False)],
                  out_key, out_cert, not_before, days)
