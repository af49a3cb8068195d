"""The provider's security server (server proxy), as named steps with no I/O.

accept():   parse → TLS peer is a server of the client's member → verify the detached
            signature over the exact bytes (core/detached.py) → signer is the client's
            member → service is ours → access → log → the request for the backend
            (the client's bytes unchanged; attachment digests removed from multipart)
            (metaservices listMethods/allowedMethods/getWsdl of our owner: no access
            rule needed, ``AcceptedRequest.meta`` says the server answers itself:
            method_list() / wsdl_target() + wsdl_response(), then respond())
respond():  parse the backend's answer → X-Road headers consistent (or copied) →
            requestHash → serialise → sign the bytes → log
The edge (edges/aio/proxies.py) does the HTTP around and between the two calls and
commits the message-log records each step returns on its result.

multipart/related messages (SOAP with attachments, MTOM): the signed SOAP part goes
through the same steps; after the signature, each attachment is checked against its
signed ``tdk:attachment`` digest (core/exchange.py), and the backend receives the
client's parts unchanged under the client's Content-Type.  A multipart response from
the backend gets the digests of its attachments signed the same way.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Optional

from lxml import etree

from ..conf.model import LocalService
from . import content_type as content_type_mod
from . import access, detached, errors, exchange, getwsdl, metaservices, mime, signing
from .envelope import (HEADER, REQUEST_HASH, Envelope, XRoadHeaders,
                       envelope_from_parts, parse_envelope, read_xroad_headers, serialize)
from .errors import XRoadError
from .identifiers import XROAD_NS, ServiceId
from .side import Side
from .tags import in_namespace

BACKEND_CONTENT_TYPE = "text/xml; charset=utf-8"


@dataclass
class AcceptedRequest:
    request: Envelope
    service: Optional[LocalService]   # None for a metaservice
    request_digest: str
    backend_body: bytes          # the client's message as the backend gets it
    meta: Optional[str] = None   # metaservice code answered by this server itself
    backend_content_type: str = BACKEND_CONTENT_TYPE        # of ``backend_body``
    response_content_type: str = BACKEND_CONTENT_TYPE       # set by respond()
    response_signature: Optional[bytes] = None              # set by respond()
    #: message-log records of accept() and respond(), for the edge to commit (and
    #: clear) before the step's output moves on
    records: list = field(default_factory=list)
    #: the signing act accepted (detached.VerifiedMessage.replay_key) and until when a
    #: replay of it would still verify; the edge refuses a second one
    replay_key: Optional[str] = None
    replay_until: Optional[datetime] = None


class ServerSide(Side):
    """The provider's steps (see the module docstring)."""

    # -- request ------------------------------------------------------------------
    def accept(self, raw: bytes, content_type: Optional[str],
               peer_cert_der: Optional[bytes],
               signature: Optional[bytes]) -> AcceptedRequest:
        self.log.check_accepting()
        msg = None
        soap, soap_type = raw, content_type or ""
        if mime.is_multipart_related(content_type):
            msg = mime.split(raw, content_type)
            soap, soap_type = msg.root.content, msg.root_content_type()
        else:
            content_type_mod.soap_request(content_type)
        env = parse_envelope(soap, soap_type, request=True, limits=self.conf.xml_limits)
        self.check_peer(env, peer_cert_der)
        verified = detached.verify_message(soap, soap_type, signature, self.trust)
        signing.refuse_auth_cert(verified.cert_der, self.conf.federation)
        signer = signing.cert_member_id(verified.cert)
        if signer != env.xroad.client.member:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             f"the request is signed by {signer}, but xroad:client is "
                             f"{env.xroad.client}: a member can only sign for itself")
        if verified.request_hash is None:
            raise XRoadError(errors.INVALID_SIGNATURE,
                             "the request's signature states no requestHash: was it sent "
                             "by a tunduk security server?")
        exchange.check_attachments(env.header, msg.attachments if msg else ())
        if msg is None and verified.request_hash != exchange.request_hash(soap):
            # the client's bytes came unchanged: the stated hash must be theirs, or the
            # signed response would answer a request this server never saw
            raise XRoadError(errors.INVALID_REQUEST_HASH,
                             "the requestHash in the request's signature is not the hash "
                             "of the request")
        self.check_client_known(env)
        meta = self.metaservice_of(env)
        if meta is None:
            service = self.find_service(env)
            self.check_access(env)
        else:
            service = None       # every authenticated member may ask (as X-Road)
        records: list = []
        self.record(records, env, soap, direction="request", side="server",
                    cert_der=verified.cert_der, content_type=soap_type,
                    signature=signature, replay_key=verified.replay_key)
        if msg is None:
            if env.charset == "utf-8":   # the client's bytes
                body, ctype = raw, BACKEND_CONTENT_TYPE
            else:
                # Another charset: the backend gets the message as tunduk read it, in
                # UTF-8, so that it cannot read other content than was checked.
                body, ctype = serialize(env.root), BACKEND_CONTENT_TYPE
        else:
            exchange.remove_attachment_digests(env.header)
            body, ctype, _ = mime.replace_root(msg, serialize(env.root))
        return AcceptedRequest(
            env, service, verified.request_hash, body, meta, backend_content_type=ctype,
            records=records, replay_key=verified.replay_key,
            replay_until=verified.expires + timedelta(seconds=detached.MAX_SKEW))

    def check_peer(self, env: Envelope, peer_cert_der: Optional[bytes]) -> None:
        member = env.xroad.client.member
        if not peer_cert_der:
            raise XRoadError(errors.SSL_AUTHENTICATION_FAILED,
                             "no TLS client certificate was presented")
        fingerprint = hashlib.sha256(peer_cert_der).hexdigest()
        for server in self.conf.federation.servers_of(member):
            if fingerprint in server.auth_cert_sha256:
                return
        raise XRoadError(errors.SSL_AUTHENTICATION_FAILED,
                         f"the TLS client certificate (sha256 {fingerprint[:16]}…) is not "
                         f"registered for any security server of member {member}")

    def check_client_known(self, env: Envelope) -> None:
        """Metaservices too are only for the federation's members and subsystems."""
        client = env.xroad.client
        if not self.conf.federation.has_client(client):
            raise XRoadError(errors.UNKNOWN_MEMBER,
                             f"client {client} is not a member or subsystem in the "
                             "federation configuration")

    def metaservice_of(self, env: Envelope) -> Optional[str]:
        """The metaservice code if the request is one this server answers itself.

        Metaservices of our owner member or of one of its subsystems are never
        forwarded to a backend, even if a local service had the same code.
        """
        sid = env.xroad.service
        if sid.service_code not in metaservices.META_SERVICE_CODES:
            return None
        if sid.member != self.conf.owner or not self.conf.federation.has_client(sid.provider):
            raise XRoadError(errors.UNKNOWN_SERVICE,
                             f"service {sid} is not provided by this security server "
                             f"(SERVER:{self.conf.owner}/{self.conf.server_code})")
        return sid.service_code

    def method_list(self, accepted: AcceptedRequest) -> bytes:
        """Response of listMethods (all services of the provider) or allowedMethods
        (those the caller may use), before respond() adds requestHash and signs."""
        req = accepted.request.xroad
        provider = req.service.provider
        if accepted.meta == "listMethods":
            return metaservices.list_methods_response(
                req.elements, metaservices.provided_services(self.conf, provider))
        if accepted.meta == "allowedMethods":
            return metaservices.allowed_methods_response(
                req.elements, metaservices.allowed_services(self.conf, req.client, provider))
        raise ValueError(f"{accepted.meta} is not a method-list metaservice")

    def wsdl_target(self, accepted: AcceptedRequest) -> LocalService:
        """The local service whose WSDL a getWsdl request asks for; only a client whose
        member (itself or one of its subsystems) may use the service sees it."""
        wanted = getwsdl.requested_service(accepted.request)
        target = self.find_service_id(wanted)
        client = accepted.request.xroad.client
        if not access.member_may_use(self.conf, client, target.id):
            raise XRoadError(errors.ACCESS_DENIED,
                             f"client {client} may not see the WSDL of service "
                             f"{target.id.without_version()}: neither its member nor any "
                             "of its subsystems has an access right to it; ask the "
                             "provider to grant access")
        return target

    @staticmethod
    def wsdl_response(accepted: AcceptedRequest, target: LocalService, wsdl: bytes) -> bytes:
        """getWsdlResponse carrying ``wsdl`` (see core/getwsdl.py for the format)."""
        sid = target.id
        if sid.version is None:
            sid = dataclasses.replace(
                sid, version=getwsdl.requested_service(accepted.request).version)
        return getwsdl.response_envelope(sid, wsdl)

    def find_service(self, env: Envelope) -> LocalService:
        return self.find_service_id(env.xroad.service)

    def find_service_id(self, sid: ServiceId) -> LocalService:
        local = self.conf.services.get(sid.without_version())
        if local is None:
            raise XRoadError(errors.UNKNOWN_SERVICE,
                             f"service {sid} is not provided by this security server "
                             f"(SERVER:{self.conf.owner}/{self.conf.server_code})")
        if sid.version and local.id.version and sid.version != local.id.version:
            raise XRoadError(errors.UNKNOWN_SERVICE,
                             f"service {sid.without_version()} exists in version "
                             f"{local.id.version}, not {sid.version}")
        return local

    def check_access(self, env: Envelope) -> None:
        if not access.is_allowed(self.conf, env.xroad.client, env.xroad.service):
            raise XRoadError(errors.ACCESS_DENIED,
                             f"client {env.xroad.client} is not allowed to use service "
                             f"{env.xroad.service.without_version()}: ask the provider to "
                             "grant access")

    # -- response -----------------------------------------------------------------
    def respond(self, accepted: AcceptedRequest, raw: bytes,
                content_type: Optional[str], status: int) -> bytes:
        msg, raw, root, header, body, _ = self.parse_answer(raw, content_type, status,
                                                    "the service")
        if not any(isinstance(c.tag, str) for c in body):
            raise XRoadError(errors.MISSING_BODY, "the service's response has an empty Body")
        if header is None:
            header = etree.Element(HEADER)
            root.insert(0, header)
        xroad = self.align_headers(accepted.request, header)
        hash_el = etree.SubElement(header, REQUEST_HASH, nsmap={"xrd": XROAD_NS})
        hash_el.set("algorithmId", exchange.SHA512_URI)
        hash_el.text = accepted.request_digest
        exchange.remove_attachment_digests(header)   # only ours may be signed
        if msg is not None:
            exchange.add_attachment_digests(header, msg.attachments)
        # align_headers() checked the X-Road headers; the only one added since is
        # requestHash, last in the Header, so they are not read again.
        xroad = _with_request_hash(xroad, accepted.request_digest, exchange.SHA512_URI,
                                   xroad.elements + (hash_el,))
        env = envelope_from_parts(root, header, body, request=False, xroad=xroad)
        signed = serialize(root)
        if msg is None:
            out, signed_type = signed, BACKEND_CONTENT_TYPE
            accepted.response_content_type = signed_type
        else:
            out, accepted.response_content_type, signed_type = mime.replace_root(msg, signed)
        signature = detached.sign_message(signed, signed_type, self.signer)
        self.record(accepted.records, env, signed, direction="response", side="server",
                    cert_der=self.signer.cert_der,
                    service=str(accepted.request.xroad.service),
                    content_type=signed_type, signature=signature)
        accepted.response_signature = signature
        return out

    @staticmethod
    def align_headers(request: Envelope, header: etree._Element) -> XRoadHeaders:
        """Make the response carry the request's X-Road headers, in order.

        Services should echo them; if one sends none we copy them (many backends
        cannot), but a service that echoes different values is an error.
        Returns the response's X-Road headers as now in ``header`` (no requestHash).
        """
        for old in [c for c in header if c.tag == REQUEST_HASH]:   # findall, cheaper
            header.remove(old)       # the service's own value is replaced
        has_xroad = any(in_namespace(c.tag, XROAD_NS) for c in header)
        if not has_xroad:
            copies = []
            for el in request.xroad.elements:
                if el.tag != REQUEST_HASH:   # a request should not carry one; ours follows
                    copies.append(copy.deepcopy(el))
                    header.append(copies[-1])
            return _with_request_hash(request.xroad, None, None, tuple(copies))
        try:
            resp = read_xroad_headers(header, request=False)
        except XRoadError as exc:
            raise XRoadError(errors.INCONSISTENT_RESPONSE,
                             f"the service's response has invalid X-Road headers: "
                             f"{exc.message}") from None
        field = request.xroad.first_difference(resp)
        if field is not None:
            raise XRoadError(errors.INCONSISTENT_RESPONSE,
                             f"the service changed X-Road header {field}: request has "
                             f"{getattr(request.xroad, field)}, response has "
                             f"{getattr(resp, field)}")
        return resp


def _with_request_hash(x: XRoadHeaders, value: Optional[str], algorithm: Optional[str],
                       elements: tuple) -> XRoadHeaders:
    """``x`` with another requestHash and header elements."""
    return dataclasses.replace(x, request_hash=value, request_hash_algorithm=algorithm,
                               elements=elements)
