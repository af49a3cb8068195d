"""Host local services in-process: turn a ``module:attr`` spec into a WSGI app.

A :class:`~tunduk.server.conf.model.LocalService` may name a spyne service instead of a
backend URL; the server proxy then calls it without a socket.  The attribute may be a
spyne ``Application``, a spyne ``WsgiApplication``, a spyne ``ServiceBase`` subclass or
any WSGI callable.  spyne apps are wrapped with :class:`XRoadHeaderEcho` so responses
echo the X-Road headers and the WSDL declares them.
"""
from __future__ import annotations

import functools
import importlib
import io
from typing import Callable, Iterable
from urllib.parse import urlsplit

from lxml import etree
from spyne import Application, ServiceBase
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

from ..core import errors
from ..core.wsdl import parse_wsdl, set_soap_address
from .echo_headers import XRoadHeaderEcho

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def _resolve(spec: str) -> object:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"service spec must be 'module:attribute', got {spec!r}")
    module = importlib.import_module(module_name)
    obj = module
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ValueError(f"{module_name} has no attribute {attr!r}") from None
    return obj


@functools.lru_cache(maxsize=None)
def load_wsgi_app(spec: str) -> WsgiApp:
    """The WSGI callable for ``spec`` (cached: one app object per spec)."""
    obj = _resolve(spec)
    if isinstance(obj, XRoadHeaderEcho):
        return obj
    if isinstance(obj, WsgiApplication):
        return XRoadHeaderEcho(obj)
    if isinstance(obj, Application):
        return XRoadHeaderEcho(WsgiApplication(obj))
    if isinstance(obj, type) and issubclass(obj, ServiceBase):
        tns = getattr(obj, "__namespace__", None) or f"urn:tunduk:{obj.__module__}"
        app = Application([obj], tns=tns, name=obj.__name__,
                           in_protocol=Soap11(validator="lxml"), out_protocol=Soap11())
        return XRoadHeaderEcho(WsgiApplication(app))
    if callable(obj):
        return obj  # a plain WSGI app answers for itself
    raise ValueError(f"{spec} is neither a spyne service nor a WSGI callable")


def call_wsgi(app: WsgiApp, method: str, url: str, body: bytes = b"",
              headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Call a WSGI app in-process, as an HTTP request to ``url`` would:
    (status, lower-cased response headers, body)."""
    u = urlsplit(url)
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": u.path or "/", "QUERY_STRING": u.query,
        "SCRIPT_NAME": "", "SERVER_NAME": u.hostname or "localhost",
        "SERVER_PORT": str(u.port or (443 if u.scheme == "https" else 80)),
        "HTTP_HOST": u.netloc or "localhost", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0),
        "wsgi.url_scheme": u.scheme or "http", "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    started: list = []

    def start_response(status: str, response_headers: list, exc_info=None):
        started[:] = [status, response_headers]
        return lambda data: None

    result = app(environ, start_response)
    try:
        data = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return (int(started[0].split()[0]), {k.lower(): v for k, v in started[1]}, data)


def local_wsdl(spec: str, address: str) -> bytes:
    """The hosted service's WSDL (X-Road headers declared), endpoint set to ``address``."""
    status, _, body = call_wsgi(load_wsgi_app(spec), "GET", address.rstrip("?") + "?wsdl")
    if status != 200:
        raise errors.XRoadError(errors.WSDL_FAILED,
                                f"service {spec} gave HTTP {status} for its WSDL")
    root = parse_wsdl(body)
    # spyne caches the WSDL with the URL of the first request: set ours explicitly.
    set_soap_address(root, address)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
