"""WSGI edge of the provider's security server: peers POST signed requests over mutual TLS."""
from __future__ import annotations

import ssl
from typing import Optional

from ..core import detached, errors
from ..core.envelope import MAX_MESSAGE_BYTES, check_soap_action
from ..core.errors import Origin, XRoadError
from ..core.getwsdl import GET_WSDL
from ..core.server_side import BACKEND_CONTENT_TYPE, AcceptedRequest, ServerSide
from .backend import Backends
from .wsgi_util import internal_error, read_body, respond, respond_error

ORIGIN = Origin.SERVER_PROXY
_SIGNATURE_ENV = "HTTP_" + detached.SIGNATURE_HEADER.upper().replace("-", "_")


def peer_cert_der(environ: dict) -> Optional[bytes]:
    pem = environ.get("SSL_CLIENT_CERT")
    return ssl.PEM_cert_to_DER_cert(pem) if pem else None


def answer_headers(accepted: AcceptedRequest) -> list[tuple[str, str]]:
    """Besides Content-Type: the signature of the response."""
    return [(detached.SIGNATURE_HEADER, detached.header_value(accepted.response_signature))]


class ServerProxyApp:
    def __init__(self, side: ServerSide, backends: Backends,
                 max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.side = side
        self.backends = backends
        self.max_bytes = max_bytes

    def __call__(self, environ, start_response):
        accepted = None
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise XRoadError(errors.INVALID_HTTP_METHOD,
                                 "the server proxy accepts only POST", http_status=405)
            raw = read_body(environ, self.max_bytes)
            signature = detached.from_header(environ.get(_SIGNATURE_ENV))
            accepted = self.side.accept(raw, environ.get("CONTENT_TYPE"),
                                        peer_cert_der(environ), signature)
            body = self.answer(accepted, environ.get("HTTP_SOAPACTION"))
            return respond(start_response, 200, body, accepted.response_content_type,
                           answer_headers(accepted))
        except XRoadError as err:
            headers = accepted.request.xroad.elements if accepted is not None else None
            return respond_error(start_response, err, ORIGIN, headers)
        except Exception as exc:
            return respond_error(start_response, internal_error(exc), ORIGIN)

    def answer(self, accepted: AcceptedRequest, soap_action: Optional[str]) -> bytes:
        """The signed response to an accepted request: from a metaservice or the
        backend (blocking)."""
        if accepted.meta is not None:
            return self.side.respond(accepted, self.answer_meta(accepted),
                                     BACKEND_CONTENT_TYPE, 200)
        check_soap_action(soap_action, accepted.request.xroad.service.service_code)
        resp = self.backends.call(accepted.service, accepted.backend_body,
                                  accepted.backend_content_type, soap_action)
        return self.side.respond(accepted, resp.body, resp.headers.get("content-type"),
                                 resp.status)

    def answer_meta(self, accepted: AcceptedRequest) -> bytes:
        """A metaservice's unsigned response, produced here instead of by a backend."""
        if accepted.meta == GET_WSDL:
            target = self.side.wsdl_target(accepted)
            return self.side.wsdl_response(accepted, target, self.backends.fetch_wsdl(target))
        return self.side.method_list(accepted)
