"""The WSGI apps the load scenarios run, each in its own process.

``python -m bench.apps backend PORT [--delay-ms N]``: the demo civil registry (spyne),
optionally sleeping before every call (the "slow backend" scenario).
``python -m bench.apps aioproxy PORT UPSTREAM_URL``: a pass-through proxy on the
event-loop engine's HTTP server and client (edges/aio) and no security work, so the
"plain proxies" scenario uses the same HTTP stack as the security servers;
``aiohttpproxy``: the same on aiohttp (scenario "aiohttp", the bench extra).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Callable, Iterable
from urllib.parse import urlsplit

from cheroot import wsgi

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server",
        "date", "te", "trailer", "upgrade", "proxy-connection"}


def slow(app: Callable, delay_s: float) -> Callable:
    """``app`` answering ``delay_s`` later: a backend with real work to wait for."""
    def wrapped(environ, start_response) -> Iterable[bytes]:
        time.sleep(delay_s)
        return app(environ, start_response)
    return wrapped


class AioPassThrough:
    """PassThrough on the event-loop engine's HTTP stack (edges/aio): what the "plain"
    scenario measures, since the security servers run on that stack by default."""

    max_bytes = 50 * 1024 * 1024

    def __init__(self, upstream: str) -> None:
        from tunduk.server.edges.aio.upstream import AsyncPool
        u = urlsplit(upstream)
        self.path = u.path or "/"
        self.pool = AsyncPool(u.hostname, u.port or 80)

    async def __call__(self, request):
        from tunduk.server.edges.aio.http_server import Answer
        from tunduk.server.edges.http_wire import TransportError
        headers = {"Content-Type": request.headers.get("content-type") or "text/xml"}
        if "soapaction" in request.headers:
            headers["SOAPAction"] = request.headers["soapaction"]
        try:
            resp = await self.pool.post(self.path, request.body, headers)
        except TransportError as exc:
            return Answer(502, [("Content-Type", "text/plain")], str(exc).encode())
        return Answer(resp.status, [(k, v) for k, v in resp.headers.items()
                                    if k not in _HOP], resp.body)


def _run_until_stopped(main) -> None:
    """Run a server coroutine until SIGTERM or ^C; nothing to flush: leave at once."""
    import asyncio
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    try:
        asyncio.run(main)
    except KeyboardInterrupt:
        os._exit(0)


def serve_aiohttp(upstream: str, port: int) -> None:
    """The same pass-through on aiohttp's server and pooled client (issue 13 asks what
    a maintained stack would cost against tunduk's own HTTP code)."""
    import asyncio

    from aiohttp import ClientSession, TCPConnector, web
    u = urlsplit(upstream)
    target = f"http://{u.hostname}:{u.port or 80}{u.path or '/'}"

    async def main() -> None:
        session = ClientSession(connector=TCPConnector(limit=64), auto_decompress=False)

        async def forward(request: web.Request) -> web.Response:
            headers = {"Content-Type": request.headers.get("Content-Type", "text/xml")}
            if "SOAPAction" in request.headers:
                headers["SOAPAction"] = request.headers["SOAPAction"]
            async with session.post(target, data=await request.read(),
                                    headers=headers) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, headers={
                    k: v for k, v in resp.headers.items() if k.lower() not in _HOP})
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_post("/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        await asyncio.Event().wait()
    _run_until_stopped(main())


def serve_aio(handler, port: int) -> None:
    import asyncio

    from tunduk.server.edges.aio.http_server import Connections, HttpConnection

    async def main() -> None:
        loop = asyncio.get_running_loop()
        conns = Connections()
        await loop.create_server(lambda: HttpConnection(handler, server_name="bench",
                                                        connections=conns),
                                 "127.0.0.1", port, backlog=1024)
        await asyncio.Event().wait()
    _run_until_stopped(main())


STATIC_ANSWER = (
    b"<?xml version='1.0' encoding='UTF-8'?>\n<soap11env:Envelope xmlns:soap11env="
    b'"http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="http://registry.demo.tunduk.kg/">'
    b"<soap11env:Body><tns:echoResponse><tns:echoResult>" + b"static answer " * 100
    + b"</tns:echoResult></tns:echoResponse></soap11env:Body></soap11env:Envelope>")


def static(body: bytes = STATIC_ANSWER) -> Callable:
    """A fixed echo answer: the ceiling of the load generator plus cheroot."""
    def app(environ, start_response):
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("200 OK", [("Content-Type", "text/xml"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def serve(app: Callable, port: int, threads: int) -> None:
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=threads)
    # Nothing to flush: leave at once (a graceful cheroot stop from a signal handler
    # waits for keep-alive connections).
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    try:
        server.safe_start()
    except KeyboardInterrupt:
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.apps")
    p.add_argument("kind", choices=("backend", "aioproxy", "aiohttpproxy", "static"))
    p.add_argument("port", type=int)
    p.add_argument("upstream", nargs="?")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=16)
    a = p.parse_args(argv)
    if a.kind == "backend":
        from tunduk.server.services.civil_registry import wsgi_app
        app = slow(wsgi_app, a.delay_ms / 1000) if a.delay_ms else wsgi_app
    elif a.kind in ("aioproxy", "aiohttpproxy"):
        if not a.upstream:
            p.error(f"{a.kind} needs UPSTREAM_URL")
        if a.kind == "aiohttpproxy":
            serve_aiohttp(a.upstream, a.port)
        else:
            serve_aio(AioPassThrough(a.upstream), a.port)
        return 0
    else:
        app = static()
    serve(app, a.port, a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
