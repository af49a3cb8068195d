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


def local_wsdl(spec: str, address: str) -> bytes:
    """The hosted service's WSDL (X-Road headers declared), endpoint set to ``address``."""
    app = load_wsgi_app(spec)
    url = urlsplit(address)
    host = url.hostname or "localhost"
    port = str(url.port or (443 if url.scheme == "https" else 80))
    environ = {
        "REQUEST_METHOD": "GET", "QUERY_STRING": "wsdl", "PATH_INFO": url.path or "/",
        "SCRIPT_NAME": "", "SERVER_NAME": host, "SERVER_PORT": port,
        "HTTP_HOST": url.netloc or host, "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": url.scheme or "http", "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(), "wsgi.version": (1, 0), "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    status: list[str] = []

    def start_response(s: str, headers: list, exc_info=None):
        status.append(s)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    if not status or not status[0].startswith("200"):
        raise errors.XRoadError(errors.WSDL_FAILED,
                                f"service {spec} gave {status[:1]} for its WSDL")
    root = parse_wsdl(body)
    # spyne caches the WSDL with the URL of the first request: set ours explicitly.
    set_soap_address(root, address)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
