"""Faults and refusals as the edges send them: one place that logs each fault with
its id and maps unexpected exceptions to InternalError."""
from __future__ import annotations

import logging

from ..core import errors
from ..core.errors import Origin, XRoadError
from ..core.faults import error_to_fault

log = logging.getLogger("tunduk")

_REASONS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
            405: "405 Method Not Allowed", 408: "408 Request Timeout",
            413: "413 Payload Too Large", 431: "431 Request Header Fields Too Large",
            500: "500 Internal Server Error", 502: "502 Bad Gateway",
            503: "503 Service Unavailable"}


def status_line(code: int) -> str:
    return _REASONS.get(code, f"{code} Status")


def too_large(message: str) -> XRoadError:
    """MessageTooLarge, answered with HTTP 413 (the connection is then closed)."""
    return XRoadError(errors.MESSAGE_TOO_LARGE, message, http_status=413)


def fault_body(err: XRoadError, origin: Origin, headers=None) -> bytes:
    """The SOAP fault for ``err`` (logged with its id); sent with ``err.http_status``."""
    code, body = error_to_fault(err, origin, headers)
    log.warning("fault %s [%s]: %s", code, err.detail_id, err.message)
    return body


def internal_error(exc: BaseException) -> XRoadError:
    err = XRoadError(errors.INTERNAL_ERROR,
                     "internal error in the security server; the operator can find "
                     "details in the server log by the id in faultDetail")
    log.error("internal error [%s]", err.detail_id, exc_info=exc)
    return err
