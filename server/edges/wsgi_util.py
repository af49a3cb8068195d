"""Small WSGI helpers shared by the proxies: read the body, answer, answer a fault."""
from __future__ import annotations

import logging
from typing import Iterable, Optional

from cheroot import errors as cheroot_errors

from ..core import errors
from ..core.errors import Origin, XRoadError
from ..core.faults import FAULT_CONTENT_TYPE, error_to_fault

log = logging.getLogger("tunduk")
_REASONS = {200: "200 OK", 400: "400 Bad Request", 404: "404 Not Found",
            405: "405 Method Not Allowed", 408: "408 Request Timeout",
            413: "413 Payload Too Large", 431: "431 Request Header Fields Too Large",
            500: "500 Internal Server Error", 502: "502 Bad Gateway",
            503: "503 Service Unavailable"}


def status_line(code: int) -> str:
    return _REASONS.get(code) or f"{code} Status"


def read_body(environ: dict, limit: int) -> bytes:
    """The request body, at most ``limit`` bytes, else MessageTooLarge (HTTP 413, on
    which cheroot closes the connection instead of reading the rest)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise XRoadError(errors.INVALID_MESSAGE, "invalid Content-Length header") from None
    if length < 0:
        raise XRoadError(errors.INVALID_MESSAGE, "invalid Content-Length header")
    if length > limit:
        raise too_large(f"the message is {length} bytes; the limit is {limit}")
    stream = environ["wsgi.input"]
    if length:
        return stream.read(length)
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        # cheroot's chunked reader checks each chunk's declared size against maxlen
        # before reading it, so a huge chunk is refused without being buffered.  Its
        # count includes the chunk-size lines, hence the room above ``limit``; the
        # decoded body is held to ``limit`` exactly below.
        if hasattr(stream, "maxlen"):
            stream.maxlen = 2 * limit + 65536
        try:
            data = stream.read(limit + 1)
        except cheroot_errors.MaxSizeExceeded:
            data = None
        except OSError as exc:
            if "Request Entity Too Large" not in str(exc):
                raise
            data = None
        except ValueError as exc:       # malformed chunk sizes or separators
            raise XRoadError(errors.INVALID_MESSAGE,
                             f"invalid chunked transfer coding: {exc}") from None
        if data is None or len(data) > limit:
            raise too_large(f"the message exceeds {limit} bytes")
        return data
    return b""


def too_large(message: str) -> XRoadError:
    """MessageTooLarge, answered with HTTP 413 (the connection is then closed)."""
    return XRoadError(errors.MESSAGE_TOO_LARGE, message, http_status=413)


def respond(start_response, status: int, body: bytes, content_type: str,
            extra: Optional[list] = None) -> Iterable[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    if extra:
        headers.extend(extra)
    start_response(status_line(status), headers)
    return [body]


def fault_body(err: XRoadError, origin: Origin, headers=None) -> bytes:
    """The SOAP fault for ``err`` (logged with its id); sent with ``err.http_status``."""
    code, body = error_to_fault(err, origin, headers)
    log.warning("fault %s [%s]: %s", code, err.detail_id, err.message)
    return body


def respond_error(start_response, err: XRoadError, origin: Origin,
                  headers=None) -> Iterable[bytes]:
    return respond(start_response, err.http_status, fault_body(err, origin, headers),
                   FAULT_CONTENT_TYPE)


def internal_error(exc: BaseException) -> XRoadError:
    err = XRoadError(errors.INTERNAL_ERROR,
                     "internal error in the security server; the operator can find "
                     "details in the server log by the id in faultDetail")
    log.error("internal error [%s]", err.detail_id, exc_info=exc)
    return err
