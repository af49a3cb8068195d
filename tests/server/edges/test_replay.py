"""A signed request is served once: replays over real mutual TLS, with the log off (the
worker's memory), on SQLite and on PostgreSQL shared by two provider nodes."""
from __future__ import annotations

import base64
import dataclasses
import re
import ssl
from datetime import datetime, timedelta, timezone

import pytest

from tests.http_helpers import post
from tests.xroad_requests import request
from tunduk.server.core import detached
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.messagelog import NullLog
from tunduk.server.node import Node

ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]


@pytest.fixture(params=["off", "sqlite", "postgresql"])
def messagelog(request):
    if request.param == "postgresql":
        return {"backend": "postgresql", "dsn": request.getfixturevalue("postgresql_db")}
    return {"backend": request.param}


@pytest.fixture
def fed(run_federation, echo_backend, messagelog):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    return run_federation(services=[svc], access=ACCESS, messagelog=messagelog)


def signed(fed, **sign_kw) -> tuple[bytes, bytes]:
    """(body, signature) of a request the consumer's server signed."""
    conf = fed.files.consumer.conf()
    signer = SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert)
    side = ClientSide(conf, signer, TrustAnchor.from_pem(conf.federation.ca_certs_pem),
                      NullLog())
    pending = side.prepare(request(), "text/xml; charset=utf-8")
    if sign_kw:
        sig = detached.sign_message(pending.body, pending.content_type, signer,
                                    request_hash=pending.request_hash, **sign_kw)
        return pending.body, sig
    return pending.body, pending.signature


def send(fed, body: bytes, signature: bytes, address=None):
    host, port = address or fed.provider.server_proxy_address
    ctx = ssl.create_default_context(cafile=str(fed.files.ca.cert))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(fed.files.consumer.auth_cert),
                        str(fed.files.consumer.auth_key))
    return post(f"https://{host}:{port}/", body, "text/xml; charset=utf-8",
                headers={detached.SIGNATURE_HEADER: detached.header_value(signature)},
                context=ctx)


def test_a_byte_identical_signed_request_is_served_once(fed):
    body, sig = signed(fed)
    assert send(fed, body, sig).status == 200
    for _ in range(3):
        reply = send(fed, body, sig)
        assert (reply.status, reply.fault_code) == \
            (500, "Server.ServerProxy.DuplicateMessage"), reply.body
        assert "already accepted" in reply.fault_string
        assert "signs it afresh" in reply.fault_string


def test_a_retry_through_the_consumers_server_is_served(fed):
    """The same client bytes (and xroad:id) twice: two signing acts, both served."""
    raw = request(message_id="a-reused-id")
    assert post(fed.client_url, raw).status == 200
    assert post(fed.client_url, raw).status == 200


def test_an_ecdsa_twin_of_an_accepted_signature_is_refused(fed):
    body, sig = signed(fed)
    value = re.search(rb"<ds:SignatureValue>([^<]*)<", sig).group(1)
    raw = base64.b64decode(value)
    order = detached._CURVE_ORDERS["secp256r1"]
    twin = raw[:32] + (order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
    forged = sig.replace(value, base64.b64encode(twin))
    assert send(fed, body, sig).status == 200
    reply = send(fed, body, forged)
    assert reply.fault_code == "Server.ServerProxy.InvalidSignatureValue"
    assert "canonical" in reply.fault_string


def test_a_signature_claiming_ten_years_of_life_is_refused(fed):
    body, sig = signed(fed, ttl=10 * 365 * 86400)
    reply = send(fed, body, sig)
    assert reply.fault_code == "Server.ServerProxy.InvalidTimestamp"
    assert "at most 300 s" in reply.fault_string


def test_a_request_replayed_after_its_window_is_refused_as_expired(fed):
    body, sig = signed(fed, now=datetime.now(timezone.utc) - timedelta(seconds=370))
    reply = send(fed, body, sig)
    assert reply.fault_code == "Server.ServerProxy.InvalidTimestamp"


def test_a_replay_to_another_node_sharing_the_log_is_refused(
        run_federation, echo_backend, postgresql_db):
    """Two nodes of one provider server (one server id) behind a balancer share one
    PostgreSQL message log: what one accepted, the other refuses."""
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    fed = run_federation(services=[svc], access=ACCESS,
                         messagelog={"backend": "postgresql", "dsn": postgresql_db})
    conf = fed.files.provider.conf()
    second = Node.from_conf(dataclasses.replace(conf, listen=dataclasses.replace(
        conf.listen, client_proxy=("127.0.0.1", 0), server_proxy=("127.0.0.1", 0))))
    second.start()
    try:
        body, sig = signed(fed)
        assert send(fed, body, sig).status == 200
        reply = send(fed, body, sig, address=second.server_proxy_address)
        assert reply.fault_code == "Server.ServerProxy.DuplicateMessage", reply.body
        fresh_body, fresh_sig = signed(fed)
        assert send(fed, fresh_body, fresh_sig,
                    address=second.server_proxy_address).status == 200
    finally:
        second.stop()


# ------------------------------------- metaservices check the client as services do
@pytest.mark.parametrize("code", ["listMethods", "allowedMethods", "getWsdl",
                                  "getBirthRecord"])
def test_a_client_outside_the_federation_gets_unknown_member(run_federation,
                                                             echo_backend, code):
    """A subsystem the federation does not know, signed for by its (known) member over
    the member's own server: listMethods was answered; every request is refused."""
    from tunduk.server.core import exchange
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    fed = run_federation(services=[svc], access=ACCESS)
    raw = request(code).replace(b"<id:subsystemCode>centre</id:subsystemCode>",
                                b"<id:subsystemCode>ghost</id:subsystemCode>", 1)
    if code != "getBirthRecord":
        raw = raw.replace(b"<reg:%s>" % code.encode(), b"<xrd:%s>" % code.encode()) \
            .replace(b"</reg:%s>" % code.encode(), b"</xrd:%s>" % code.encode())
    conf = fed.files.consumer.conf()
    signer = SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert)
    sig = detached.sign_message(raw, "text/xml; charset=utf-8", signer,
                                request_hash=exchange.request_hash(raw))
    reply = send(fed, raw, sig)
    assert reply.fault_code == "Server.ServerProxy.UnknownMember", reply.body
    assert "KG/GOV/70000002/ghost" in reply.fault_string
