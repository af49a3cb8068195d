"""Calls to the provider's local services: an HTTP URL, or a WSGI app hosted in-process."""
from __future__ import annotations

import logging
import ssl
import threading
from typing import Optional
from urllib.parse import urlsplit

from ..conf.model import LocalService
from ..core import errors
from ..core.errors import XRoadError
from ..services.hosting import call_wsgi, load_wsgi_app, local_wsdl
from .http_pool import Pool, Response, TransportError

log = logging.getLogger("tunduk")


#: Endpoint written into a hosted service's WSDL before it leaves this server; the
#: consumer's server replaces it with its own address anyway.
WSDL_PLACEHOLDER_ADDRESS = "http://localhost/"


def _with_wsdl_query(url: str) -> str:
    return url + ("&wsdl" if "?" in url else "?wsdl")


def unreachable(service: LocalService, exc: TransportError) -> XRoadError:
    # The caller may be another organisation: the backend's address and the socket
    # error go to this server's log only, under the fault's id.
    err = XRoadError(errors.SERVICE_FAILED,
                     f"the service {service.id} could not be reached; the provider's "
                     "operator can find the cause by the id in faultDetail")
    log.warning("backend %s of %s failed [%s]: %s", service.backend_url, service.id,
                err.detail_id, exc)
    return err


def request_headers(content_type: str, soap_action: Optional[str]) -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if soap_action is not None:
        headers["SOAPAction"] = soap_action
    return headers


def backend_path(url) -> str:
    return (url.path or "/") + (f"?{url.query}" if url.query else "")


class Backends:
    def __init__(self) -> None:
        self._pools: dict[tuple, Pool] = {}
        self._lock = threading.Lock()
        self._tls = ssl.create_default_context()   # https backends: system CAs

    def _pool(self, scheme: str, host: str, port: Optional[int], timeout: float) -> Pool:
        """One keep-alive pool per backend endpoint and timeout (https: TLS, port 443)."""
        key = (scheme, host, port, timeout)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    tls, port = self.endpoint(scheme, port)
                    pool = self._pools[key] = Pool(host, port, ssl_context=tls,
                                                   timeout=timeout)
        return pool

    def endpoint(self, scheme: str, port: Optional[int]
                 ) -> tuple[Optional[ssl.SSLContext], int]:
        """(TLS context or None, port) for a backend URL's scheme and port; both
        engines' pools use this one context (system CAs, loaded once)."""
        tls = self._tls if scheme == "https" else None
        return tls, port or (443 if tls else 80)

    def call(self, service: LocalService, body: bytes, content_type: str,
             soap_action: Optional[str]) -> Response:
        headers = request_headers(content_type, soap_action)
        try:
            if service.spyne:
                # A hosted spyne service: called in-process, no socket.
                status, resp_headers, data = call_wsgi(load_wsgi_app(service.spyne), "POST",
                                                       "http://localhost/", body, headers)
                return Response(status, resp_headers, data)
            url = urlsplit(service.backend_url)
            pool = self._pool(url.scheme, url.hostname, url.port, service.timeout)
            return pool.post(backend_path(url), body, headers)
        except TransportError as exc:
            raise unreachable(service, exc) from None

    def fetch_wsdl(self, service: LocalService) -> bytes:
        """The service's own WSDL: from the hosted spyne app, or by GET from the backend
        (``wsdl_url``, else ``<backend url>?wsdl``) over the pooled client."""
        if service.spyne:
            return local_wsdl(service.spyne, WSDL_PLACEHOLDER_ADDRESS)
        location = service.wsdl_url or _with_wsdl_query(service.backend_url or "")
        url = urlsplit(location)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise XRoadError(errors.WSDL_FAILED,
                             f"no WSDL location for service {service.id}: set wsdl_url "
                             "to an http(s):// URL in the configuration")
        try:
            resp = self._pool(url.scheme, url.hostname, url.port, service.timeout).get(
                backend_path(url))
        except TransportError as exc:
            raise XRoadError(errors.WSDL_FAILED,
                             f"could not fetch the WSDL of {service.id} from {location}: "
                             f"{exc}") from None
        if resp.status != 200:
            raise XRoadError(errors.WSDL_FAILED,
                             f"the WSDL of {service.id} at {location} answered HTTP "
                             f"{resp.status}")
        return resp.body

    def close(self) -> None:
        for pool in list(self._pools.values()):
            pool.close()
