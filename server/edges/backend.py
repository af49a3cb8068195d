"""What the server proxy needs to call the provider's local services: request headers,
paths, the WSDL's location, the fault for an unreachable backend, the TLS context."""
from __future__ import annotations

import logging
import ssl
from typing import Optional
from urllib.parse import urlsplit

from ..conf.model import LocalService
from ..core import errors
from ..core.errors import XRoadError
from .http_wire import TransportError

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


def wsdl_location(service: LocalService) -> str:
    """Where a backend service's WSDL is fetched: ``wsdl_url``, else ``<url>?wsdl``."""
    location = service.wsdl_url or _with_wsdl_query(service.backend_url or "")
    url = urlsplit(location)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise XRoadError(errors.WSDL_FAILED,
                         f"no WSDL location for service {service.id}: set wsdl_url "
                         "to an http(s):// URL in the configuration")
    return location


class Backends:
    """The TLS context for https backends (system CAs, loaded once)."""

    def __init__(self) -> None:
        self._tls = ssl.create_default_context()

    def endpoint(self, scheme: str, port: Optional[int]
                 ) -> tuple[Optional[ssl.SSLContext], int]:
        """(TLS context or None, port) for a backend URL's scheme and port."""
        tls = self._tls if scheme == "https" else None
        return tls, port or (443 if tls else 80)
