"""Calls to the provider's local services: an HTTP URL, or a WSGI app hosted in-process."""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from ..conf.model import LocalService
from ..core import errors
from ..core.errors import XRoadError
from ..services.hosting import call_wsgi, load_wsgi_app, local_wsdl
from .http_pool import Pool, Pools, Response, TransportError


#: Endpoint written into a hosted service's WSDL before it leaves this server; the
#: consumer's server replaces it with its own address anyway.
WSDL_PLACEHOLDER_ADDRESS = "http://localhost/"


def _with_wsdl_query(url: str) -> str:
    return url + ("&wsdl" if "?" in url else "?wsdl")


class Backends:
    def __init__(self, timeout: float = 30.0) -> None:
        self._pools = Pools(lambda host, port: Pool(host, port, timeout=timeout))

    def call(self, service: LocalService, body: bytes, content_type: str,
             soap_action: Optional[str]) -> Response:
        headers = {"Content-Type": content_type}
        if soap_action is not None:
            headers["SOAPAction"] = soap_action
        try:
            if service.spyne:
                # A hosted spyne service: called in-process, no socket.
                status, resp_headers, data = call_wsgi(load_wsgi_app(service.spyne), "POST",
                                                       "http://localhost/", body, headers)
                return Response(status, resp_headers, data)
            url = urlsplit(service.backend_url)
            pool = self._pools.get(url.hostname, url.port or 80)
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

    def close(self) -> None:
        self._pools.close()
