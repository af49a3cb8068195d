"""Make a service's WSDL fit for X-Road clients: pure functions on bytes, no I/O.

A provider's WSDL is rewritten before a client sees it: the endpoint becomes the
security server, imports of the X-Road schemas point at the copies tunduk serves
(government networks often have no internet), every operation declares the X-Road
headers so generated clients can fill them, and ``xrd:version`` tells the service
version.
"""
from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from lxml import etree

from . import errors
from .identifiers import XROAD_NS

WSDL_NS = "http://schemas.xmlsoap.org/wsdl/"
SOAP_NS = "http://schemas.xmlsoap.org/wsdl/soap/"
SOAP12_NS = "http://schemas.xmlsoap.org/wsdl/soap12/"
XSD_NS = "http://www.w3.org/2001/XMLSchema"

#: Header parts X-Road declares on every operation, in the order of the protocol.
XROAD_HEADERS = ("client", "service", "id", "userId", "issue", "protocolVersion")
#: Canonical location of the X-Road header schema (what WSDLs usually import).
XROAD_XSD_URL = "http://x-road.eu/xsd/xroad.xsd"
_HEADER_MESSAGE = "xroadHeaders"
_MAX_WSDL = 20 * 1024 * 1024

# Schema files tunduk serves itself, and the locations that mean them.
_SCHEMA_FILES = ("xroad.xsd", "identifiers.xsd")
_XML_XSD = "xml.xsd"
_XML_XSD_HOSTS = ("www.w3.org",)


def parse_wsdl(wsdl: bytes) -> etree._Element:
    """Parse with a hardened parser and check the root is a WSDL 1.1 definitions."""
    if len(wsdl) > _MAX_WSDL:
        raise errors.XRoadError(errors.WSDL_FAILED, "WSDL is larger than 20 MiB")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, remove_comments=False)
    try:
        root = etree.fromstring(wsdl, parser)
    except etree.XMLSyntaxError as exc:
        raise errors.XRoadError(errors.WSDL_FAILED, f"WSDL is not well-formed XML: {exc}")
    if root.tag != f"{{{WSDL_NS}}}definitions":
        raise errors.XRoadError(
            errors.WSDL_FAILED,
            f"not a WSDL 1.1 document: root element is {root.tag!r}, "
            f"expected {{{WSDL_NS}}}definitions")
    return root


