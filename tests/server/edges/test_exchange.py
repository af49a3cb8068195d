"""One exchange across two security servers, for real: sockets, mutual TLS, signatures."""
from __future__ import annotations

import base64
import hashlib

import pytest
from lxml import etree

from tests.http_helpers import SOAP, post
from tests.xroad_requests import request

XRD = "http://x-road.eu/xsd/xroad.xsd"
SERVICES = [
    {"subsystem": "registry", "code": "getBirthRecord", "version": "v1", "url": None},
    {"subsystem": "registry", "code": "getResidenceRecord", "version": "v1", "url": None},
    {"subsystem": "registry", "code": "fail", "version": "v1", "url": None},
    {"subsystem": "registry", "code": "notSoap", "version": "v1", "url": None},
]
ACCESS = [{"service": f"registry/{c}", "clients": ["KG/GOV/70000002/centre"]}
          for c in ("getBirthRecord", "fail", "notSoap")]


@pytest.fixture
def fed(run_federation, echo_backend):
    services = [dict(s, url=echo_backend.url) for s in SERVICES]
    return run_federation(services=services, access=ACCESS)


def test_happy_path_returns_backend_answer_with_headers_and_request_hash(fed):
    raw = request(message_id="4894e35d-bf0f-44a6-867a-8e51f1daa7e0")
    reply = post(fed.client_url, raw, headers={"SOAPAction": '"getBirthRecord"'})
    assert reply.status == 200, reply.body
    root = reply.xml()
    header = root.find(f"{{{SOAP}}}Header")
    names = [etree.QName(h).localname for h in header]
    assert names == ["client", "service", "id", "userId", "protocolVersion", "requestHash"]
    assert header.findtext(f"{{{XRD}}}id") == "4894e35d-bf0f-44a6-867a-8e51f1daa7e0"
    rh = header.find(f"{{{XRD}}}requestHash")
    assert rh.get("algorithmId") == "http://www.w3.org/2001/04/xmlenc#sha512"
    assert rh.text == base64.b64encode(hashlib.sha512(raw).digest()).decode()
    resp = root.find(f"{{{SOAP}}}Body")[0]
    assert etree.QName(resp).localname == "getBirthRecordResponse"
    assert resp.findtext("echo") == "21205199900011"
    # SOAPAction passed through to the backend; no security header left for the client
    assert resp.findtext("soapAction") == '"getBirthRecord"'
    assert b"wsse" not in reply.body and b"wsu:Id" not in reply.body
    assert b"requestDigest" not in reply.body
    assert "x-backend-secret" not in reply.headers
    assert reply.headers["content-type"].startswith("text/xml")


def test_backend_response_without_headers_gets_the_request_headers(run_federation,
                                                                   echo_backend):
    svc = dict(SERVICES[0], url=echo_backend.url + "noheaders")
    fed = run_federation(services=[svc], access=ACCESS[:1])
    reply = post(fed.client_url, request())
    assert reply.status == 200, reply.body
    header = reply.xml().find(f"{{{SOAP}}}Header")
    assert [etree.QName(h).localname for h in header][:5] == [
        "client", "service", "id", "userId", "protocolVersion"]


def test_service_fault_passes_through_signed_channel(fed):
    reply = post(fed.client_url, request("fail", payload="<x/>"))
    assert reply.status == 500  # SOAP 1.1 over HTTP: faults travel with 500
    assert reply.fault_code == "Server.Oops"
    assert reply.fault_string == "backend says no"


