"""Hand-written X-Road 4.0 requests, the way other people's systems write them."""
from __future__ import annotations

import uuid

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:reg="http://registry.demo.tunduk.kg/">
  <SOAP-ENV:Header>
    <xrd:client id:objectType="SUBSYSTEM">
      <id:xRoadInstance>KG</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass>
      <id:memberCode>{client_code}</id:memberCode>
      <id:subsystemCode>{client_subsystem}</id:subsystemCode>
    </xrd:client>
    <xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>KG</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass>
      <id:memberCode>{provider_code}</id:memberCode>
      <id:subsystemCode>registry</id:subsystemCode>
      <id:serviceCode>{service}</id:serviceCode>
      <id:serviceVersion>v1</id:serviceVersion>
    </xrd:service>
    <xrd:id>{message_id}</xrd:id>
    <xrd:userId>KG12345678901234</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <reg:{service}>
      {payload}
    </reg:{service}>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""


def request(service: str = "getBirthRecord", *, payload: str =
            "<reg:personalCode>21205199900011</reg:personalCode>",
            client_code: str = "70000002", client_subsystem: str = "centre",
            provider_code: str = "70000001", message_id: str | None = None) -> bytes:
    return TEMPLATE.format(service=service, payload=payload, client_code=client_code,
                           client_subsystem=client_subsystem, provider_code=provider_code,
                           message_id=message_id or str(uuid.uuid4())).encode("utf-8")
