"""Measurement prototype: one tunduk security-server edge on one asyncio event loop.

    python -m bench.prototypes.asyncio_edges consumer|provider|both path/to/server.toml

Written to measure what the edges cost on cheroot threads (every GIL hand-off between
threads is dear on a small VM): ``python -m bench.prototypes.compare_asyncio`` runs it
and ``tunduk run`` side by side (docs/performance.md, "Fourth session").

consumer: plain-HTTP client proxy (conf.listen.client_proxy) -> provider over mTLS.
provider: mTLS server proxy (conf.listen.server_proxy) -> backend over plain HTTP.
The sans-I/O core (ClientSide/ServerSide) is called directly on the loop thread.
Left out on purpose: faults as SOAP, GET/metaservices, legacy aliases, timeouts,
body-size limits, retries on stale pooled connections, message log (NullLog).
"""
from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit

from tunduk.server.conf.load import load_server_conf
from tunduk.server.core import detached
from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.envelope import check_soap_action
from tunduk.server.core.server_side import ServerSide
from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.edges import tls
from tunduk.server.edges.http_pool import split_host_port
from tunduk.server.messagelog import NullLog

SIG = detached.SIGNATURE_HEADER.lower()
STATS = {"upstream_connects": 0, "accepted_connections": 0, "requests": 0}


# ------------------------------------------------------------------ HTTP/1.1 bits

