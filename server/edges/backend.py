"""Calls to the provider's local services: an HTTP URL, or a WSGI app hosted in-process."""
from __future__ import annotations

import importlib
import io
import threading
from typing import Optional
from urllib.parse import urlsplit

from ..conf.model import LocalService
from ..core import errors
from ..core.errors import XRoadError
from .http_pool import Pool, Pools, Response, TransportError


def load_wsgi(spec: str):
    """``module:attr`` → a WSGI callable (spyne Applications are wrapped)."""
    try:
        from ..services.hosting import load_wsgi_app
    except ImportError:
        modname, _, attr = spec.partition(":")
        return getattr(importlib.import_module(modname), attr)
    return load_wsgi_app(spec)


def call_wsgi(app, body: bytes, content_type: str, soap_action: Optional[str],
              path: str = "/") -> Response:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": "",
        "SERVER_NAME": "localhost", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body), "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.multithread": True,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }
    if soap_action is not None:
        environ["HTTP_SOAPACTION"] = soap_action
    status_headers: list = []

    def start_response(status, headers, exc_info=None):
        status_headers[:] = [status, headers]

    chunks = app(environ, start_response)
    try:
        data = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    status = int(status_headers[0].split()[0])
    return Response(status, {k.lower(): v for k, v in status_headers[1]}, data)


#: Endpoint written into a hosted service's WSDL before it leaves this server; the
#: consumer's server replaces it with its own address anyway.
WSDL_PLACEHOLDER_ADDRESS = "http://localhost/"


def _with_wsdl_query(url: str) -> str:
    return url + ("&wsdl" if "?" in url else "?wsdl")


class Backends:
    def __init__(self, timeout: float = 30.0) -> None:
        self._pools = Pools(lambda host, port: Pool(host, port, timeout=timeout))
        self._apps: dict[str, object] = {}
        self._lock = threading.Lock()

    def call(self, service: LocalService, body: bytes, content_type: str,
             soap_action: Optional[str]) -> Response:
        try:
            if service.spyne:
                return call_wsgi(self._app(service.spyne), body, content_type, soap_action)
            url = urlsplit(service.backend_url)
            pool = self._pools.get(url.hostname, url.port or 80)
            headers = {"Content-Type": content_type}
            if soap_action is not None:
                headers["SOAPAction"] = soap_action
            return pool.post(url.path or "/", body, headers)
        except TransportError as exc:
            raise XRoadError(errors.SERVICE_FAILED,
                             f"could not reach the service {service.id} at "
                             f"{service.backend_url}: {exc}; check that the backend runs "
                             "and the URL in the configuration is right") from None

    def fetch_wsdl(self, service: LocalService) -> bytes:
        """The service's own WSDL: from the hosted spyne app, or by GET from the backend
        (``wsdl_url``, else ``<backend url>?wsdl``) over the pooled client."""
        if service.spyne:
            from ..services.hosting import local_wsdl
            return local_wsdl(service.spyne, WSDL_PLACEHOLDER_ADDRESS)
        location = service.wsdl_url or _with_wsdl_query(service.backend_url or "")
        url = urlsplit(location)
        if url.scheme != "http" or not url.hostname:
            raise XRoadError(errors.WSDL_FAILED,
                             f"no WSDL location for service {service.id}: set wsdl_url "
                             "to an http:// URL in the configuration")
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            resp = self._pools.get(url.hostname, url.port or 80).get(path)
        except TransportError as exc:
            raise XRoadError(errors.WSDL_FAILED,
                             f"could not fetch the WSDL of {service.id} from {location}: "
                             f"{exc}") from None
        if resp.status != 200:
            raise XRoadError(errors.WSDL_FAILED,
                             f"the WSDL of {service.id} at {location} answered HTTP "
                             f"{resp.status}")
        return resp.body

    def _app(self, spec: str):
        app = self._apps.get(spec)
        if app is None:
            with self._lock:
                app = self._apps.get(spec) or load_wsgi(spec)
                self._apps[spec] = app
        return app

    def close(self) -> None:
        self._pools.close()
