"""The one hardened XML parser, the SOAP 1.1 envelope and the X-Road headers in it.

Strict about structure (one Envelope, at most one Header before one Body, each X-Road
header at most once, identifiers well formed), tolerant about form (any prefixes,
bare-hex ids, userId without a country prefix), as X-Road clients expect.
"""
from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass
from typing import Optional

from lxml import etree

from . import content_type as content_type_mod
from . import errors
from .errors import XRoadError
from .identifiers import (XROAD_NS, ClientId, ServiceId, client_from_xml, service_from_xml,
                          text_value)

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12_NS = "http://www.w3.org/2003/05/soap-envelope"
ENVELOPE = f"{{{SOAP_NS}}}Envelope"
HEADER = f"{{{SOAP_NS}}}Header"
BODY = f"{{{SOAP_NS}}}Body"
FAULT = f"{{{SOAP_NS}}}Fault"

# X-Road header local names, in the order X-Road writes them.
XROAD_HEADERS = ("client", "service", "id", "userId", "issue", "protocolVersion",
                 "requestHash")
REQUEST_HASH = f"{{{XROAD_NS}}}requestHash"
MAX_MESSAGE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class XmlLimits:
    """What one message may hold, beyond its size (the body limit is the one size
    limit: a text node may be as long as the message).  Canonicalising an element
    costs more than linear time in its attributes and namespaces in scope, so these
    bound the CPU any message can take."""

    max_depth: int = 256
    max_elements: int = 200_000
    max_attributes: int = 256           # on one element
    max_namespaces: int = 64            # declared on one element
    max_namespaces_in_scope: int = 256


LIMITS = XmlLimits()


_local = threading.local()


def _parser(encoding: Optional[str]) -> etree.XMLParser:
    """This thread's parser for ``encoding``.

    One parser per thread: lxml ties a parser to the dictionary of the thread that
    made it, and a parser shared across threads made every exchange ~60 % dearer.
    No DTDs, no entities, no network: XXE and billion-laughs are refused by
    construction.  ``huge_tree`` lifts libxml2's 10 MB text-node limit, so that the
    body limit is the one size limit; depth and counts are bounded by XmlLimits.
    """
    parsers = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(encoding)
    if parser is None:
        parser = parsers[encoding] = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=True, encoding=encoding, remove_comments=False)
    return parser


# An XML declaration (XML 1.0 section 2.8), strictly: anything else that starts like
# one is refused rather than left to each parser's own reading.
_XML_DECL = re.compile(
    r"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*([\"'])1\.[0-9]+\1"
    r"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*([\"'])([A-Za-z][A-Za-z0-9._-]*)\2)?"
    r"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*([\"'])(?:yes|no)\4)?"
    r"[ \t\r\n]*\?>")
