"""Legacy mode: systems that speak plain SOAP, without X-Road headers.

A ``[[legacy]]`` alias binds a URL path on the client proxy to one client and one
service.  A plain SOAP request POSTed there gets the X-Road headers added here
(``add_headers``), runs the normal exchange, and the answer goes back with the X-Road
headers removed (``strip_headers``), so the legacy system sees only what it knows.
"""
from __future__ import annotations

import uuid
from typing import Optional

from lxml import etree

from . import errors
from .envelope import HEADER, XROAD_HEADERS, parse_xml, serialize, split_envelope
from .errors import XRoadError
from .identifiers import ID_NS, XROAD_NS, ClientId, ServiceId

PROTOCOL_VERSION = "4.0"
_NSMAP = {"xrd": XROAD_NS, "id": ID_NS}


def _xroad_children(header: Optional[etree._Element]) -> list:
    if header is None:
        return []
    return [c for c in header if isinstance(c.tag, str)
            and etree.QName(c).namespace == XROAD_NS]


def add_headers(raw: bytes, content_type: Optional[str], client: ClientId,
                service: ServiceId, message_id: Optional[str] = None) -> bytes:
    """The plain SOAP request ``raw`` as an X-Road request of ``client`` to ``service``.

    Adds xroad:client, xroad:service, a fresh xroad:id and xroad:protocolVersion 4.0
    at the start of the SOAP Header.  A request that already carries X-Road headers
    is refused: the alias would silently override what its sender meant.
    """
    root = parse_xml(raw, content_type)
    header, _ = split_envelope(root)
    present = [etree.QName(c).localname for c in _xroad_children(header)
               if etree.QName(c).localname in XROAD_HEADERS]
    if present:
        raise XRoadError(errors.INVALID_MESSAGE,
                         "this path is a legacy alias: it adds the X-Road headers itself, "
                         "but the request already carries "
                         + ", ".join(f"xroad:{n}" for n in present)
                         + "; POST X-Road requests to another path of the security server")
    if header is None:
        header = etree.Element(HEADER)
        root.insert(0, header)
    added = [client.to_xml(f"{{{XROAD_NS}}}client", _NSMAP),
             service.to_xml(f"{{{XROAD_NS}}}service", _NSMAP)]
    for name, value in (("id", message_id or str(uuid.uuid4())),
                        ("protocolVersion", PROTOCOL_VERSION)):
        el = etree.Element(f"{{{XROAD_NS}}}{name}", nsmap=_NSMAP)
        el.text = value
        added.append(el)
    for i, el in enumerate(added):
        header.insert(i, el)
    return serialize(root)


def strip_headers(raw: bytes) -> bytes:
    """``raw`` without X-Road header elements (an emptied SOAP Header is removed too).

    Anything that is not a SOAP envelope is returned unchanged.
    """
    try:
        root = parse_xml(raw)
        header, _ = split_envelope(root)
    except XRoadError:
        return raw
    found = _xroad_children(header)
    if not found:
        return raw
    for el in found:
        header.remove(el)
    if not any(isinstance(c.tag, str) for c in header):
        root.remove(header)
    return serialize(root)
