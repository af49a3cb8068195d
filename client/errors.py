"""Typed exceptions for faults an X-Road call can return.

The faultcode says whose fault it is: ``Client.*`` (an X-Road check of what we sent),
``Server.ClientProxy.*`` (our security server), ``Server.ServerProxy.*`` (the
provider's security server) or anything else (the service's own fault, passed through).
Each carries the code, the human message, the ``xroad:id`` of the request and the
``faultDetail`` id an operator can look up in the server log.
"""
from __future__ import annotations

from typing import Optional

from lxml import etree

from tunduk.server.core.errors import CALLER_CODES


class XRoadFault(Exception):
    """A SOAP fault received for an X-Road request."""

    def __init__(self, code: str, message: str, *, message_id: Optional[str] = None,
                 detail_id: Optional[str] = None, detail: Optional[etree._Element] = None
                 ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.message_id = message_id
        self.detail_id = detail_id
        self.detail = detail


class ClientError(XRoadFault):
    """``Client.*``: the request we sent was wrong; fix it on our side."""


class ClientProxyError(XRoadFault):
    """``Server.ClientProxy.*``: our own security server failed or refused."""


class ServerProxyError(XRoadFault):
    """``Server.ServerProxy.*``: the provider's security server failed or refused."""


class ServiceFault(XRoadFault):
    """A fault raised by the service itself (e.g. ``Client.NotFound``)."""


def _strip_prefix(code: str) -> str:
    # faultcode is a QName ("SOAP-ENV:Server.ClientProxy.X"); the prefix means nothing.
    code = (code or "").strip()
    return code.split(":", 1)[1] if ":" in code else code


def _detail_id(detail: Optional[etree._Element]) -> Optional[str]:
    if detail is None:
        return None
    for el in detail.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname == "faultDetail":
            return (el.text or "").strip() or None
    return None


def classify(code: str) -> type[XRoadFault]:
    """The exception class for a full dotted fault code."""
    if code.startswith("Server.ClientProxy."):
        return ClientProxyError
    if code.startswith("Server.ServerProxy."):
        return ServerProxyError
    if code.startswith("Client."):
        rest = code[len("Client."):]
        if rest in CALLER_CODES or rest.split(".")[0] in CALLER_CODES:
            return ClientError
    return ServiceFault


def from_zeep_fault(fault, message_id: Optional[str] = None) -> XRoadFault:
    """Translate a :class:`zeep.exceptions.Fault` into the matching :class:`XRoadFault`."""
    code = _strip_prefix(fault.code or "")
    cls = classify(code)
    return cls(code, fault.message or "", message_id=message_id,
               detail_id=_detail_id(fault.detail), detail=fault.detail)