_DECL_START = re.compile(r"<\?xml[ \t\r\n?]")
_BOMS = ((b"\x00\x00\xfe\xff", None), (b"\xff\xfe\x00\x00", None),
         (b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def document_charset(data: bytes, content_type: Optional[str]) -> str:
    """The charset ``data`` is read in, when every source that names one agrees.

    The Content-Type's charset (RFC 7303), a byte order mark and the XML declaration
    may each name one; a parser that sees only the bytes follows the last two, one
    that is given the header follows the first.  If they name different charsets the
    same bytes are two messages, so that is refused (InvalidContentType), as are
    charsets outside core/content_type.py's list and UTF-16/32 without a byte order
    mark.  Nothing named: UTF-8.
    """
    header = _header_charset(content_type) if content_type else None
    if data[:1] == b"<" and data[1:2] != b"\x00" and header != "utf-16":   # the usual
        if not data.startswith(b"<?xml"):
            return header or "utf-8"
        end = data.find(b"?>", 0, 512)
        declared = _declared_charset(data[:end + 2] if end >= 0 else data[:512])
        if declared is None:
            return header or "utf-8"
        if header is None or header == declared:
            return declared
    named = []
    if header is not None:
        named.append(("the Content-Type", header))
    bom = None
    for mark, name in _BOMS:
        if data.startswith(mark):
            if name is None:
                raise XRoadError(errors.INVALID_CONTENT_TYPE,
                                 "the message is UTF-32: send it in UTF-8")
            bom = name
            named.append(("the byte order mark", name))
            break
    if header == "utf-16" and bom != "utf-16":
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         "the Content-Type says UTF-16 but the message has no UTF-16 byte "
                         "order mark: send it in UTF-8")
    if bom == "utf-16":
        chunk = data[2:514]
        head = chunk[:len(chunk) // 2 * 2].decode(
            "utf-16-le" if data[:2] == b"\xff\xfe" else "utf-16-be", "replace")
    else:
        if bom is None and data[:4].count(0):
            raise XRoadError(errors.INVALID_CONTENT_TYPE,
                             "the message looks like UTF-16 or UTF-32 without a byte "
                             "order mark: send it in UTF-8")
        head = data[3 if bom else 0:512].decode("latin-1")
    declared = _declared_encoding(head)
    if declared is not None:
        named.append(("the XML declaration",
                      content_type_mod.charset_name(declared, "the XML declaration")))
    names = {name for _, name in named}
    if len(names) > 1:
        said = "; ".join(f"{where} says {name}" for where, name in named)
        raise XRoadError(errors.INVALID_CONTENT_TYPE,
                         f"the message's charset is ambiguous ({said}): they must agree")
    return names.pop() if names else "utf-8"


@functools.lru_cache(maxsize=256)
def _header_charset(content_type: str) -> Optional[str]:
    return content_type_mod.parse(content_type).charset


@functools.lru_cache(maxsize=256)
def _declared_charset(declaration: bytes) -> Optional[str]:
    """The charset an (ASCII) XML declaration names, as tunduk names it."""
    declared = _declared_encoding(declaration.decode("latin-1"))
    if declared is None:
        return None
    return content_type_mod.charset_name(declared, "the XML declaration")


def _declared_encoding(head: str) -> Optional[str]:
    if not head.startswith("<?xml"):
        return None
    m = _XML_DECL.match(head)
    if m is None:
        if _DECL_START.match(head):
            raise XRoadError(errors.INVALID_XML,
                             "the XML declaration is malformed: write it as "
                             "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
        return None
    return m.group(3)


def parse_xml(data: bytes, content_type: Optional[str] = None,
              limits: XmlLimits = LIMITS) -> etree._Element:
    """Parse bytes with the hardened parser, in the charset of document_charset();
    DOCTYPEs are refused outright, and what ``limits`` do not allow."""
    return read_xml(data, content_type, limits)[0]


def read_xml(data: bytes, content_type: Optional[str] = None,
             limits: XmlLimits = LIMITS) -> tuple[etree._Element, str]:
    """:func:`parse_xml` and the charset the document was read in."""
    charset = document_charset(data, content_type)
    override: Optional[str] = charset
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif charset == "utf-16":
        override = None     # libxml2 reads the byte order mark (the override is LE only)
    try:
        root = etree.fromstring(data, _parser(override))
    except etree.XMLSyntaxError as exc:
        raise errors.XRoadError(errors.INVALID_XML,
                                f"the message is not well-formed XML: {exc}") from None
    except (LookupError, ValueError) as exc:
        raise errors.XRoadError(errors.INVALID_XML, f"cannot decode the message: {exc}") from None
    if root.getroottree().docinfo.doctype:
        raise errors.XRoadError(errors.INVALID_XML,
                                "DOCTYPE declarations are not allowed in messages")
    if charset == "utf-16" or not within_at_a_glance(data, limits):
        check_limits(root, limits)
    return root, charset


def within_at_a_glance(data: bytes, limits: XmlLimits) -> bool:
    """Whether bytes of an ASCII-compatible document are too few to break any limit:
    each element, attribute or namespace declaration needs a '<', an '=' or an
    'xmlns' of its own, so small messages need no walk of their tree."""
    lt = data.count(b"<")
    return (lt <= limits.max_depth and data.count(b"=") <= limits.max_attributes
            and data.count(b"xmlns") <= limits.max_namespaces)


def check_limits(root: etree._Element, limits: XmlLimits) -> None:
    """InvalidXml naming the limit when ``root`` holds more than ``limits`` allow."""
    depth = elements = 0
    parent_scope = {None: 0}
    scope = []
    for event, el in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            scope.pop()
            continue
        depth += 1
        elements += 1
        if depth > limits.max_depth:
            _over("elements nested deeper than", limits.max_depth, "max_depth")
        if elements > limits.max_elements:
            _over("more elements than", limits.max_elements, "max_elements")
        if len(el.attrib) > limits.max_attributes:
            _over(f"an element <{etree.QName(el).localname}> with more attributes than",
                  limits.max_attributes, "max_attributes")
        in_scope = len(el.nsmap)
        declared = in_scope - (scope[-1] if scope else parent_scope[None])
        if declared > limits.max_namespaces:
            _over("an element declaring more namespaces than", limits.max_namespaces,
                  "max_namespaces")
        if in_scope > limits.max_namespaces_in_scope:
            _over("an element with more namespaces in scope than",
                  limits.max_namespaces_in_scope, "max_namespaces_in_scope")
        scope.append(in_scope)


def _over(what: str, limit: int, name: str) -> None:
    raise XRoadError(errors.INVALID_XML,
                     f"the message has {what} {limit} (limit {name}): such a message "
                     "is refused, whatever it says")


@dataclass(frozen=True)
class XRoadHeaders:
    client: ClientId
    service: Optional[ServiceId]
    id: str
    user_id: Optional[str]
    issue: Optional[str]
    protocol_version: str
    request_hash: Optional[str]
    request_hash_algorithm: Optional[str]
    # The header elements themselves, in document order: these, and nothing else, are
    # what gets signed, verified and copied into responses.
    elements: tuple

    # The fields a response must carry unchanged from its request.
    ECHOED = ("client", "service", "id", "user_id", "issue", "protocol_version")

    def first_difference(self, other: "XRoadHeaders") -> Optional[str]:
        """The first echoed field whose value differs in ``other`` (None: consistent)."""
        for name in self.ECHOED:
            if getattr(self, name) != getattr(other, name):
                return name
        return None


@dataclass
class Envelope:
    root: etree._Element
    header: Optional[etree._Element]
    body: etree._Element
    xroad: XRoadHeaders
    charset: str = "utf-8"      # what the message was read in (parse_envelope)

    @property
    def payload(self) -> Optional[etree._Element]:
        """The Body's single wrapper element (None for an empty Body)."""
        for child in self.body:
            if isinstance(child.tag, str):
                return child
        return None

    @property
    def is_fault(self) -> bool:
        p = self.payload
        return p is not None and p.tag == FAULT

    def header_elements(self) -> list:
        """Every SOAP header element."""
        if self.header is None:
            return []
        return _elements(self.header)


def _elements(parent: etree._Element) -> list:
    return [c for c in parent if isinstance(c.tag, str)]


def split_envelope(root: etree._Element) -> tuple[Optional[etree._Element], etree._Element]:
    """Header (or None) and Body of a SOAP 1.1 envelope, checking its structure."""
    if root.tag != ENVELOPE:
        if root.tag == f"{{{SOAP12_NS}}}Envelope":
            raise errors.XRoadError(errors.INVALID_SOAP,
                                    "SOAP 1.2 is not supported: send a SOAP 1.1 envelope "
                                    f"(namespace {SOAP_NS})")
        raise errors.XRoadError(errors.INVALID_SOAP,
                                f"the root element is {etree.QName(root).text}, expected a "
                                f"SOAP 1.1 Envelope (namespace {SOAP_NS})")
    children = _elements(root)
    header = body = None
    for i, child in enumerate(children):
        if child.tag == HEADER and header is None and body is None and i == 0:
            header = child
        elif child.tag == BODY and body is None:
            body = child
        else:
            raise errors.XRoadError(
                errors.INVALID_SOAP,
                f"unexpected element {etree.QName(child).text} in the Envelope: expected "
                "an optional Header followed by exactly one Body")
    if body is None:
        raise errors.XRoadError(errors.INVALID_SOAP, "the SOAP Envelope has no Body")
    return header, body


def _text(el: etree._Element, name: str) -> str:
    value = (el.text or "") if not len(el) else text_value(el)
    if value is None:
        raise errors.XRoadError(errors.INVALID_MESSAGE, f"xroad:{name} must be text only")
    value = value.strip()
    if not value:
        raise errors.XRoadError(errors.MISSING_HEADER_FIELD, f"xroad:{name} is empty")
    return value


_XROAD_PREFIX = f"{{{XROAD_NS}}}"
_XROAD_PREFIX_LEN = len(_XROAD_PREFIX)
_XROAD_HEADER_SET = frozenset(XROAD_HEADERS)


def read_xroad_headers(header: Optional[etree._Element], *, request: bool) -> XRoadHeaders:
    found: dict[str, etree._Element] = {}
    order = []
    if header is not None:
        for child in header:
            tag = child.tag
            # tag strings, not QName objects: this runs for every message; a local
            # name never holds "}", so the set test also rules out a namespace that
            # merely starts like XROAD_NS
            if not isinstance(tag, str) or not tag.startswith(_XROAD_PREFIX):
                continue
            local = tag[_XROAD_PREFIX_LEN:]
            if local not in _XROAD_HEADER_SET:
                continue  # other X-Road elements (e.g. representedParty) ride along
            if local in found:
                raise errors.XRoadError(errors.DUPLICATE_HEADER_FIELD,
                                        f"the SOAP Header has xroad:{local} twice")
            found[local] = child
            order.append(child)
    required = ("client", "service", "id", "protocolVersion") if request else (
        "client", "id", "protocolVersion")
    missing = [n for n in required if n not in found]
    if missing:
        raise errors.XRoadError(
            errors.MISSING_HEADER_FIELD,
            "the SOAP Header lacks " + ", ".join(f"xroad:{n}" for n in missing)
            + f" (namespace {XROAD_NS})")
    version = _text(found["protocolVersion"], "protocolVersion")
    if not (version == "4" or version.startswith("4.")):
        raise errors.XRoadError(errors.INVALID_PROTOCOL_VERSION,
                                f"xroad:protocolVersion is {version!r}; this server speaks "
                                "X-Road message protocol 4.x (send 4.0)")
    service = service_from_xml(found["service"]) if "service" in found else None
    rh = found.get("requestHash")
    return XRoadHeaders(
        client=client_from_xml(found["client"]),
        service=service,
        id=_text(found["id"], "id"),
        user_id=_text(found["userId"], "userId") if "userId" in found else None,
        issue=_text(found["issue"], "issue") if "issue" in found else None,
        protocol_version=version,
        request_hash=_text(rh, "requestHash") if rh is not None else None,
        request_hash_algorithm=rh.get("algorithmId") if rh is not None else None,
        elements=tuple(order),
    )


def parse_envelope(data: bytes, content_type: Optional[str] = None, *,
                   request: bool = True, limits: XmlLimits = LIMITS) -> Envelope:
    """Parse and check an X-Road SOAP message (request or response)."""
    root, charset = read_xml(data, content_type, limits)
    env = envelope_from_tree(root, request=request)
    env.charset = charset
    return env


def envelope_from_tree(root: etree._Element, *, request: bool = True) -> Envelope:
    header, body = split_envelope(root)
    return envelope_from_parts(root, header, body, request=request)


def envelope_from_parts(root: etree._Element, header: Optional[etree._Element],
                        body: etree._Element, *, request: bool = True,
                        xroad: Optional[XRoadHeaders] = None) -> Envelope:
    """Like :func:`envelope_from_tree`, for a root already split by ``split_envelope``.

    ``xroad``: the X-Road headers of ``header`` as the caller has just read and checked
    them (read_xroad_headers) and changed only in ways it knows to be valid; they are
    then not read a second time.  The Body is checked either way.
    """
    if xroad is None:
        xroad = read_xroad_headers(header, request=request)
    env = Envelope(root, header, body, xroad)
    payload_elements = _elements(body)
    if len(payload_elements) > 1:
        raise errors.XRoadError(errors.INVALID_BODY,
                                "the SOAP Body must hold exactly one wrapper element, "
                                f"found {len(payload_elements)}")
    if request:
        if not payload_elements:
            raise errors.XRoadError(errors.INVALID_BODY, "the SOAP Body is empty: it must "
                                    f"hold the request wrapper <{xroad.service.service_code}>")
        local = payload_elements[0].tag.rpartition("}")[2]   # QName(...).localname
        if local != xroad.service.service_code:
            raise errors.XRoadError(
                errors.INVALID_BODY,
                f"the Body's wrapper element is <{local}> but xroad:service names "
                f"service code {xroad.service.service_code!r}: they must be equal")
    return env


def fault_of(env: Envelope) -> Optional[tuple[str, str]]:
    """(faultcode, faultstring) if the Body is a SOAP Fault."""
    p = env.payload
    if p is None or p.tag != FAULT:
        return None
    code = p.findtext("faultcode") or ""
    text = p.findtext("faultstring") or ""
    return code.strip(), text.strip()


def serialize(root: etree._Element) -> bytes:
    """UTF-8 bytes with an XML declaration: the one way the server writes messages."""
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def check_soap_action(soap_action: Optional[str], service_code: str) -> None:
    """SOAPAction is forwarded to the service, which may dispatch on it: it must be empty
    or name the operation that ``xroad:service`` (what access rights are checked
    against) names, e.g. ``"getBirthRecord"``, ``"urn:registry/getBirthRecord"``."""
    action = (soap_action or "").strip().strip('"').strip()
    if not action or action == service_code:
        return
    if action.endswith(service_code) and action[-len(service_code) - 1] in "/#:.":
        return
    raise errors.XRoadError(errors.INVALID_SOAP,
                     f"SOAPAction {soap_action!r} names another operation than xroad:service "
                     f"({service_code!r}): send an empty SOAPAction or one ending in "
                     f"{service_code!r}")
