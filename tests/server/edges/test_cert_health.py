"""The own certificates in /healthz: expired means 503 (peers refuse the server),
expiring within 30 days is a warning."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from tests.fixtures.certs_for_signing import make_ca, make_signing_cert
from tests.http_helpers import post
from tunduk.server.edges.cert_health import certificate_health


def test_certificate_states():
    cert = make_signing_cert(make_ca(), "KG/GOV/1").cert
    end = cert.not_valid_after_utc
    assert certificate_health({"signing": cert}, end - timedelta(days=90)) == (
        None, {"signing": {"not_after": end.isoformat(), "state": "ok"}})
    assert certificate_health({"signing": cert}, end - timedelta(days=3))[1][
        "signing"]["state"] == "expiring"
    why, doc = certificate_health({"signing": cert}, end + timedelta(seconds=1))
    assert doc["signing"]["state"] == "expired"
    assert "the signing certificate is expired" in why and "renew it" in why


def test_healthz_shows_the_own_certificates(run_federation):
    import json
    fed = run_federation()
    reply = post(fed.client_url + "/healthz", b"", method="GET")
    doc = json.loads(reply.body)
    assert reply.status == 200
    assert set(doc["certificates"]) == {"signing", "TLS"}
    assert all(c["state"] == "ok" for c in doc["certificates"].values())
    assert datetime.fromisoformat(doc["certificates"]["TLS"]["not_after"]) > \
        datetime.now(timezone.utc)
