"""Development PKI: certificate conventions, key file modes, and ``tunduk init``."""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tunduk.server import pki
from tunduk.server.cli import main
from tunduk.server.core import errors, signing
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.identifiers import MemberId

MEMBER = MemberId.parse("KG/GOV/70000001")


def _cert(path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _name(cert, oid) -> str:
    return cert.subject.get_attributes_for_oid(oid)[0].value


def test_ca_is_self_signed_ca_valid_ten_years_with_private_key_0600(tmp_path):
    key, cert_path = pki.create_ca(tmp_path / "ca")
    assert (key.name, cert_path.name) == ("ca.key", "ca.pem")
    assert _mode(key) == 0o600
    cert = _cert(cert_path)
    cert.verify_directly_issued_by(cert)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert _name(cert, NameOID.COMMON_NAME) == "tunduk development CA"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime < dt.timedelta(days=3651)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


@pytest.mark.parametrize("key_type, key_class", [("rsa", rsa.RSAPublicKey),
                                                 ("ec", ec.EllipticCurvePublicKey)])
def test_sign_cert_follows_conventions(dev_ca, tmp_path, key_type, key_class):
    cert = pki.issue_sign_cert(dev_ca.key, dev_ca.cert, MEMBER, "Civil Registry",
                               tmp_path / "sign.key", tmp_path / "sign.pem", key_type)
    assert _mode(tmp_path / "sign.key") == 0o600
    assert _cert(tmp_path / "sign.pem") == cert
    cert.verify_directly_issued_by(_cert(dev_ca.cert))
    assert _name(cert, NameOID.COMMON_NAME) == "70000001"
    assert _name(cert, NameOID.ORGANIZATION_NAME) == "Civil Registry"
    assert _name(cert, NameOID.SERIAL_NUMBER) == "KG/GOV/70000001"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign and not ku.value.key_encipherment
    pub = cert.public_key()
    assert isinstance(pub, key_class)
    if key_type == "rsa":
        assert pub.key_size == 2048
    else:
        assert pub.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=729) < lifetime < dt.timedelta(days=731)
    # the key on disk is the certificate's key
    key = serialization.load_pem_private_key((tmp_path / "sign.key").read_bytes(), None)
    assert key.public_key().public_numbers() == pub.public_numbers()


def test_auth_cert_follows_conventions(dev_ca, tmp_path):
    cert = pki.issue_auth_cert(dev_ca.key, dev_ca.cert, MEMBER, "Civil Registry", "ss1",
                               tmp_path / "auth.key", tmp_path / "auth.pem", "ec")
    assert _mode(tmp_path / "auth.key") == 0o600
    assert _name(cert, NameOID.COMMON_NAME) == "ss1"
    assert _name(cert, NameOID.ORGANIZATION_NAME) == "Civil Registry"
    assert _name(cert, NameOID.SERIAL_NUMBER) == "KG/GOV/70000001"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.content_commitment
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_not_before_and_days_make_an_expired_certificate(dev_ca, tmp_path):
    start = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    cert = pki.issue_sign_cert(dev_ca.key, dev_ca.cert, MEMBER, "Civil Registry",
                               tmp_path / "k", tmp_path / "c", "ec", not_before=start, days=1)
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == start + dt.timedelta(days=1)
    assert cert.not_valid_after_utc < dt.datetime.now(dt.timezone.utc)


def test_fingerprint_is_lowercase_sha256_of_der_for_pem_and_der(dev_ca):
    pem = dev_ca.cert.read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    expected = hashlib.sha256(der).hexdigest()
    assert pki.fingerprint_sha256(pem) == expected == pki.fingerprint_sha256(der)
    assert expected == expected.lower() and len(expected) == 64


def test_write_private_key_replaces_a_world_readable_file_with_a_0600_one(tmp_path):
    path = tmp_path / "old.key"
    path.write_text("old")
    path.chmod(0o644)
    pki.write_private_key(path, pki.generate_key("ec"))
    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_unknown_key_type_is_refused():
    with pytest.raises(ValueError, match="key type"):
        pki.generate_key("dsa")


# --------------------------------------------------------------------------- tunduk init

