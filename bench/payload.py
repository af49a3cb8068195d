"""The request every load scenario sends: an X-Road ``echo`` call of about 1.7 KB."""
from __future__ import annotations

TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:reg="http://registry.demo.tunduk.kg/">
  <SOAP-ENV:Header>
    <xrd:client id:objectType="SUBSYSTEM">
      <id:xRoadInstance>KG</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass>
      <id:memberCode>70000002</id:memberCode>
      <id:subsystemCode>centre</id:subsystemCode>
    </xrd:client>
    <xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>KG</id:xRoadInstance>
      <id:memberClass>GOV</id:memberClass>
      <id:memberCode>70000001</id:memberCode>
      <id:subsystemCode>registry</id:subsystemCode>
      <id:serviceCode>echo</id:serviceCode>
      <id:serviceVersion>v1</id:serviceVersion>
    </xrd:service>
    <xrd:id>5a1d6b2e-bench-4f0e-9c57-000000000001</xrd:id>
    <xrd:userId>KG12345678901234</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <reg:echo>
      <reg:text>{text}</reg:text>
    </reg:echo>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"""

ECHO_TEXT = ("Benchmark payload: the quick brown fox jumps over the lazy dog. " * 16)[:540]
SOAP_ACTION = '"echo"'
CONTENT_TYPE = "text/xml; charset=utf-8"


def echo_request(text: str = ECHO_TEXT) -> bytes:
    """The ~1.7 KB X-Road request (consumer centre → provider registry, service echo)."""
    return TEMPLATE.format(text=text).encode("utf-8")
