"""WSGI middleware giving a hosted spyne service X-Road manners.

spyne cannot echo arbitrary SOAP headers nor reference X-Road's identifier types in its
WSDL, so this wrapper (1) copies the request's X-Road header elements, in order and
unchanged, into the response's SOAP Header (faults included), and (2) declares the
X-Road headers in the WSDL served on ``GET ?wsdl``.
"""
from __future__ import annotations

import io
from typing import Callable, Iterable, Optional
from urllib.parse import parse_qs

from lxml import etree

from ..core.identifiers import XROAD_NS
from ..core.wsdl import add_xroad_headers
from ..core.errors import XRoadError

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_MAX_BODY = 50 * 1024 * 1024

WsgiApp = Callable[[dict, Callable], Iterable[bytes]]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False)


def request_xroad_headers(body: bytes) -> list[etree._Element]:
    """The X-Road header elements of a SOAP request, in document order ([] if none)."""
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError:
        return []
    header = root.find(f"{{{SOAP_ENV}}}Header")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or header is None:
        return []
    return [el for el in header
            if isinstance(el.tag, str) and etree.QName(el).namespace == XROAD_NS]


def echo_into_response(response: bytes, headers: list[etree._Element]) -> bytes:
    """``response`` with ``headers`` as the first children of its SOAP Header."""
    try:
        root = etree.fromstring(response, _parser())
    except etree.XMLSyntaxError:
        return response
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        return response
    header = root.find(f"{{{SOAP_ENV}}}Header")
    if header is None:
        header = etree.Element(f"{{{SOAP_ENV}}}Header")
        root.insert(0, header)
    for old in [el for el in header
                if isinstance(el.tag, str) and etree.QName(el).namespace == XROAD_NS]:
        header.remove(old)
    for i, el in enumerate(headers):
        header.insert(i, el)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class XRoadHeaderEcho:
    """Wrap a SOAP WSGI app: echo X-Road request headers, declare them in its WSDL."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if method == "POST":
            body = self._read_body(environ)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            headers = request_xroad_headers(body)
            return self._rewrite(environ, start_response,
                                 lambda out: echo_into_response(out, headers))
        if method == "GET" and ("wsdl" in query or "WSDL" in query):
            return self._rewrite(environ, start_response, _declare_headers)
        return self.app(environ, start_response)

    @staticmethod
    def _read_body(environ: dict) -> bytes:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        stream = environ["wsgi.input"]
        if length > 0:
            return stream.read(min(length, _MAX_BODY))
        return stream.read(_MAX_BODY)

    def _rewrite(self, environ: dict, start_response: Callable,
                 change: Callable[[bytes], bytes]) -> Iterable[bytes]:
        captured: dict = {}

        def capture(status: str, headers: list, exc_info: Optional[tuple] = None):
            captured["status"], captured["headers"] = status, headers
            captured["exc_info"] = exc_info
            return lambda data: None  # spyne never uses write()

        result = self.app(environ, capture)
        try:
            out = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status = captured["status"]
        if status.startswith(("200", "500")):
            out = change(out)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(out))))
        start_response(status, headers, captured.get("exc_info"))
        return [out]


def _declare_headers(wsdl: bytes) -> bytes:
    try:
        return add_xroad_headers(wsdl)
    except XRoadError:
        return wsdl
