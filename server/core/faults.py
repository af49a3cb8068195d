"""XRoadError → SOAP 1.1 fault bytes, in the one format X-Road clients parse.

faultcode carries the full dotted X-Road code, faultactor is empty and
detail/faultDetail holds the error's UUID, which is also written to the server log.
"""
from __future__ import annotations

import copy
from typing import Iterable, Optional

from lxml import etree

from .envelope import BODY, ENVELOPE, HEADER, SOAP_NS, serialize
from .errors import Origin, XRoadError, fault_code

FAULT_CONTENT_TYPE = "text/xml; charset=utf-8"


def fault_bytes(code: str, message: str, detail_id: str,
                headers: Iterable[etree._Element] = ()) -> bytes:
    env = etree.Element(ENVELOPE, nsmap={"SOAP-ENV": SOAP_NS})
    hdrs = list(headers)
    if hdrs:
        header = etree.SubElement(env, HEADER)
        for h in hdrs:
            header.append(copy.deepcopy(h))
    body = etree.SubElement(env, BODY)
    fault = etree.SubElement(body, f"{{{SOAP_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    etree.SubElement(fault, "faultactor").text = ""
    detail = etree.SubElement(fault, "detail")
    etree.SubElement(detail, "faultDetail").text = detail_id
    return serialize(env)


def error_to_fault(err: XRoadError, origin: Origin,
                   headers: Optional[Iterable[etree._Element]] = None) -> tuple[str, bytes]:
    """(full fault code, fault envelope bytes) for an error raised at ``origin``."""
    code = fault_code(err, origin)
    return code, fault_bytes(code, err.message, err.detail_id, headers or ())