@pytest.mark.parametrize("body,code", [
    (b"<not-closed>", "Client.InvalidXml"),
    (b"<?xml version='1.0'?><hello/>", "Client.InvalidSoap"),
    (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', "Client.InvalidXml"),
])
def test_malformed_requests(fed, body, code):
    reply = post(fed.client_url, body)
    assert reply.status == 500
    assert reply.fault_code == code
    assert b"root:" not in reply.body


def test_non_soap_post(fed):
    reply = post(fed.client_url, b"a=1&b=2", content_type="application/x-www-form-urlencoded")
    assert reply.fault_code == "Client.InvalidContentType"


def test_get_without_handler_or_put_is_refused(fed):
    reply = post(fed.client_url, b"", method="PUT")
    assert reply.status == 405
    assert reply.fault_code == "Client.InvalidHttpMethod"


def test_missing_header_and_bad_protocol_version(fed):
    raw = request().replace(b"<xrd:protocolVersion>4.0</xrd:protocolVersion>", b"")
    assert post(fed.client_url, raw).fault_code == "Client.MissingHeaderField"
    raw = request().replace(b">4.0<", b">3.1<")
    assert post(fed.client_url, raw).fault_code == "Client.InvalidProtocolVersion"


def test_wrapper_must_match_service_code(fed):
    raw = request().replace(b"<reg:getBirthRecord>", b"<reg:other>").replace(
        b"</reg:getBirthRecord>", b"</reg:other>")
    assert post(fed.client_url, raw).fault_code == "Client.InvalidBody"


def test_client_not_on_this_server_is_unknown_member(fed):
    reply = post(fed.client_url, request(client_subsystem="elsewhere"))
    assert reply.fault_code == "Server.ClientProxy.UnknownMember"
    assert "not registered on this security server" in reply.fault_string
    # The fault carries the request's X-Road headers? Only once parsed: here it did.
    detail = reply.xml().find(f"{{{SOAP}}}Body/{{{SOAP}}}Fault/detail/faultDetail")
    assert len(detail.text) == 36


def test_unknown_provider_member(fed):
    reply = post(fed.client_url, request(provider_code="99999999"))
    assert reply.fault_code == "Server.ClientProxy.UnknownMember"


def test_unknown_service_at_provider(fed):
    reply = post(fed.client_url, request("getDeathRecord"))
    assert reply.fault_code == "Server.ServerProxy.UnknownService"


def test_access_denied(fed):
    reply = post(fed.client_url, request("getResidenceRecord"))
    assert reply.fault_code == "Server.ServerProxy.AccessDenied"
    assert "KG/GOV/70000002/centre" in reply.fault_string


def test_provider_down_is_network_error(fed):
    fed.provider.stop()
    reply = post(fed.client_url, request())
    assert reply.fault_code == "Server.ClientProxy.NetworkError"


def test_backend_down_is_service_failed(run_federation):
    fed = run_federation(services=[dict(SERVICES[0], url="http://127.0.0.1:9/")],
                         access=ACCESS[:1])
    reply = post(fed.client_url, request())
    assert reply.fault_code == "Server.ServerProxy.ServiceFailed"


def test_backend_answering_non_soap(fed):
    reply = post(fed.client_url, request("notSoap", payload="<x/>"))
    assert reply.fault_code == "Server.ServerProxy.ServiceFailed.InvalidResponse"


def test_negative_content_length_is_refused_not_read_to_the_end(fed):
    import socket
    host, port = fed.client_url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                  b"Content-Length: -1\r\n\r\n" + b"x" * 1000)
        s.shutdown(socket.SHUT_WR)
        answer = s.recv(65536)
    assert b" 500 " in answer.split(b"\r\n")[0] or b" 400 " in answer.split(b"\r\n")[0]
    assert b"getBirthRecordResponse" not in answer


@pytest.mark.parametrize("action,ok", [
    ('"getBirthRecord"', True), ("urn:registry/getBirthRecord", True), ('""', True),
    ("http://registry.demo.tunduk.kg/getBirthRecord", True),
    ('"urn:registry/deleteRecord"', False), ("getBirthRecordX", False)])
def test_soap_action_must_name_the_service(fed, action, ok):
    reply = post(fed.client_url, request(), headers={"SOAPAction": action})
    if ok:
        assert reply.status == 200, reply.body
    else:
        assert reply.fault_code == "Client.InvalidSoap"
        assert "SOAPAction" in reply.fault_string


def test_request_carrying_request_hash_gets_one_back(run_federation, echo_backend):
    svc = dict(SERVICES[0], url=echo_backend.url + "noheaders")
    fed = run_federation(services=[svc], access=ACCESS[:1])
    raw = request().replace(
        b"<xrd:protocolVersion>4.0</xrd:protocolVersion>",
        b"<xrd:protocolVersion>4.0</xrd:protocolVersion><xrd:requestHash algorithmId="
        b'"http://www.w3.org/2001/04/xmlenc#sha512">bogus</xrd:requestHash>')
    reply = post(fed.client_url, raw)
    assert reply.status == 200, reply.body
    hashes = reply.xml().findall(f".//{{{XRD}}}requestHash")
    assert len(hashes) == 1
    assert hashes[0].text == base64.b64encode(hashlib.sha512(raw).digest()).decode()


