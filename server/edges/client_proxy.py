"""WSGI edge of the consumer's security server: local systems POST X-Road SOAP here."""
from __future__ import annotations

from typing import Callable, Optional

from ..conf.model import SecurityServer
from ..core import errors
from ..core.client_side import SIGNED_CONTENT_TYPE, ClientSide, PendingExchange
from ..core.envelope import MAX_MESSAGE_BYTES
from ..core.errors import Origin, PeerFault, XRoadError
from .http_pool import Pool, Pools, Response, TransportError, pin_to, split_host_port
from .wsgi_util import internal_error, read_body, respond, respond_error

ORIGIN = Origin.CLIENT_PROXY


class PeerClient:
    """Sends signed requests to provider servers over pooled mutual TLS."""

    def __init__(self, ssl_context, timeout: float = 60.0) -> None:
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._pools: dict[str, Pool] = {}
        self._by_address = Pools(self._make_pool)
        self._pins: dict[tuple[str, int], frozenset[str]] = {}

    def _make_pool(self, host: str, port: int) -> Pool:
        return Pool(host, port, ssl_context=self.ssl_context, timeout=self.timeout,
                    verify_peer=pin_to(self._pins[(host, port)]))

    def send(self, pending: PendingExchange) -> Response:
        failures = []
        for server in pending.targets:
            host, port = split_host_port(server.address)
            self._pins[(host, port)] = server.auth_cert_sha256
            headers = {"Content-Type": SIGNED_CONTENT_TYPE}
            if pending.soap_action is not None:
                headers["SOAPAction"] = pending.soap_action
            try:
                return self._by_address.get(host, port).post("/", pending.body, headers)
            except TransportError as exc:
                failures.append(f"{server} at {server.address}: {exc}")
        raise XRoadError(errors.NETWORK_ERROR,
                         "could not reach the provider's security server ("
                         + "; ".join(failures) + "); check that it runs and that the "
                         "federation configuration has its current address")

    def close(self) -> None:
        self._by_address.close()


class ClientProxyApp:
    def __init__(self, side: ClientSide, peers: PeerClient,
                 get_handler: Optional[Callable] = None,
                 max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.side = side
        self.peers = peers
        self.get_handler = get_handler      # metaservices / WSDL (GET requests)
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method == "GET" and self.get_handler is not None:
                return self.get_handler(environ, start_response)
            if method != "POST":
                raise XRoadError(errors.INVALID_HTTP_METHOD,
                                 f"HTTP {method} is not accepted here: POST an X-Road SOAP "
                                 "request (GET serves /wsdl and /listClients)", http_status=405)
            raw = read_body(environ, self.max_bytes)
            return self.exchange(raw, environ.get("CONTENT_TYPE"),
                                 environ.get("HTTP_SOAPACTION"), start_response)
        except XRoadError as err:
            return respond_error(start_response, err, ORIGIN)
        except Exception as exc:  # the caller always gets a fault, never a traceback
            return respond_error(start_response, internal_error(exc), ORIGIN)

    def exchange(self, raw: bytes, content_type: Optional[str], soap_action: Optional[str],
                 start_response):
        pending = None
        try:
            pending = self.side.prepare(raw, content_type, soap_action)
            resp = self.peers.send(pending)
            body = self.side.finish(pending, resp.body, resp.headers.get("content-type"),
                                    resp.status)
            return respond(start_response, 200, body, SIGNED_CONTENT_TYPE)
        except PeerFault as fault:
            return respond(start_response, fault.status if fault.status >= 400 else 500,
                           fault.body, fault.content_type)
        except XRoadError as err:
            headers = pending.request.xroad.elements if pending is not None else None
            return respond_error(start_response, err, ORIGIN, headers)
