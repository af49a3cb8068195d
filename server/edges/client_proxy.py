"""What the consumer's proxy does around the core steps, free of I/O: which provider
server to try next (Failover) with which pinned certificates (PeerPins), the headers
sent to it, and the answer or fault the local system gets."""
from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import parse_qs

from ..conf.model import LegacyAlias
from ..core import detached, errors
from ..core.client_side import ClientSide, PendingExchange
from ..core.errors import Origin, PeerFault, XRoadError
from ..core.faults import FAULT_CONTENT_TYPE
from ..core.identifiers import ServiceId
from .answers import fault_body
from .http_wire import Response, TransportError, pin_to, split_host_port

ORIGIN = Origin.CLIENT_PROXY
_ID_PARAMS = ("xRoadInstance", "memberClass", "memberCode")


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


def peer_headers(pending: PendingExchange) -> dict[str, str]:
    headers = {"Content-Type": pending.content_type,
               detached.SIGNATURE_HEADER: detached.header_value(pending.signature)}
    if pending.soap_action is not None:
        headers["SOAPAction"] = pending.soap_action
    return headers


class Failover:
    """The provider's servers in turn: iterate for
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


def legacy_alias(conf, path: str) -> Optional[LegacyAlias]:
    """The legacy alias configured for ``path``, if any."""
    for alias in conf.legacy:
        if alias.path.rstrip("/") == path.rstrip("/"):
            return alias
    return None


def _one(query: dict, name: str) -> Optional[str]:
    values = query.get(name)
    return values[0].strip() or None if values else None


def service_from_query(query_string: str) -> ServiceId:
    """The provider's service named by X-Road's ``/wsdl`` query parameters."""
    q = parse_qs(query_string, keep_blank_values=True)
    missing = [n for n in _ID_PARAMS + ("serviceCode",) if not _one(q, n)]
    if missing:
        raise XRoadError(errors.INVALID_SERVICE_IDENTIFIER,
                         "the /wsdl request lacks " + ", ".join(missing) + ": use /wsdl?"
                         "xRoadInstance=..&memberClass=..&memberCode=..[&subsystemCode=..]"
                         "&serviceCode=..[&version=..]")
    parts = [_one(q, n) for n in _ID_PARAMS]
    parts += [_one(q, "subsystemCode") or "", _one(q, "serviceCode")]
    version = _one(q, "version")
    text = "/".join(parts) + (f"/{version}" if version else "")
    try:
        return ServiceId.parse(text)
    except ValueError:
        raise XRoadError(errors.INVALID_SERVICE_IDENTIFIER,
                         f"the /wsdl parameters do not form a service identifier "
                         f"({text!r}): values may not contain '/'") from None


def response_of(side: ClientSide, pending: PendingExchange, resp: Response
                ) -> tuple[int, bytes, str]:
    """(status, body, content type) for the client from the peer's answer."""
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
