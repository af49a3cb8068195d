"""The consumer's security server (client proxy), as named steps with no I/O.

prepare():  parse → check the client is ours → find the provider's servers →
            sign the client's exact bytes (core/detached.py), with the requestHash in
            the signed properties → log
finish():   parse the peer's answer → pass peer faults through → verify signature →
            check signer is the provider → check consistency and requestHash → log →
            the provider's bytes, unchanged, for the client
The edge (edges/aio/proxies.py) does the HTTP between the two calls and carries the
signatures in the X-Tunduk-Signature header.

multipart/related messages (SOAP with attachments, MTOM): the SOAP part goes through
the same steps; requestHash is over its exact bytes as received; each attachment's
digest is added as a ``tdk:attachment`` header (see core/exchange.py), so the SOAP part
is re-serialised and signed as sent; the attachments travel on unchanged after it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from lxml import etree

from ..conf.model import SecurityServer
from . import content_type as content_type_mod
from . import detached, errors, exchange, mime, signing
from .envelope import (Envelope, check_soap_action, envelope_from_parts,
                       parse_envelope, serialize)
from .errors import XRoadError
from .side import Side
from .tags import in_namespace

SIGNED_CONTENT_TYPE = "text/xml; charset=utf-8"



@dataclass
class PendingExchange:
    """A signed request on its way to the provider, and what the answer must match."""

    request: Envelope
    request_hash: str
    body: bytes                  # the message to send (signed by ``signature``)
    targets: tuple[SecurityServer, ...]
    soap_action: Optional[str]
    signature: bytes             # detached signature document over the SOAP part
    response_is_fault: bool = False   # set by finish(): the service answered a Fault
    content_type: str = SIGNED_CONTENT_TYPE           # of ``body``
    response_content_type: str = SIGNED_CONTENT_TYPE  # set by finish(): of its result
    #: message-log records of prepare() and finish(), for the edge to commit (and
    #: clear) before the step's output moves on
    records: list = field(default_factory=list)


def written_content_type(env: Envelope) -> str:
    """The Content-Type tunduk sends with a plain SOAP message: text/xml and the
    charset it was read in, never the sender's string."""
    return f"text/xml; charset={env.charset}"


