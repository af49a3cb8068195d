"""GET /healthz on the client proxy: the message log and time-stamping state, for real.

Two security servers, a real RFC 3161 TSA on a real socket (stopped to make
time-stamping fail), SQLite and a real PostgreSQL cluster (stopped to make the store
unreachable).  The grace period runs on a fake clock, so nothing here is timed.
"""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization

from tests.http_helpers import post
from tests.xroad_requests import request
from tunduk.server.messagelog import tsa_pki, tsa_server

ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Tsa:
    """A real TSA app on 127.0.0.1 (what ``tunduk tsa`` serves)."""

    def __init__(self, tmp_path) -> None:
        ca = tsa_pki.make_self_signed_ca("healthz test CA")
        key, cert = tsa_pki.make_tsa_cert(*ca)
        self.cert_pem = tmp_path / "tsa.pem"
        self.cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.server = tsa_server.serve(tsa_server.make_tsa_app(key, cert), "127.0.0.1", 0)
        host, port = self.server.bind_addr[:2]
        self.url = f"http://{host}:{port}/"
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.server.stop()
            self.running = False


@pytest.fixture
def tsa(tmp_path):
    t = Tsa(tmp_path)
    yield t
    t.stop()


def _fed(run_federation, echo_backend, messagelog):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    return run_federation(services=[svc], access=ACCESS, messagelog=messagelog)


@pytest.fixture
def fed(run_federation, echo_backend, tsa):
    # A long interval: the test drives time-stamping rounds itself.
    return _fed(run_federation, echo_backend, {
        "backend": "sqlite", "tsa_url": tsa.url, "tsa_cert": str(tsa.cert_pem),
        "timestamp_interval": 3600, "timestamp_failure_grace": 60})


def healthz(url: str):
    r = post(url + "/healthz", b"", method="GET")
    assert r.headers["content-type"].startswith("application/json")
    return r.status, json.loads(r.body)


def test_healthy_server_reports_ok(fed):
    assert post(fed.client_url, request()).status == 200
    assert fed.consumer.message_log.timestamper.run_once() is True
    status, doc = healthz(fed.client_url)
    assert status == 200
    assert doc["status"] == "ok" and doc["accepting"] is True
    ml = doc["messagelog"]
    assert ml["backend"] == "sqlite"
    assert ml["records"] == 2 and ml["last_seq"] == 2        # request + response
    assert ml["timestamping"] == "ok" and ml["last_timestamp_time"]
    assert ml["last_timestamped_seq"] == 2
    assert ml.get("last_error") is None


def test_tsa_down_past_grace_refuses(fed, tsa):
    ts = fed.consumer.message_log.timestamper
    clock = FakeClock()
    ts.clock = clock
    assert post(fed.client_url, request()).status == 200
    tsa.stop()
    assert ts.run_once() is False                   # the TSA is unreachable
    status, doc = healthz(fed.client_url)
    assert status == 200                            # within the grace period
    assert doc["status"] == "failing" and doc["accepting"] is True
    assert doc["messagelog"]["timestamping"] == "failing"
    clock.now += 61                                 # past the 60 s grace period
    status, doc = healthz(fed.client_url)
    assert status == 503
    assert doc["status"] == "failing" and doc["accepting"] is False
    assert doc["messagelog"]["timestamping"] == "refusing"
    assert doc["refusing"].startswith("TimestampingFailed")
    assert "cannot reach TSA" in doc["messagelog"]["timestamping_error"]
    # ... and the exchange itself is refused with the matching fault.
    r = post(fed.client_url, request())
    assert r.status == 500
    assert r.fault_code == "Server.ClientProxy.TimestampingFailed"


def test_healthz_shows_no_secrets(fed):
    assert post(fed.client_url, request()).status == 200
    r = post(fed.client_url + "/healthz", b"", method="GET")
    keys = fed.files.consumer
    for secret in ("PRIVATE KEY", str(fed.consumer.conf.keys.sign_key),
                   str(fed.consumer.conf.keys.auth_key)):
        assert secret.encode() not in r.body
    assert keys is not None


def test_unreachable_postgresql_store_is_503(run_federation, echo_backend,
                                             postgresql_cluster, postgresql_db):
    fed = _fed(run_federation, echo_backend, {"backend": "postgresql", "dsn": postgresql_db})
    assert post(fed.client_url, request()).status == 200
    status, doc = healthz(fed.client_url)
    assert status == 200 and doc["messagelog"]["backend"] == "postgresql"
    assert doc["messagelog"]["timestamping"] == "off"
    postgresql_cluster.stop()
    try:
        status, doc = healthz(fed.client_url)
        assert status == 503
        assert doc["accepting"] is False and "read_error" in doc["messagelog"]
        r = post(fed.client_url, request())
        assert r.fault_code == "Server.ClientProxy.MessageLogFailed"
    finally:
        postgresql_cluster.restart()
    # Back: writes succeed again and the old write error is gone.
    assert post(fed.client_url, request()).status == 200
    status, doc = healthz(fed.client_url)
    assert status == 200 and doc["status"] == "ok"
    assert doc["messagelog"].get("last_error") is None
    body = json.dumps(doc)
    assert postgresql_db not in body


def test_a_log_that_cannot_be_written_makes_healthz_503_then_recovers(
        run_federation, echo_backend):
    """Every exchange failed on a full disk while /healthz said 200: readiness must be
    503 whenever the node refuses exchanges.  The SQLite file refuses writes here as a
    full disk does (a trigger raising SQLITE_FULL's message on every write)."""
    import sqlite3

    from tunduk.server.messagelog import sqlite_path
    fed = _fed(run_federation, echo_backend, {"backend": "sqlite"})
    assert post(fed.client_url, request()).status == 200
    assert healthz(fed.client_url)[0] == 200
    path = sqlite_path(fed.consumer.conf.messagelog, fed.consumer.conf.data_dir)
    db = sqlite3.connect(path, isolation_level=None)
    full = ["CREATE TRIGGER full_{0} BEFORE {1} ON {2} BEGIN "
            "SELECT RAISE(ABORT, 'database or disk is full'); END"]
    for i, (when, table) in enumerate([("UPDATE", "health_probe"), ("INSERT", "records"),
                                       ("UPDATE", "chain_head")]):
        db.execute(full[0].format(i, when, table))
    try:
        r = post(fed.client_url, request())
        assert r.fault_code == "Server.ClientProxy.MessageLogFailed"
        status, doc = healthz(fed.client_url)
        assert status == 503 and doc["accepting"] is False
        assert "disk is full" in doc["refusing"]
        assert "disk is full" in doc["messagelog"]["write_error"]
        live = post(fed.client_url + "/livez", b"", method="GET")
        assert live.status == 200 and json.loads(live.body) == {"status": "alive"}
    finally:
        for i in range(3):
            db.execute(f"DROP TRIGGER full_{i}")
        db.close()
    status, doc = healthz(fed.client_url)
    assert status == 200 and doc["accepting"] is True
    assert post(fed.client_url, request()).status == 200
