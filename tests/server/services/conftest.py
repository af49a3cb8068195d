"""A civil registry served on a real socket, its X-Road-prepared WSDL beside it."""
from __future__ import annotations

import urllib.request

import pytest

from tests.fixtures.wsgi_server import schema_app, serve_wsgi
from tunduk.server.core.wsdl import prepare_wsdl
from tunduk.server.services.civil_registry import wsgi_app


class RegistrySite:
    """Dispatch: /xsd/* schemas, /prepared.wsdl the prepared WSDL, else the registry."""

    def __init__(self) -> None:
        self.wsdl = b""

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/xsd/"):
            return schema_app(environ, start_response)
        if path == "/prepared.wsdl":
            start_response("200 OK", [("Content-Type", "text/xml")])
            return [self.wsdl]
        return wsgi_app(environ, start_response)


@pytest.fixture(scope="module")
def registry():
    site = RegistrySite()
    with serve_wsgi(site) as base:
        raw = urllib.request.urlopen(base + "/?wsdl", timeout=10).read()
        site.wsdl = prepare_wsdl(raw, soap_address=base + "/",
                                 schema_base_url=base + "/xsd/", service_version="v1")
        yield base, raw, site.wsdl
