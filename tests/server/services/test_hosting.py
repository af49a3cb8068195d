"""Hosting spyne services in-process: spec loading, WSDL without a socket, header echo."""
from __future__ import annotations

import io

import pytest
from lxml import etree

from tests.fixtures.wsgi_server import schema_app
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.identifiers import XROAD_NS
from tunduk.server.services.echo_headers import XRoadHeaderEcho
from tunduk.server.services.hosting import load_wsgi_app, local_wsdl

SPEC = "tunduk.server.services.civil_registry:application"
ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def _call(app, method, body=b"", query=""):
    environ = {"REQUEST_METHOD": method, "QUERY_STRING": query, "PATH_INFO": "/",
               "SERVER_NAME": "localhost", "SERVER_PORT": "80", "HTTP_HOST": "localhost",
               "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
               "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "text/xml; charset=utf-8",
               "wsgi.errors": io.StringIO()}
    seen = []
    out = b"".join(app(environ, lambda s, h, e=None: seen.append((s, h))))
    return seen[0][0], dict(seen[0][1]), out


@pytest.mark.parametrize("spec", [
    SPEC,
    "tunduk.server.services.civil_registry:wsgi_app",
    "tunduk.server.services.civil_registry:CivilRegistryService",
])
def test_spyne_specs_are_wrapped_with_header_echo(spec):
    assert isinstance(load_wsgi_app(spec), XRoadHeaderEcho)


def test_plain_wsgi_callable_is_returned_unchanged():
    assert load_wsgi_app("tests.fixtures.wsgi_server:schema_app") is schema_app


@pytest.mark.parametrize("spec", ["no_colon_here", "tunduk.server.services.civil_registry:nothing",
                                  "tunduk.server.services.civil_registry:TNS"])
def test_bad_specs_are_rejected(spec):
    with pytest.raises(ValueError):
        load_wsgi_app(spec)


def test_local_wsdl_sets_address_and_declares_headers_without_socket():
    wsdl = local_wsdl(SPEC, "https://10.1.2.3:8443/registry")
    root = etree.fromstring(wsdl)
    addrs = [a.get("location") for a in root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}address")]
    assert addrs == ["https://10.1.2.3:8443/registry"]
    assert len(list(root.iter("{http://schemas.xmlsoap.org/wsdl/soap/}header"))) == 3 * 2 * 6
    # A second call with another address is not stuck with spyne's cached first URL.
    again = etree.fromstring(local_wsdl(SPEC, "http://backend.local/x"))
    assert [a.get("location") for a in again.iter(
        "{http://schemas.xmlsoap.org/wsdl/soap/}address")] == ["http://backend.local/x"]


def test_local_wsdl_of_non_soap_app_fails_with_wsdl_failed():
    with pytest.raises(XRoadError) as exc:
        local_wsdl("tests.fixtures.wsgi_server:schema_app", "http://x/")
    assert exc.value.code == "WsdlFailed"


def test_in_process_call_echoes_headers_and_fixes_content_length():
    app = load_wsgi_app(SPEC)
    body = f"""<e:Envelope xmlns:e="{ENV}" xmlns:x="{XROAD_NS}"
        xmlns:r="http://registry.demo.tunduk.kg/"><e:Header><x:id>abc</x:id>
        <x:protocolVersion>4.0</x:protocolVersion></e:Header>
        <e:Body><r:echo><r:text>hello</r:text></r:echo></e:Body></e:Envelope>""".encode()
    status, headers, out = _call(app, "POST", body)
    assert status.startswith("200")
    assert int(headers["Content-Length"]) == len(out)
    doc = etree.fromstring(out)
    assert [(etree.QName(e).localname, e.text) for e in doc.find(f"{{{ENV}}}Header")] == [
        ("id", "abc"), ("protocolVersion", "4.0")]
    assert doc.findtext(".//{http://registry.demo.tunduk.kg/}echoResult") == "hello"
