"""The ``getWsdl`` metaservice on the wire: request and response bodies, no I/O.

Request (as in X-Road): the X-Road headers name the provider's ``getWsdl`` service,
the Body asks for one of its services::

    <xrd:getWsdl><xrd:serviceCode>getBirthRecord</xrd:serviceCode>
                 <xrd:serviceVersion>v1</xrd:serviceVersion></xrd:getWsdl>

Response — a deliberate deviation from X-Road: X-Road returns the WSDL as a MIME
attachment of the SOAP response.  tunduk carries no attachments between its servers
yet, so the WSDL travels inside the signed Body, base64-encoded in an element of
tunduk's own namespace (``urn:tunduk:xsd:exchange:1``)::

    <xrd:getWsdlResponse><xrd:serviceCode>..</xrd:serviceCode>
        <xrd:serviceVersion>..</xrd:serviceVersion><tdk:wsdl>BASE64</tdk:wsdl>
    </xrd:getWsdlResponse>

Being inside the Body, the WSDL is covered by the provider's signature.  Only
security servers see this response: the client proxy turns it into a plain WSDL
document for ``GET /wsdl``.
"""
from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from typing import Optional

from lxml import etree

from . import errors
from .envelope import BODY, ENVELOPE, HEADER, SOAP_NS, Envelope, serialize
from .errors import XRoadError
from .exchange import TUNDUK_NS
from .identifiers import ID_NS, XROAD_NS, ClientId, ServiceId

GET_WSDL = "getWsdl"
WSDL_ELEMENT = f"{{{TUNDUK_NS}}}wsdl"
_NSMAP = {"SOAP-ENV": SOAP_NS, "xrd": XROAD_NS, "id": ID_NS}


@dataclass(frozen=True)
class WsdlAnswer:
    service_code: str
    service_version: Optional[str]
    wsdl: bytes


def request_envelope(client: ClientId, service: ServiceId,
                     message_id: Optional[str] = None) -> bytes:
    """An X-Road ``getWsdl`` request from ``client`` for the WSDL of ``service``."""
    provider = service.provider
    meta = ServiceId(provider.instance, provider.member_class, provider.member_code,
                     provider.subsystem, GET_WSDL)
    env = etree.Element(ENVELOPE, nsmap=_NSMAP)
    header = etree.SubElement(env, HEADER)
    header.append(client.to_xml(f"{{{XROAD_NS}}}client", _NSMAP))
    header.append(meta.to_xml(f"{{{XROAD_NS}}}service", _NSMAP))
    etree.SubElement(header, f"{{{XROAD_NS}}}id").text = message_id or str(uuid.uuid4())
    etree.SubElement(header, f"{{{XROAD_NS}}}protocolVersion").text = "4.0"
    body = etree.SubElement(env, BODY)
    wrapper = etree.SubElement(body, f"{{{XROAD_NS}}}{GET_WSDL}")
    etree.SubElement(wrapper, f"{{{XROAD_NS}}}serviceCode").text = service.service_code
    if service.version:
        etree.SubElement(wrapper, f"{{{XROAD_NS}}}serviceVersion").text = service.version
    return serialize(env)


def _child_text(parent: etree._Element, local: str) -> Optional[str]:
    for child in parent:
        if isinstance(child.tag, str) and etree.QName(child).localname == local:
            return (child.text or "").strip() or None
    return None


def requested_service(env: Envelope) -> ServiceId:
    """The service whose WSDL a ``getWsdl`` request asks for (the provider's own)."""
    wrapper = env.payload
    code = _child_text(wrapper, "serviceCode") if wrapper is not None else None
    if not code:
        raise XRoadError(errors.INVALID_BODY,
                         "the getWsdl request names no service: put "
                         f"<xrd:serviceCode> (namespace {XROAD_NS}) in <xrd:getWsdl>")
    p = env.xroad.service.provider
    # The constructor does not check characters; parse does (and refuses '/').
    text = f"{p.instance}/{p.member_class}/{p.member_code}/{p.subsystem or ''}/{code}"
    version = _child_text(wrapper, "serviceVersion")
    try:
        return ServiceId.parse(text + (f"/{version}" if version else ""))
    except ValueError:
        raise XRoadError(errors.INVALID_BODY,
                         f"getWsdl asks for an invalid service code {code!r}") from None


def response_envelope(service: ServiceId, wsdl: bytes) -> bytes:
    """The provider's ``getWsdlResponse`` (headers are added by ServerSide.respond)."""
    env = etree.Element(ENVELOPE, nsmap={"SOAP-ENV": SOAP_NS})
    body = etree.SubElement(env, BODY)
    wrapper = etree.SubElement(body, f"{{{XROAD_NS}}}{GET_WSDL}Response",
                               nsmap={"xrd": XROAD_NS, "tdk": TUNDUK_NS})
    etree.SubElement(wrapper, f"{{{XROAD_NS}}}serviceCode").text = service.service_code
    if service.version:
        etree.SubElement(wrapper, f"{{{XROAD_NS}}}serviceVersion").text = service.version
    etree.SubElement(wrapper, WSDL_ELEMENT).text = base64.b64encode(wsdl).decode("ascii")
    return serialize(env)


def read_response(root: etree._Element) -> WsdlAnswer:
    """The WSDL carried by a verified ``getWsdlResponse`` envelope."""
    body = root.find(BODY)
    wrapper = next((c for c in body if isinstance(c.tag, str)), None) \
        if body is not None else None
    if wrapper is None or etree.QName(wrapper).localname != f"{GET_WSDL}Response":
        raise XRoadError(errors.INVALID_RESPONSE,
                         "the provider answered getWsdl without a getWsdlResponse")
    data = wrapper.find(WSDL_ELEMENT)
    if data is None or not (data.text or "").strip():
        raise XRoadError(errors.INVALID_RESPONSE,
                         f"the getWsdlResponse carries no <wsdl> (namespace {TUNDUK_NS})")
    try:
        wsdl = base64.b64decode("".join(data.text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise XRoadError(errors.INVALID_RESPONSE,
                         "the WSDL in the getWsdlResponse is not valid base64") from None
    return WsdlAnswer(_child_text(wrapper, "serviceCode") or "",
                      _child_text(wrapper, "serviceVersion"), wsdl)