class ClientSide(Side):
    """The consumer's steps (see the module docstring)."""

    # -- request ------------------------------------------------------------------
    def prepare(self, raw: bytes, content_type: Optional[str],
                soap_action: Optional[str] = None) -> PendingExchange:
        msg = None
        if mime.is_multipart_related(content_type):
            msg = mime.split(raw, content_type)
            soap, soap_type = msg.root.content, msg.root_content_type()
        else:
            content_type_mod.soap_request(content_type)
            soap, soap_type = raw, content_type
        self.log.check_accepting()
        env = parse_envelope(soap, soap_type, request=True, limits=self.conf.xml_limits)
        check_soap_action(soap_action, env.xroad.service.service_code)
        self.check_client(env)
        targets = self.find_provider_servers(env)
        ours = [h for h in env.header_elements()
                if in_namespace(h.tag, exchange.TUNDUK_NS)]
        if ours:
            raise XRoadError(errors.INVALID_MESSAGE,
                             f"the request carries a {etree.QName(ours[0]).localname} header "
                             f"of namespace {exchange.TUNDUK_NS}: only security servers "
                             "write those; remove it")
        digest = exchange.request_hash(soap)
        if msg is None:
            signed, signed_type = soap, written_content_type(env)
            body, ctype = soap, signed_type
        else:
            exchange.add_attachment_digests(env.header, msg.attachments)
            signed = serialize(env.root)
            # signed as the provider will read it: the root part's own Content-Type
            body, ctype, signed_type = mime.replace_root(msg, signed)
        signature = detached.sign_message(signed, signed_type, self.signer,
                                          request_hash=digest)
        pending = PendingExchange(env, digest, body, targets, soap_action, signature,
                                  content_type=ctype)
        # The log keeps the signed SOAP part; it names the attachments' digests.
        self.record(pending.records, env, signed, direction="request", side="client",
                    cert_der=self.signer.cert_der, content_type=signed_type,
                    signature=signature)
        return pending

    def check_client(self, env: Envelope) -> None:
        client = env.xroad.client
        if not self.conf.is_own_client(client):
            own = ", ".join(str(c) for c in self.conf.clients) or "(none)"
            raise XRoadError(errors.UNKNOWN_MEMBER,
                             f"client {client} is not registered on this security server "
                             f"(SERVER:{self.conf.owner}/{self.conf.server_code}); its "
                             f"clients are: {own}")

    def find_provider_servers(self, env: Envelope) -> tuple[SecurityServer, ...]:
        service = env.xroad.service
        fed = self.conf.federation
        if service.instance != fed.instance:
            raise XRoadError(errors.UNKNOWN_MEMBER,
                             f"service {service} is in instance {service.instance!r}; this "
                             f"federation is {fed.instance!r} (no federation with other "
                             "instances is configured)")
        if not fed.has_client(service.provider):
            raise XRoadError(errors.UNKNOWN_MEMBER,
                             f"the provider {service.provider} of service {service} is not "
                             "a member or subsystem in the federation configuration")
        servers = fed.servers_of(service.member)
        if not servers:
            raise XRoadError(errors.UNKNOWN_MEMBER,
                             f"no security server is registered for member {service.member}")
        return servers

    # -- response -----------------------------------------------------------------
    def finish(self, pending: PendingExchange, raw: bytes,
               content_type: Optional[str], status: int,
               signature: Optional[bytes]) -> bytes:
        msg, soap, root, header, body, charset = self.parse_answer(
            raw, content_type, status, "the provider's security server")
        if signature is None:
            fault = _fault_code(body)
            if fault is not None:
                # A technical fault from the peer's server proxy (unsigned; the mutual
                # TLS channel authenticates it): passed through unchanged.
                raise errors.PeerFault(raw, content_type or SIGNED_CONTENT_TYPE, status, fault)
        try:
            env = envelope_from_parts(root, header, body, request=False)
        except XRoadError as exc:   # the provider's fault, not the local caller's
            raise XRoadError(errors.INVALID_RESPONSE, "the provider's security server sent "
                             f"an invalid X-Road response: {exc.message}") from None
        soap_type = msg.root_content_type() if msg else (content_type or "")
        verified = detached.verify_message(soap, soap_type, signature, self.trust)
        signing.refuse_auth_cert(verified.cert_der, self.conf.federation)
        service = pending.request.xroad.service
        signer = signing.cert_member_id(verified.cert)
        if signer != service.member:
            raise XRoadError(errors.INCORRECT_CERTIFICATE,
                             f"the response is signed by {signer}, not by the service "
                             f"provider {service.member}")
        self.check_consistency(pending, env)
        exchange.check_attachments(header, msg.attachments if msg else (), "response")
        pending.response_is_fault = env.is_fault
        self.record(pending.records, env, soap, direction="response", side="client",
                  cert_der=verified.cert_der, service=str(service),
                  content_type=soap_type, signature=signature)
        if msg is None:
            pending.response_content_type = SIGNED_CONTENT_TYPE
            if charset == "utf-8":   # the provider's bytes
                return soap
            # another charset: the client gets what tunduk read and checked, in UTF-8
            return serialize(root)
        exchange.remove_attachment_digests(header)
        out, pending.response_content_type, _ = mime.replace_root(msg, serialize(root))
        return out

    @staticmethod
    def check_consistency(pending: PendingExchange, env: Envelope) -> None:
        req, resp = pending.request.xroad, env.xroad
        field = req.first_difference(resp)
        if field is not None:
            raise XRoadError(errors.INCONSISTENT_RESPONSE,
                             f"the response's X-Road header {field} "
                             f"({getattr(resp, field)}) differs from the request's "
                             f"({getattr(req, field)})")
        if resp.request_hash is None:
            raise XRoadError(errors.INVALID_REQUEST_HASH,
                             "the response carries no xroad:requestHash")
        if resp.request_hash != pending.request_hash or \
                resp.request_hash_algorithm != exchange.SHA512_URI:
            raise XRoadError(errors.INVALID_REQUEST_HASH,
                             "the response's xroad:requestHash does not match the request "
                             "this server sent: the response answers another request")


def _fault_code(body: etree._Element) -> Optional[str]:
    for child in body:
        if isinstance(child.tag, str):
            if etree.QName(child).localname == "Fault":
                return (child.findtext("faultcode") or "").strip()
            return None
    return None