async def read_message(reader: asyncio.StreamReader):
    """(start line, lower-cased headers, body) or None on a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return None
        raise
    lines = head[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")   # no trailers expected
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(parts)
    else:
        body = b""
    return lines[0], headers, body


def render(start: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    h = [start] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(h).encode("latin-1") + body


class Upstream:
    """Keep-alive connections to one host:port; a new one when all are busy."""

    def __init__(self, host: str, port: int, ssl_ctx=None, verify=None) -> None:
        self.host, self.port, self.ssl_ctx, self.verify = host, port, ssl_ctx, verify
        self.idle: list = []

    async def _connect(self):
        STATS["upstream_connects"] += 1
        r, w = await asyncio.open_connection(self.host, self.port, ssl=self.ssl_ctx)
        if self.verify is not None:
            self.verify(w.get_extra_info("ssl_object").getpeercert(binary_form=True))
        return r, w

    async def post(self, path: str, body: bytes, headers: list[tuple[str, str]]):
        conn = self.idle.pop() if self.idle else await self._connect()
        r, w = conn
        try:
            w.write(render(f"POST {path} HTTP/1.1",
                           [("Host", f"{self.host}:{self.port}"), *headers], body))
            msg = await read_message(r)
            if msg is None:
                raise ConnectionError("upstream closed the connection")
        except BaseException:
            w.close()
            raise
        status_line, rh, rbody = msg
        if rh.get("connection", "").lower() == "close":
            w.close()
        else:
            self.idle.append(conn)
        return int(status_line.split(" ", 2)[1]), rh, rbody


# ------------------------------------------------------------------ the two edges

class Edges:
    def __init__(self, conf) -> None:
        self.conf = conf
        signer = SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert)
        trust = TrustAnchor.from_pem(conf.federation.ca_certs_pem)
        log = NullLog()
        self.client_side = ClientSide(conf, signer, trust, log)
        self.server_side = ServerSide(conf, signer, trust, log)
        self.peer_ctx = tls.client_context(conf.federation.ca_certs_pem, conf.keys.auth_cert,
                                           conf.keys.auth_key)
        self.server_ctx = tls.server_context(conf.federation.ca_certs_pem,
                                             conf.keys.auth_cert, conf.keys.auth_key)
        self.peers: dict = {}
        self.backends: dict = {}

    # -- consumer: plain HTTP in, mTLS out --------------------------------------
    def peer(self, server) -> Upstream:
        host, port = split_host_port(server.address)
        up = self.peers.get((host, port))
        if up is None:
            pins = server.auth_cert_sha256

            def verify(der: bytes) -> None:
                if hashlib.sha256(der).hexdigest() not in pins:
                    raise ConnectionError("peer certificate not registered")
            up = self.peers[(host, port)] = Upstream(host, port, self.peer_ctx, verify)
        return up

    async def consumer_exchange(self, headers: dict, raw: bytes, peer_der):
        side = self.client_side
        pending = side.prepare(raw, headers.get("content-type"), headers.get("soapaction"))
        out = [("Content-Type", pending.content_type),
               (detached.SIGNATURE_HEADER, detached.header_value(pending.signature))]
        if pending.soap_action is not None:
            out.append(("SOAPAction", pending.soap_action))
        status, rh, rbody = await self.peer(pending.targets[0]).post("/", pending.body, out)
        body = side.finish(pending, rbody, rh.get("content-type"), status,
                           detached.from_header(rh.get(SIG)))
        return (500 if pending.response_is_fault else 200), \
            [("Content-Type", pending.response_content_type)], body

    # -- provider: mTLS in, plain HTTP out --------------------------------------
    def backend(self, url: str):
        u = urlsplit(url)
        up = self.backends.get((u.hostname, u.port))
        if up is None:
            up = self.backends[(u.hostname, u.port)] = Upstream(u.hostname, u.port or 80)
        return up, (u.path or "/") + (f"?{u.query}" if u.query else "")

    async def provider_exchange(self, headers: dict, raw: bytes, peer_der):
        side = self.server_side
        accepted = side.accept(raw, headers.get("content-type"), peer_der,
                               detached.from_header(headers.get(SIG)))
        soap_action = headers.get("soapaction")
        check_soap_action(soap_action, accepted.request.xroad.service.service_code)
        up, path = self.backend(accepted.service.backend_url)
        bh = [("Content-Type", accepted.backend_content_type)]
        if soap_action is not None:
            bh.append(("SOAPAction", soap_action))
        status, rh, rbody = await up.post(path, accepted.backend_body, bh)
        body = side.respond(accepted, rbody, rh.get("content-type"), status)
        return 200, [("Content-Type", accepted.response_content_type),
                     (detached.SIGNATURE_HEADER,
                      detached.header_value(accepted.response_signature))], body


def serve_connection(handler):
    async def on_conn(reader, writer):
        STATS["accepted_connections"] += 1
        ssl_obj = writer.get_extra_info("ssl_object")
        peer_der = ssl_obj.getpeercert(binary_form=True) if ssl_obj is not None else None
        try:
            while True:
                msg = await read_message(reader)
                if msg is None:
                    break
                _, headers, body = msg
                STATS["requests"] += 1
                try:
                    status, rh, out = await handler(headers, body, peer_der)
                except Exception as exc:   # prototype: no SOAP faults
                    status, rh, out = 500, [("Content-Type", "text/plain")], \
                        f"{type(exc).__name__}: {exc}".encode()
                writer.write(render(f"HTTP/1.1 {status} X", rh, out))
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()
    return on_conn


async def main(mode: str, conf_path: str) -> None:
    conf = load_server_conf(Path(conf_path))
    e = Edges(conf)
    servers = []
    if mode in ("consumer", "both"):
        h, p = conf.listen.client_proxy
        servers.append(await asyncio.start_server(serve_connection(e.consumer_exchange),
                                                  h, p, backlog=512))
    if mode in ("provider", "both"):
        h, p = conf.listen.server_proxy
        servers.append(await asyncio.start_server(serve_connection(e.provider_exchange),
                                                  h, p, ssl=e.server_ctx, backlog=512))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"proto {mode} listening", flush=True)
    await stop.wait()
    for s in servers:
        s.close()
    print(f"proto {mode} stats {STATS}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("consumer", "provider", "both"):
        sys.exit("usage: python -m bench.prototypes.asyncio_edges consumer|provider|both server.toml")
    asyncio.run(main(sys.argv[1], sys.argv[2]))
