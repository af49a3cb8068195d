"""Run a WSGI app (ours) for a request read on the event loop, on a worker thread.

The event-loop engine handles the hot path (ordinary X-Road exchanges) itself; the
rest — GET metaservices and WSDL, legacy aliases, hosted spyne services, getWsdl — goes
through the same WSGI apps the threaded engine serves, so both engines answer alike.
"""
from __future__ import annotations

import asyncio
import io
import ssl
from concurrent.futures import Executor

from .http_server import Answer, Request


def environ_for(request: Request) -> dict:
    env = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": request.path,
        "QUERY_STRING": request.query,
        "REQUEST_URI": request.target,
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "SERVER_NAME": str(request.server_address[0]),
        "SERVER_PORT": str(request.server_address[1]),
        "REMOTE_ADDR": str(request.client_address[0]),
        "REMOTE_PORT": str(request.client_address[1]),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "https" if request.tls else "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(request.body)),
    }
    for name, value in request.headers.items():
        if name == "content-type":
            env["CONTENT_TYPE"] = value
        elif name not in ("content-length", "transfer-encoding"):
            env["HTTP_" + name.upper().replace("-", "_")] = value
    if request.peer_cert_der is not None:
        env["SSL_CLIENT_CERT"] = ssl.DER_cert_to_PEM_cert(request.peer_cert_der)
    return env


def call_app(app, request: Request) -> Answer:
    """``app`` on ``request``, on the calling thread."""
    out: dict = {}

    def start_response(status: str, headers: list, exc_info=None):
        out["status"], out["headers"] = status, headers
        return lambda data: None

    result = app(environ_for(request), start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close:
            close()
    return Answer(int(out["status"].split(" ", 1)[0]), list(out["headers"]), body)


async def run_app(executor: Executor, app, request: Request) -> Answer:
    return await asyncio.get_running_loop().run_in_executor(executor, call_app, app,
                                                            request)
