"""The request every load scenario sends: an X-Road ``echo`` call of about 1.7 KB."""
from __future__ import annotations

from tunduk.server.core.identifiers import ServiceId
from tunduk.server.devfed import xroad_request

ECHO = ServiceId("KG", "GOV", "70000001", "registry", "echo", "v1")

ECHO_TEXT = ("Benchmark payload: the quick brown fox jumps over the lazy dog. " * 16)[:540]
SOAP_ACTION = '"echo"'
CONTENT_TYPE = "text/xml; charset=utf-8"


def echo_request(text: str = ECHO_TEXT) -> bytes:
    """The ~1.7 KB X-Road request (consumer centre → provider registry, service echo)."""
    return xroad_request(ECHO, f"<reg:text>{text}</reg:text>",
                         "5a1d6b2e-bench-4f0e-9c57-000000000001", user_id="KG12345678901234")
