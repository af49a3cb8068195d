"""What both halves of a security server hold: configuration, keys, trust, message log."""
from __future__ import annotations

from contextvars import ContextVar
from typing import Callable, Optional

from lxml import etree

from ..conf.model import ServerConf
from . import errors, mime
from .envelope import parse_xml, split_envelope
from .errors import XRoadError
from .records import make_record
from .signing import SigningKey, TrustAnchor


#: Set by an event-loop edge (edges/aio) around one core step: the step's log records go
#: to this collector (``collect(message_log, record)``) instead of being written and
#: waited for on the spot; the edge waits for them before anything the step produced
#: leaves the server, so a record is still durable before its message moves on.
LOG_COLLECTOR: ContextVar[Optional[Callable[[object, object], None]]] = \
    ContextVar("tunduk_log_collector", default=None)


class Side:
    """Base of ClientSide and ServerSide; ``log`` is a MessageLog (a NullLog when off)."""

    def __init__(self, conf: ServerConf, signer: SigningKey, trust: TrustAnchor,
                 log) -> None:
        self.conf = conf
        self.signer = signer
        self.trust = trust
        self.log = log

    def keep(self, env, raw: bytes, **record) -> None:
        """Log a signed message (durably, before the caller goes on).  Building the
        record costs a base64 copy and a Body canonicalisation: skipped when the log is
        off."""
        if getattr(self.log, "enabled", True):
            made = make_record(env, raw, **record)
            collect = LOG_COLLECTOR.get()
            if collect is None:
                self.log.log(made)
            else:
                collect(self.log, made)

    @staticmethod
    def parse_answer(raw: bytes, content_type: Optional[str], status: int, who: str
                     ) -> tuple[Optional["mime.Multipart"], bytes, etree._Element,
                                Optional[etree._Element], etree._Element]:
        """(multipart or None, SOAP part bytes, root, Header, Body) of an answer from
        ``who``; anything that is not a SOAP message is the answerer's failure
        (InvalidResponse)."""
        msg = None
        try:
            if mime.is_multipart_related(content_type):
                msg = mime.split(raw, content_type)
                raw, content_type = msg.root.content, msg.root_content_type()
            root = parse_xml(raw, content_type)
            header, body = split_envelope(root)
        except XRoadError as exc:
            raise XRoadError(errors.INVALID_RESPONSE,
                             f"{who} answered HTTP {status} with something that is not a "
                             f"SOAP message: {exc.message}") from None
        return msg, raw, root, header, body

