"""Hand-written X-Road 4.0 requests for the tests (see tunduk.server.devfed.xroad_request)."""
from __future__ import annotations

import uuid

from tunduk.server.core.identifiers import ClientId, ServiceId
from tunduk.server.devfed import xroad_request


def request(service: str = "getBirthRecord", *, payload: str =
            "<reg:personalCode>21205199900011</reg:personalCode>",
            client_code: str = "70000002", client_subsystem: str = "centre",
            provider_code: str = "70000001", message_id: str | None = None) -> bytes:
    return xroad_request(ServiceId("KG", "GOV", provider_code, "registry", service, "v1"),
                         payload, message_id or str(uuid.uuid4()),
                         client=ClientId("KG", "GOV", client_code, client_subsystem),
                         user_id="KG12345678901234")
