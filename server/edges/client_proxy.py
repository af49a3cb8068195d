"""WSGI edge of the consumer's security server: local systems POST X-Road SOAP here."""
from __future__ import annotations

from typing import Callable, Optional

from ..conf.model import LegacyAlias
from ..core import detached, errors, legacy
from ..core.client_side import (SIGNED_CONTENT_TYPE, ClientSide, PendingExchange,
                                check_content_type)
from ..core.envelope import MAX_MESSAGE_BYTES
from ..core.errors import Origin, PeerFault, XRoadError
from ..core.faults import FAULT_CONTENT_TYPE
from .http_pool import Pool, Pools, Response, TransportError, pin_to, split_host_port
from .wsgi_util import fault_body, internal_error, read_body, respond, respond_error

ORIGIN = Origin.CLIENT_PROXY


class PeerPins:
    """The authentication certificates registered for each provider server address,
    as the federation configuration says at the time of each request."""

    def __init__(self) -> None:
        self._pins: dict[tuple[str, int], frozenset[str]] = {}

    def register(self, server) -> tuple[str, int]:
        """Note ``server``'s current certificates; its (host, port)."""
        host, port = split_host_port(server.address)
        self._pins[(host, port)] = server.auth_cert_sha256
        return host, port

    def verifier(self, host: str, port: int) -> Callable[[bytes], None]:
        def verify(der: bytes) -> None:
            # the pins registered now, not those of when the pool was made
            pin_to(self._pins[(host, port)])(der)
        return verify


class PeerClient:
    """Sends signed requests to provider servers over pooled mutual TLS."""

    def __init__(self, ssl_context, timeout: float = 60.0) -> None:
        self.ssl_context = ssl_context
        self.timeout = timeout
        self._by_address = Pools(self._make_pool)
        self.pins = PeerPins()

    def _make_pool(self, host: str, port: int) -> Pool:
        return Pool(host, port, ssl_context=self.ssl_context, timeout=self.timeout,
                    verify_peer=self.pins.verifier(host, port))

    def send(self, pending: PendingExchange) -> Response:
        attempts = Failover(pending, self.pins)
        for host, port in attempts:
            try:
                return self._by_address.get(host, port).post("/", pending.body,
                                                             attempts.headers)
            except TransportError as exc:
                attempts.failed(exc)
        raise attempts.exhausted()

    def close(self) -> None:
        self._by_address.close()


def peer_headers(pending: PendingExchange) -> dict[str, str]:
    headers = {"Content-Type": pending.content_type,
               detached.SIGNATURE_HEADER: detached.header_value(pending.signature)}
    if pending.soap_action is not None:
        headers["SOAPAction"] = pending.soap_action
    return headers


class Failover:
    """The provider's servers in turn, for both engines' peer clients: iterate for
    (host, port) with its certificates registered, report each TransportError to
    ``failed`` (it raises once the request may have been handled: sending it to
    another server could run it twice), raise ``exhausted()`` after the last."""

    def __init__(self, pending: PendingExchange, pins: PeerPins) -> None:
        self.pending, self.pins = pending, pins
        self.headers = peer_headers(pending)
        self.failures: list[str] = []
        self._server = None

    def __iter__(self):
        for server in self.pending.targets:
            self._server = server
            yield self.pins.register(server)

    def failed(self, exc: TransportError) -> None:
        server = self._server
        self.failures.append(f"{server} at {server.address}: {exc}")
        if exc.sent:
            raise XRoadError(errors.NETWORK_ERROR,
                             "the exchange with the provider's security server failed "
                             f"after the request was sent ({self.failures[-1]}); it may "
                             "or may not have been processed") from None

    def exhausted(self) -> XRoadError:
        return XRoadError(errors.NETWORK_ERROR,
                          "could not reach the provider's security server ("
                          + "; ".join(self.failures) + "); check that it runs and that "
                          "the federation configuration has its current address")


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
            alias = self.legacy_alias(environ.get("PATH_INFO") or "/")
            raw = read_body(environ, self.max_bytes)
            content_type = environ.get("CONTENT_TYPE")
            soap_action = environ.get("HTTP_SOAPACTION")
            if alias is not None:
                return self.legacy_exchange(alias, raw, content_type, soap_action,
                                            start_response)
            # Any path (and absolute-form targets) carries an ordinary X-Road request.
            return self.exchange(raw, content_type, soap_action, start_response)
        except XRoadError as err:
            return respond_error(start_response, err, ORIGIN)
        except Exception as exc:  # the caller always gets a fault, never a traceback
            return respond_error(start_response, internal_error(exc), ORIGIN)

    def legacy_alias(self, path: str) -> Optional[LegacyAlias]:
        for alias in self.side.conf.legacy:
            if alias.path.rstrip("/") == path.rstrip("/"):
                return alias
        return None

    def exchange(self, raw: bytes, content_type: Optional[str], soap_action: Optional[str],
                 start_response):
        status, body, ctype = self.run_exchange(raw, content_type, soap_action)
        return respond(start_response, status, body, ctype)

    def legacy_exchange(self, alias: LegacyAlias, raw: bytes, content_type: Optional[str],
                        soap_action: Optional[str], start_response):
        """A plain SOAP request on an alias path: X-Road headers added, then removed."""
        check_content_type(content_type)
        xroad_raw = legacy.add_headers(raw, content_type, alias.client, alias.service)
        status, body, ctype = self.run_exchange(xroad_raw, SIGNED_CONTENT_TYPE, soap_action)
        return respond(start_response, status, legacy.strip_headers(body), ctype)

    def run_exchange(self, raw: bytes, content_type: Optional[str],
                     soap_action: Optional[str]) -> tuple[int, bytes, str]:
        """One request through the signed exchange: (HTTP status, body, content type).

        Faults (ours or the peer's) are answers too, never exceptions.
        """
        pending = None
        try:
            pending = self.side.prepare(raw, content_type, soap_action)
            resp = self.peers.send(pending)
            return answer(self.side, pending, resp)
        except (PeerFault, XRoadError) as exc:
            return fault_answer(exc, pending)


def answer(side: ClientSide, pending: PendingExchange, resp: Response
           ) -> tuple[int, bytes, str]:
    body = finish(side, pending, resp)
    # SOAP 1.1 over HTTP: a Fault travels with status 500, also the service's own.
    return (500 if pending.response_is_fault else 200), body, pending.response_content_type


def fault_answer(exc: Exception, pending: Optional[PendingExchange]
                 ) -> tuple[int, bytes, str]:
    """(status, body, content type) for a fault: the peer's as it came, or ours."""
    if isinstance(exc, PeerFault):
        return exc.status if exc.status >= 400 else 500, exc.body, exc.content_type
    assert isinstance(exc, XRoadError)
    headers = pending.request.xroad.elements if pending is not None else None
    return exc.http_status, fault_body(exc, ORIGIN, headers), FAULT_CONTENT_TYPE


def finish(side: ClientSide, pending: PendingExchange, resp: Response) -> bytes:
    """``side.finish`` with the peer's answer and its signature header."""
    try:
        signature = detached.from_header(resp.headers.get(detached.SIGNATURE_HEADER.lower()))
    except XRoadError as exc:   # a malformed header is the peer's fault
        raise XRoadError(errors.INVALID_RESPONSE, "the provider's security server sent "
                         f"an invalid response: {exc.message}") from None
    return side.finish(pending, resp.body, resp.headers.get("content-type"), resp.status,
                       signature)
