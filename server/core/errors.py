"""One exception for every failure in the message pipeline, and the rule that names it.

Every step raises ``XRoadError(code, message)`` with a bare X-Road 7.x code such as
``AccessDenied``.  Only at the edge is the code given its prefix, in
:func:`fault_code`: ``Client.`` when the local caller sent something wrong to the
client proxy, otherwise the origin (``Server.ClientProxy.`` / ``Server.ServerProxy.``).
A fault that arrived from the peer already carries its full code and passes through.
"""
from __future__ import annotations

import enum
import uuid


class Origin(enum.Enum):
    CLIENT_PROXY = "Server.ClientProxy"
    SERVER_PROXY = "Server.ServerProxy"


# Bare codes (X-Road 7.x names).  Kept as constants so a typo is an AttributeError.
INVALID_XML = "InvalidXml"
INVALID_SOAP = "InvalidSoap"
INVALID_MESSAGE = "InvalidMessage"
INVALID_HTTP_METHOD = "InvalidHttpMethod"
INVALID_CONTENT_TYPE = "InvalidContentType"
MISSING_HEADER_FIELD = "MissingHeaderField"
DUPLICATE_HEADER_FIELD = "DuplicateHeaderField"
INVALID_PROTOCOL_VERSION = "InvalidProtocolVersion"
INVALID_CLIENT_IDENTIFIER = "InvalidClientIdentifier"
INVALID_SERVICE_IDENTIFIER = "InvalidServiceIdentifier"
INVALID_BODY = "InvalidBody"
MISSING_BODY = "ServiceFailed.MissingBody"
MESSAGE_TOO_LARGE = "MessageTooLarge"
UNKNOWN_MEMBER = "UnknownMember"
UNKNOWN_SERVICE = "UnknownService"
UNKNOWN_SERVER = "UnknownServer"
ACCESS_DENIED = "AccessDenied"
SSL_AUTHENTICATION_FAILED = "SslAuthenticationFailed"
INVALID_SIGNATURE_VALUE = "InvalidSignatureValue"
INVALID_SIGNATURE = "InvalidSignature"
CERT_VALIDATION = "CertValidation"
INCORRECT_CERTIFICATE = "IncorrectCertificate"
INVALID_TIMESTAMP = "InvalidTimestamp"
DUPLICATE_MESSAGE = "DuplicateMessage"
INCONSISTENT_RESPONSE = "InconsistentResponse"
INVALID_REQUEST_HASH = "InvalidRequestHash"
NETWORK_ERROR = "NetworkError"
SERVICE_FAILED = "ServiceFailed"
INVALID_RESPONSE = "ServiceFailed.InvalidResponse"
TIMESTAMPING_FAILED = "TimestampingFailed"
MLOG_FAILED = "MessageLogFailed"
INTERNAL_ERROR = "InternalError"
SERVICE_BUSY = "ServiceBusy"
WSDL_FAILED = "WsdlFailed"

# Codes that mean "the local system sent something wrong": at the client proxy they
# are reported as ``Client.<code>`` so the caller knows the fix is on its side.
CALLER_CODES = frozenset({
    INVALID_XML, INVALID_SOAP, INVALID_MESSAGE, INVALID_HTTP_METHOD,
    INVALID_CONTENT_TYPE, MISSING_HEADER_FIELD, DUPLICATE_HEADER_FIELD,
    INVALID_PROTOCOL_VERSION, INVALID_CLIENT_IDENTIFIER, INVALID_SERVICE_IDENTIFIER,
    INVALID_BODY, MESSAGE_TOO_LARGE,
})


class XRoadError(Exception):
    """A failure with an X-Road code and a message that tells the caller what to fix."""

    def __init__(self, code: str, message: str, *, http_status: int = 500) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        # Written to the server log and sent in detail/faultDetail so an operator
        # can find the event from the fault a user reports.
        self.detail_id = str(uuid.uuid4())

    def __repr__(self) -> str:
        return f"XRoadError({self.code!r}, {self.message!r})"


class PeerFault(Exception):
    """A complete SOAP fault received from the peer: passed through unchanged."""

    def __init__(self, body: bytes, content_type: str, status: int, code: str) -> None:
        super().__init__(code)
        self.body = body
        self.content_type = content_type
        self.status = status
        self.code = code


def fault_code(err: XRoadError, origin: Origin) -> str:
    """The full dotted code a caller sees for ``err`` raised at ``origin``."""
    if "." in err.code.split(".")[0] or err.code.startswith(("Client.", "Server.")):
        return err.code
    if origin is Origin.CLIENT_PROXY and err.code in CALLER_CODES:
        return f"Client.{err.code}"
    return f"{origin.value}.{err.code}"