def test_provider_with_a_dead_server_first_fails_over_to_the_next(fed):
    """The provider has two servers and the first is down: the request goes to the
    second.  (Failover happens only when nothing was sent, so never twice.)"""
    import dataclasses

    from tests.fixtures.pki import free_port
    import asyncio
    loop = fed.consumer._loop
    consumer = loop.engine.client
    pending = consumer.side.prepare(request(), "text/xml")
    live = pending.targets[0]
    dead = dataclasses.replace(live, code="ss0", address=f"127.0.0.1:{free_port()}")
    pending.targets = (dead, live)
    resp = asyncio.run_coroutine_threadsafe(consumer.send(pending), loop.loop).result(30)
    assert resp.status == 200 and b"getBirthRecordResponse" in resp.body


def test_client_cannot_smuggle_tunduk_headers(fed):
    raw = request().replace(
        b"<xrd:protocolVersion>4.0</xrd:protocolVersion>",
        b"<xrd:protocolVersion>4.0</xrd:protocolVersion>"
        b'<t:requestDigest xmlns:t="urn:tunduk:xsd:exchange:1" '
        b'algorithmId="http://www.w3.org/2001/04/xmlenc#sha512">x</t:requestDigest>')
    reply = post(fed.client_url, raw)
    assert reply.fault_code == "Client.InvalidMessage"
    assert "only security servers" in reply.fault_string


def test_request_over_the_providers_limit_gets_the_providers_fault(fed):
    # The provider answers 413 as soon as it sees the size and closes with the body
    # unread; the consumer, still sending, gets a reset, but must pass on that
    # answer rather than report a network failure.
    fed.provider._loop.engine.server.max_bytes = 64 * 1024
    # 32 MB (more than loopback socket buffers hold), in 1 MB text nodes (lxml's limit)
    payload = ("<reg:personalCode>" + "1" * (1024 * 1024) + "</reg:personalCode>") * 32
    reply = post(fed.client_url, request(payload=payload))
    assert (reply.status, reply.fault_code) == (413, "Server.ServerProxy.MessageTooLarge"), \
        (reply.status, reply.fault_code, reply.fault_string)
    assert "65536" in reply.fault_string


@pytest.fixture
def refusing_server(tmp_path):
    """A TLS server that requires a client certificate from a CA nobody has: each
    connection fails in the handshake (with TLS 1.3, after the client's side of it is
    done).  Yields a function: (auth cert, auth key) → its port; counts connections."""
    import socket
    import ssl
    import threading

    from tunduk.server import pki
    _ca_key, ca_cert = pki.create_ca(tmp_path / "nobodys-ca", name="nobody's CA")
    listeners, seen = [], []

    def start(cert, key) -> int:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(ca_cert))
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def serve() -> None:
            while True:
                try:
                    raw, _ = listener.accept()
                except OSError:
                    return
                try:
                    seen.append(ctx.wrap_socket(raw, server_side=True).recv(65536))
                except OSError:
                    seen.append(None)           # the handshake failed, as intended
                finally:
                    raw.close()
        threading.Thread(target=serve, daemon=True).start()
        return listener.getsockname()[1]
    start.seen = seen
    yield start
    for listener in listeners:
        listener.close()


def test_a_provider_server_that_refuses_our_certificate_is_skipped(
        make_federation, echo_backend, refusing_server):
    """The provider's first server refuses the consumer's TLS certificate: it handled
    no request, so its second server is tried and answers."""
    import tomllib

    from tunduk.server.conf.write import write_federation_toml
    from tunduk.server.node import Node
    files = make_federation(services=[dict(SERVICES[0], url=echo_backend.url)],
                            access=ACCESS[:1], messagelog={"backend": "off"})
    port = refusing_server(files.provider.auth_cert, files.provider.auth_key)
    doc = tomllib.loads(files.federation_toml.read_text())
    first = {"owner": str(files.provider.member), "code": "ss0",
             "address": f"127.0.0.1:{port}", "auth_certs": ["registry/auth.pem"]}
    write_federation_toml(files.federation_toml, instance=doc["instance"],
                          ca_certs=doc["ca_certs"], members=doc["members"],
                          servers=[first, *doc["servers"]])
    nodes = [Node.from_conf(files.provider.conf()).start(),
             Node.from_conf(files.consumer.conf()).start()]
    try:
        reply = post(nodes[1].client_proxy_url, request())
    finally:
        for node in nodes:
            node.stop()
    assert reply.status == 200, reply.body
    assert reply.xml().find(f"{{{SOAP}}}Body")[0].findtext("echo") == "21205199900011"
    assert refusing_server.seen == [None]       # tried first, handled nothing