def prepare_wsdl(wsdl: bytes, *, soap_address: str, schema_base_url: str,
                 service_version: Optional[str] = None) -> bytes:
    """The WSDL a client receives from the security server."""
    root = parse_wsdl(wsdl)
    ensure_xroad_headers(root)
    set_soap_address(root, soap_address)
    rewrite_schema_locations(root, schema_base_url)
    if service_version is not None:
        set_service_version(root, service_version)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def add_xroad_headers(wsdl: bytes) -> bytes:
    """Only declare the X-Road headers (for a hosted service's own WSDL)."""
    root = parse_wsdl(wsdl)
    ensure_xroad_headers(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def set_soap_address(root: etree._Element, address: str) -> None:
    """Point every SOAP port at ``address``, hiding the backend's own endpoint."""
    for ns in (SOAP_NS, SOAP12_NS):
        for el in root.iter(f"{{{ns}}}address"):
            el.set("location", address)


def _schema_target(location: str, base: str) -> Optional[str]:
    """Our own copy for a location meaning an X-Road (or xml.xsd) schema, else None."""
    loc = location.strip()
    parts = urlsplit(loc)
    tail = parts.path.rsplit("/", 1)[-1]
    host = (parts.hostname or "").lower()
    if tail in _SCHEMA_FILES:  # http://x-road.eu/xsd/xroad.xsd, ../xroad.xsd, ...
        return base + tail
    if tail == _XML_XSD and host in _XML_XSD_HOSTS:
        return base + _XML_XSD
    return None


def rewrite_schema_locations(root: etree._Element, schema_base_url: str) -> None:
    """Point xsd:import/include of the X-Road schemas at ``schema_base_url``."""
    base = schema_base_url if schema_base_url.endswith("/") else schema_base_url + "/"
    for tag in ("import", "include", "redefine"):
        for el in root.iter(f"{{{XSD_NS}}}{tag}"):
            loc = el.get("schemaLocation")
            if not loc:
                continue
            target = _schema_target(loc, base)
            if target is not None:
                el.set("schemaLocation", target)


def _resolve_qname(el: etree._Element, value: str) -> etree.QName:
    prefix, _, local = value.rpartition(":")
    ns = el.nsmap.get(prefix or None)
    return etree.QName(ns, local) if ns else etree.QName(local)


def _declared_header_elements(root: etree._Element, io: etree._Element) -> set[str]:
    """Local names of xrd elements already declared as soap:header under ``io``."""
    messages = {m.get("name"): m for m in root.findall(f"{{{WSDL_NS}}}message")}
    found: set[str] = set()
    for ns in (SOAP_NS, SOAP12_NS):
        for hdr in io.iter(f"{{{ns}}}header"):
            msg = messages.get(_resolve_qname(hdr, hdr.get("message", "")).localname)
            if msg is None:
                continue
            for part in msg.findall(f"{{{WSDL_NS}}}part"):
                if part.get("name") != hdr.get("part") or not part.get("element"):
                    continue
                q = _resolve_qname(part, part.get("element"))
                if q.namespace == XROAD_NS:
                    found.add(q.localname)
    return found


def _ensure_header_message(root: etree._Element) -> str:
    """Add (once) a message with one part per X-Road header; return its name."""
    names = {m.get("name") for m in root.findall(f"{{{WSDL_NS}}}message")}
    name = _HEADER_MESSAGE
    i = 1
    while name in names:
        existing = root.find(f"{{{WSDL_NS}}}message[@name='{name}']")
        parts = {p.get("name") for p in existing.findall(f"{{{WSDL_NS}}}part")}
        if parts >= set(XROAD_HEADERS):
            return name
        i += 1
        name = f"{_HEADER_MESSAGE}{i}"
    msg = etree.Element(f"{{{WSDL_NS}}}message", nsmap={"xrd": XROAD_NS})
    msg.set("name", name)
    for h in XROAD_HEADERS:
        part = etree.SubElement(msg, f"{{{WSDL_NS}}}part")
        part.set("name", h)
        part.set("element", f"xrd:{h}")
    # WSDL 1.1 order: documentation, import, types, message, portType, binding, service.
    messages = root.findall(f"{{{WSDL_NS}}}message")
    anchor = root.find(f"{{{WSDL_NS}}}portType")
    if messages:
        messages[-1].addnext(msg)
    elif anchor is not None:
        anchor.addprevious(msg)
    else:
        root.append(msg)
    return name


def _ensure_schema_import(root: etree._Element) -> None:
    """Make the xrd header elements resolvable from the WSDL's types."""
    for imp in root.iter(f"{{{XSD_NS}}}import"):
        if imp.get("namespace") == XROAD_NS:
            return
    for schema in root.iter(f"{{{XSD_NS}}}schema"):
        if schema.get("targetNamespace") == XROAD_NS:
            return
    types = root.find(f"{{{WSDL_NS}}}types")
    if types is None:
        types = etree.Element(f"{{{WSDL_NS}}}types")
        first = root.find(f"{{{WSDL_NS}}}message")
        if first is not None:
            first.addprevious(types)
        else:
            root.insert(0, types)
    schema = types.find(f"{{{XSD_NS}}}schema")
    imp = etree.Element(f"{{{XSD_NS}}}import")
    imp.set("namespace", XROAD_NS)
    imp.set("schemaLocation", XROAD_XSD_URL)
    if schema is None:
        schema = etree.SubElement(types, f"{{{XSD_NS}}}schema")
        schema.append(imp)
    else:
        # xsd:import must precede the schema's declarations.
        idx = 0
        for i, child in enumerate(schema):
            if isinstance(child.tag, str) and etree.QName(child).localname in (
                    "annotation", "import", "include", "redefine"):
                idx = i + 1
        schema.insert(idx, imp)


def ensure_xroad_headers(root: etree._Element) -> None:
    """Declare every X-Road header as a header part of each SOAP operation's input/output."""
    tns = root.get("targetNamespace")
    changed = False
    message_name: Optional[str] = None
    for binding in root.findall(f"{{{WSDL_NS}}}binding"):
        soap_ns = None
        for ns in (SOAP_NS, SOAP12_NS):
            if binding.find(f"{{{ns}}}binding") is not None:
                soap_ns = ns
        if soap_ns is None:
            continue
        for op in binding.findall(f"{{{WSDL_NS}}}operation"):
            for io_tag in ("input", "output"):
                io = op.find(f"{{{WSDL_NS}}}{io_tag}")
                if io is None:
                    continue
                missing = [h for h in XROAD_HEADERS
                           if h not in _declared_header_elements(root, io)]
                if not missing:
                    continue
                if message_name is None:
                    message_name = _ensure_header_message(root)
                body = next(io.iter(f"{{{soap_ns}}}body"), None)
                parent = body.getparent() if body is not None else io
                for h in missing:
                    nsmap = {"xrdh": tns} if tns else None
                    hdr = etree.SubElement(parent, f"{{{soap_ns}}}header", nsmap=nsmap)
                    hdr.set("message", f"xrdh:{message_name}" if tns else message_name)
                    hdr.set("part", h)
                    hdr.set("use", "literal")
                changed = True
    if changed:
        _ensure_schema_import(root)


def set_service_version(root: etree._Element, version: str) -> None:
    """Put ``<xrd:version>`` under every binding operation (replacing any present)."""
    for binding in root.findall(f"{{{WSDL_NS}}}binding"):
        for op in binding.findall(f"{{{WSDL_NS}}}operation"):
            for old in op.findall(f"{{{XROAD_NS}}}version"):
                op.remove(old)
            el = etree.Element(f"{{{XROAD_NS}}}version", nsmap={"xrd": XROAD_NS})
            el.text = version
            anchor = None
            for ns in (SOAP_NS, SOAP12_NS):
                anchor = op.find(f"{{{ns}}}operation")
                if anchor is not None:
                    break
            if anchor is not None:
                anchor.addnext(el)
            else:
                op.insert(0, el)
