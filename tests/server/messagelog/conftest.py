"""Fixtures for the message log tests: real signed envelopes, both stores, a real TSA."""
from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import replace

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree

from tunduk.server.conf.model import MessageLogConf
from tunduk.server.messagelog import store_factory, tsa_pki, tsa_server
from tunduk.server.messagelog.record import LogRecord

SERVER_ID = "KG/GOV/70000001/ss1"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
XROAD = "http://x-road.eu/xsd/xroad.xsd"


class Signer:
    """A member signing key + certificate issued by a test CA; signs WS-Security XML."""

    def __init__(self, ca_key, ca_cert) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.COMMON_NAME, "70000002"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Centre"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, "KG/GOV/70000002")]))
            .issuer_name(ca_cert.subject).public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))
        self.cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        self._key_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())

    def envelope(self, message_id: str, payload: str = "x") -> bytes:
        root = etree.fromstring(f"""<soapenv:Envelope xmlns:soapenv="{SOAP}"
 xmlns:xrd="{XROAD}" xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}"><soapenv:Header>
<xrd:id>{message_id}</xrd:id><wsse:Security/></soapenv:Header>
<soapenv:Body wsu:Id="body"><getBirthRecord xmlns="urn:test"><q>{payload}</q>
</getBirthRecord></soapenv:Body></soapenv:Envelope>""".encode())
        sig = xmlsec.template.create(root, xmlsec.constants.TransformExclC14N,
                                     xmlsec.constants.TransformEcdsaSha256)
        root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security").append(sig)
        ref = xmlsec.template.add_reference(sig, xmlsec.constants.TransformSha256,
                                            uri="#body")
        xmlsec.template.add_transform(ref, xmlsec.constants.TransformExclC14N)
        xmlsec.tree.add_ids(root, ["Id"])
        ctx = xmlsec.SignatureContext()
        ctx.key = xmlsec.Key.from_memory(self._key_pem, xmlsec.constants.KeyDataFormatPem)
        ctx.sign(sig)
        return etree.tostring(root)

    def record(self, i: int = 0, client: str = "KG/GOV/70000002/centre",
               service: str = "KG/GOV/70000001/registry/getBirthRecord/v1",
               direction: str = "request", created: dt.datetime | None = None) -> LogRecord:
        mid = f"msg-{i}-{uuid.uuid4().hex[:8]}"
        env = self.envelope(mid, payload=str(i))
        body = etree.fromstring(env).find(f"{{{SOAP}}}Body")
        body_sha = hashlib.sha256(etree.tostring(body, method="c14n", exclusive=True)).hexdigest()
        return LogRecord(mid, client, service, direction, "server", env, self.cert_der,
                         body_sha, created or dt.datetime.now(dt.timezone.utc))


@pytest.fixture(scope="session")
def test_ca():
    return tsa_pki.make_self_signed_ca("messagelog test CA")


@pytest.fixture(scope="session")
def signer(test_ca) -> Signer:
    return Signer(*test_ca)


@pytest.fixture(params=["sqlite", "postgresql"])
def ml_conf(request, tmp_path) -> MessageLogConf:
    """A MessageLogConf for an empty store of each kind (no TSA)."""
    if request.param == "sqlite":
        return MessageLogConf(backend="sqlite", path=tmp_path / "ml.sqlite3")
    dsn = request.getfixturevalue("postgresql_db")
    return MessageLogConf(backend="postgresql", dsn=dsn)


@pytest.fixture
def factory(ml_conf, tmp_path):
    return store_factory(ml_conf, tmp_path)


@pytest.fixture
def store(factory):
    s = factory()
    yield s
    s.close()


class RunningTsa:
    def __init__(self, key, cert) -> None:
        self.key, self.cert = key, cert
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.server = tsa_server.serve(tsa_server.make_tsa_app(key, cert), "127.0.0.1", 0)
        host, port = self.server.bind_addr[:2]
        self.url = f"http://{host}:{port}/"

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture(scope="session")
def tsa(test_ca):
    key, cert = tsa_pki.make_tsa_cert(*test_ca)
    t = RunningTsa(key, cert)
    yield t
    t.stop()


@pytest.fixture
def with_tsa(ml_conf, tsa) -> MessageLogConf:
    return replace(ml_conf, tsa_url=tsa.url, timestamp_interval=3600, timestamp_batch=1000,
                   timestamp_failure_grace=60)


@pytest.fixture(scope="session")
def manifest_signer(signer):
    """The server's signing key, which signs archive manifests."""
    from tunduk.server.messagelog.archive import ManifestSigner
    return ManifestSigner(signer.key, signer.cert_der)