def test_init_ca_and_server_write_keys_and_print_the_federation_entry(tmp_path, capsys):
    assert main(["init", "ca", "--out", str(tmp_path / "pki")]) == 0
    ca_out = capsys.readouterr().out
    assert _mode(tmp_path / "pki" / "ca.key") == 0o600
    assert "PRIVATE KEY" not in ca_out
    rc = main(["init", "server", "--ca", str(tmp_path / "pki"), "--member", "KG/GOV/70000001",
               "--name", "Civil Registry", "--code", "ss1", "--out", str(tmp_path / "reg"),
               "--key-type", "ec"])
    assert rc == 0
    out = capsys.readouterr().out
    for name in ("auth.key", "sign.key"):
        assert _mode(tmp_path / "reg" / name) == 0o600
    fp = pki.fingerprint_sha256((tmp_path / "reg" / "auth.pem").read_bytes())
    assert fp in out
    assert "[[servers]]" in out and 'owner = "KG/GOV/70000001"' in out and 'code = "ss1"' in out
    assert str((tmp_path / "reg" / "auth.pem").resolve()) in out
    assert "PRIVATE KEY" not in out
    for name in ("auth.key", "sign.key"):  # no key material echoed
        body = (tmp_path / "reg" / name).read_text().splitlines()[1]
        assert body not in out
    sign = _cert(tmp_path / "reg" / "sign.pem")
    assert _name(sign, NameOID.SERIAL_NUMBER) == "KG/GOV/70000001"
    sign.verify_directly_issued_by(_cert(tmp_path / "pki" / "ca.pem"))


def test_init_refuses_to_overwrite_keys_unless_forced(tmp_path, capsys):
    assert main(["init", "ca", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "ca.key").read_bytes()
    assert main(["init", "ca", "--out", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert (tmp_path / "ca.key").read_bytes() == before
    assert main(["init", "ca", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "ca.key").read_bytes() != before
    assert _mode(tmp_path / "ca.key") == 0o600

    args = ["init", "server", "--ca", str(tmp_path), "--member", "KG/GOV/1", "--name", "X",
            "--code", "ss1", "--out", str(tmp_path / "s"), "--key-type", "ec"]
    assert main(args) == 0
    sign = (tmp_path / "s" / "sign.key").read_bytes()
    assert main(args) == 1
    assert (tmp_path / "s" / "sign.key").read_bytes() == sign
    assert main(args + ["--force"]) == 0
    assert (tmp_path / "s" / "sign.key").read_bytes() != sign


def test_init_server_rejects_a_bad_member_id_and_a_missing_ca(tmp_path, capsys):
    assert main(["init", "server", "--ca", str(tmp_path), "--member", "KG/GOV",
                 "--name", "X", "--code", "ss1", "--out", str(tmp_path / "s")]) == 2
    assert "--member" in capsys.readouterr().err
    assert main(["init", "server", "--ca", str(tmp_path), "--member", "KG/GOV/1",
                 "--name", "X", "--code", "ss1", "--out", str(tmp_path / "s")]) == 1
    assert "tunduk init ca" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("key_type", ["ec", "rsa"])
def test_init_certificates_each_fit_their_own_role_only(tmp_path, capsys, key_type):
    """The signing certificate carries nonRepudiation, the TLS certificate the TLS
    extended key usages; neither passes for the other, and the verifier refuses the TLS
    certificate as a signer (outside review, item 3)."""
    assert main(["init", "ca", "--out", str(tmp_path / "pki")]) == 0
    assert main(["init", "server", "--ca", str(tmp_path / "pki"), "--member",
                 "KG/GOV/70000001", "--name", "Civil Registry", "--code", "ss1",
                 "--out", str(tmp_path / "reg"), "--key-type", key_type]) == 0
    capsys.readouterr()
    sign, auth = _cert(tmp_path / "reg" / "sign.pem"), _cert(tmp_path / "reg" / "auth.pem")
    assert pki.sign_cert_problem(sign) is None and pki.auth_cert_problem(auth) is None
    assert "nonRepudiation" in pki.sign_cert_problem(auth)
    assert "serverAuth and clientAuth" in pki.auth_cert_problem(sign)
    trust = signing.TrustAnchor.from_pem((tmp_path / "pki" / "ca.pem").read_bytes())
    trust.validate(sign)
    with pytest.raises(XRoadError) as info:
        trust.validate(auth)
    assert info.value.code == errors.INCORRECT_CERTIFICATE
