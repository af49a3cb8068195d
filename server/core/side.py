"""What both halves of a security server hold: configuration, keys, trust, message log."""
from __future__ import annotations

from typing import Optional

from lxml import etree

from ..conf.model import ServerConf
from . import errors, mime
from .envelope import read_xml, split_envelope
from .errors import XRoadError
from .records import make_record
from .signing import SigningKey, TrustAnchor


class Side:
    """Base of ClientSide and ServerSide; ``log`` is a MessageLog (a NullLog when off)."""

    def __init__(self, conf: ServerConf, signer: SigningKey, trust: TrustAnchor,
                 log) -> None:
        self.conf = conf
        self.signer = signer
        self.trust = trust
        self.log = log

    def record(self, records: list, env, raw: bytes, **record) -> None:
        """Add the message-log record of a signed message to ``records``, which the
        edge commits before the step's output moves on.  Building it costs a base64
        copy and a Body canonicalisation: skipped when the log is off."""
        if getattr(self.log, "enabled", True):
            records.append(make_record(env, raw, **record))

    def parse_answer(self, raw: bytes, content_type: Optional[str], status: int, who: str
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
            root, charset = read_xml(raw, content_type, self.conf.xml_limits)
            header, body = split_envelope(root)
        except XRoadError as exc:
            raise XRoadError(errors.INVALID_RESPONSE,
                             f"{who} answered HTTP {status} with something that is not a "
                             f"SOAP message: {exc.message}") from None
        return msg, raw, root, header, body, charset

