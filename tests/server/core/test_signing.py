"""Signing keys, the trust anchor and signer identity (the signature itself:
test_detached.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fixtures.certs_for_signing import NOW, make_ca, make_signing_cert
from tunduk.server.core import detached, errors, signing
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.identifiers import MemberId

MESSAGE = b"<m/>"
CTYPE = "text/xml; charset=utf-8"


def expect(code: str, fn, *args, **kw) -> XRoadError:
    with pytest.raises(XRoadError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value.message
    assert info.value.message
    return info.value


def signed_by(key: signing.SigningKey, now=NOW) -> bytes:
    return detached.sign_message(MESSAGE, CTYPE, key, now=now)


def verify(sig: bytes, trust, now=NOW):
    return detached.verify_message(MESSAGE, CTYPE, sig, trust, now=now)


def test_algorithm_follows_key_type(ca):
    rsa_issued = make_signing_cert(ca, kind="rsa")
    ec_issued = make_signing_cert(ca, kind="ec")
    assert signing.SigningKey.from_pem(rsa_issued.key_pem,
                                       rsa_issued.cert_pem).algorithm == "rsa-sha256"
    assert signing.SigningKey.from_pem(ec_issued.key_pem,
                                       ec_issued.cert_pem).algorithm == "ecdsa-sha256"


def test_key_load_from_files(tmp_path, ca):
    issued = make_signing_cert(ca, kind="ec")
    (tmp_path / "k.pem").write_bytes(issued.key_pem)
    (tmp_path / "c.pem").write_bytes(issued.cert_pem)
    key = signing.SigningKey.load(tmp_path / "k.pem", tmp_path / "c.pem")
    assert key.algorithm == "ecdsa-sha256"
    assert "PRIVATE" not in repr(key) and "ecdsa-sha256" in repr(key)


def test_key_and_cert_must_match(ca):
    a, b = make_signing_cert(ca, kind="ec"), make_signing_cert(ca, kind="ec")
    expect(errors.INCORRECT_CERTIFICATE, signing.SigningKey.from_pem,
           a.key_pem, b.cert_pem)


def test_unreadable_key_files(tmp_path):
    (tmp_path / "k.pem").write_bytes(b"not a key")
    (tmp_path / "c.pem").write_bytes(b"not a cert")
    expect(errors.INCORRECT_CERTIFICATE, signing.SigningKey.load,
           tmp_path / "k.pem", tmp_path / "c.pem")
    expect(errors.INCORRECT_CERTIFICATE, signing.SigningKey.load,
           tmp_path / "missing.pem", tmp_path / "c.pem")


def test_cert_from_foreign_ca(trust):
    foreign = make_ca("Foreign CA")
    issued = make_signing_cert(foreign, kind="ec")
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    err = expect(errors.CERT_VALIDATION, verify, signed_by(key), trust)
    assert "trusted CA" in err.message


def test_expired_cert(ca, trust):
    issued = make_signing_cert(ca, kind="ec", not_after=NOW + timedelta(days=1))
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    later = NOW + timedelta(days=2)
    err = expect(errors.CERT_VALIDATION, verify, signed_by(key, later), trust, later)
    assert "expired" in err.message


def test_cert_without_signing_usage(ca, trust):
    issued = make_signing_cert(ca, kind="ec", digital_signature=False,
                               non_repudiation=False)
    expect(errors.INCORRECT_CERTIFICATE, trust.validate, issued.cert)


def test_signing_cert_without_non_repudiation_is_refused(ca, trust):
    """digitalSignature alone is what a TLS (auth) certificate has: a message signed
    with such a key is not a non-repudiable signature."""
    issued = make_signing_cert(ca, kind="ec", non_repudiation=False)
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    err = expect(errors.INCORRECT_CERTIFICATE, verify, signed_by(key), trust)
    assert "nonRepudiation (contentCommitment)" in err.message


def test_non_repudiation_alone_is_a_signing_cert(ca, trust):
    issued = make_signing_cert(ca, kind="ec", digital_signature=False)
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    assert verify(signed_by(key), trust).cert == issued.cert


def test_trust_anchor_accepts_bundle(ca):
    other = make_ca("Other CA")
    bundle = signing.TrustAnchor.from_pem(other.cert_pem + ca.cert_pem)
    bundle.validate(make_signing_cert(ca, kind="ec").cert)
    bundle.validate(make_signing_cert(other, kind="ec").cert)


def test_trust_anchor_refuses_no_or_bad_pem():
    expect(errors.CERT_VALIDATION, signing.TrustAnchor, [])
    expect(errors.CERT_VALIDATION, signing.TrustAnchor.from_pem, b"garbage")


def test_cached_certificate_is_still_checked_against_the_time(ca):
    """Validity periods are cached with the CA check; every call still compares them
    with its own ``now``."""
    issued = make_signing_cert(ca, kind="ec", not_after=NOW + timedelta(days=1))
    anchor = signing.TrustAnchor.from_pem(ca.cert_pem)
    anchor.validate(issued.cert, now=NOW)            # caches the static checks
    err = expect(errors.CERT_VALIDATION, anchor.validate, issued.cert,
                 now=NOW + timedelta(days=2))
    assert "expired" in err.message
    err = expect(errors.CERT_VALIDATION, anchor.validate, issued.cert,
                 now=NOW - timedelta(days=400))
    assert "not valid before" in err.message
    anchor.validate(issued.cert, now=NOW)


def test_cert_member_id(ca):
    cert = make_signing_cert(ca, "KG/GOV/123", kind="ec").cert
    assert signing.cert_member_id(cert) == MemberId("KG", "GOV", "123")


@pytest.mark.parametrize("serial", [None, "KG/GOV", "KG/GOV/12 3"])
def test_cert_member_id_refuses_bad_serial(ca, serial):
    cert = make_signing_cert(ca, serial, kind="ec").cert
    expect(errors.INCORRECT_CERTIFICATE, signing.cert_member_id, cert)


def test_cert_member_id_refusal_is_not_cached(ca):
    issued = make_signing_cert(ca, "KG/GOV")
    for _ in range(2):
        expect(errors.INCORRECT_CERTIFICATE, signing.cert_member_id, issued.cert)
