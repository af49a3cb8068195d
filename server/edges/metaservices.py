"""GET requests on the client proxy: ``/listClients``, ``/wsdl?...``, ``/xsd/<name>``,
``/healthz`` (message log and time-stamping state, JSON; 503 while exchanges are refused).

``/wsdl`` asks the provider's security server for the service's WSDL with the
``getWsdl`` metaservice, through the same signed, mutually authenticated exchange as
any request (client: this server's owner member), then rewrites it so that calls go to
this client proxy and schema imports point at ``/xsd/`` here: clients never need the
internet to build themselves.  Every error is a SOAP fault with HTTP 500.
"""
from __future__ import annotations

import json
from typing import Callable, Iterable, Optional
from urllib.parse import parse_qs

from tunduk.schemas import SCHEMA_NAMES, schema_bytes

from ..conf.model import ServerConf
from ..core import errors, getwsdl
from ..core.client_side import SIGNED_CONTENT_TYPE, ClientSide
from ..core.envelope import parse_xml
from ..core.errors import Origin, PeerFault, XRoadError
from ..core.identifiers import ClientId, ServiceId
from ..core.metaservices import list_clients_xml
from ..core.wsdl import prepare_wsdl
from ..messagelog.health import health
from .client_proxy import finish
from .wsgi_util import internal_error, respond, respond_error

ORIGIN = Origin.CLIENT_PROXY
XML_CONTENT_TYPE = "text/xml; charset=utf-8"
_ID_PARAMS = ("xRoadInstance", "memberClass", "memberCode")


def base_url(environ: dict) -> str:
    """This client proxy's own base URL as the caller reached it (Host header first)."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST")
    if not host:
        host = environ.get("SERVER_NAME", "localhost")
        port = environ.get("SERVER_PORT")
        if port and port != ("443" if scheme == "https" else "80"):
            host = f"{host}:{port}"
    return f"{scheme}://{host}"


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


class GetHandler:
    """WSGI app for the client proxy's GET requests."""

    def __init__(self, conf: ServerConf, client_side: ClientSide, peers) -> None:
        self.conf = conf
        self.side = client_side
        self.peers = peers          # edges.client_proxy.PeerClient
        self.owner = ClientId(conf.owner.instance, conf.owner.member_class,
                              conf.owner.member_code)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        try:
            if path.rstrip("/") == "/listClients":
                q = parse_qs(environ.get("QUERY_STRING", ""))
                body = list_clients_xml(self.conf.federation, _one(q, "xRoadInstance"))
                return respond(start_response, 200, body, XML_CONTENT_TYPE)
            if path.rstrip("/") == "/wsdl":
                return self.wsdl(environ, start_response)
            if path.startswith("/xsd/"):
                return self.schema(path[len("/xsd/"):], start_response)
            if path.rstrip("/") == "/healthz":
                return self.healthz(start_response)
            raise XRoadError(errors.INVALID_HTTP_METHOD,
                             f"nothing to GET at {path}: GET serves /listClients, "
                             "/wsdl?..., /xsd/<schema> and /healthz; POST X-Road requests",
                             http_status=404)
        except PeerFault as fault:
            return respond(start_response, 500, fault.body, fault.content_type)
        except XRoadError as err:
            return respond_error(start_response, err, ORIGIN)
        except Exception as exc:  # a fault, never a traceback
            return respond_error(start_response, internal_error(exc), ORIGIN)

    def wsdl(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        service = service_from_query(environ.get("QUERY_STRING", ""))
        answer = self.fetch_wsdl(service)
        base = base_url(environ)
        body = prepare_wsdl(answer.wsdl, soap_address=base + "/",
                            schema_base_url=base + "/xsd/",
                            service_version=answer.service_version or service.version)
        return respond(start_response, 200, body, XML_CONTENT_TYPE)

    def fetch_wsdl(self, service: ServiceId) -> getwsdl.WsdlAnswer:
        """getWsdl through the signed exchange, as this server's owner member."""
        raw = getwsdl.request_envelope(self.owner, service)
        pending = self.side.prepare(raw, SIGNED_CONTENT_TYPE)
        resp = self.peers.send(pending)
        body = finish(self.side, pending, resp)
        root = parse_xml(body)
        fault = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/"
                          "{http://schemas.xmlsoap.org/soap/envelope/}Fault")
        if fault is not None:
            # A signed fault (unusual for a metaservice): pass its code on.
            code = (fault.findtext("faultcode") or "").split(":")[-1].strip()
            raise XRoadError(code or errors.WSDL_FAILED,
                             fault.findtext("faultstring") or "getWsdl failed")
        return getwsdl.read_response(root)

    def healthz(self, start_response: Callable) -> Iterable[bytes]:
        """Message log / time-stamping state for operators (no key material, no DSN)."""
        status, doc = health(self.side.log)
        body = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
        return respond(start_response, status, body, "application/json")

    @staticmethod
    def schema(name: str, start_response: Callable) -> Iterable[bytes]:
        if name not in SCHEMA_NAMES:
            raise XRoadError(errors.INVALID_HTTP_METHOD,
                             f"no schema {name!r} here; available: "
                             + ", ".join(SCHEMA_NAMES), http_status=404)
        return respond(start_response, 200, schema_bytes(name), XML_CONTENT_TYPE)


def make_get_handler(conf: ServerConf, client_side: ClientSide, peers) -> GetHandler:
    """The client proxy's GET app; ``peers`` sends getWsdl to providers (PeerClient)."""
    return GetHandler(conf, client_side, peers)
