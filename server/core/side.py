"""What both halves of a security server hold: configuration, keys, trust, message log."""
from __future__ import annotations

from ..conf.model import ServerConf
from .signing import SigningKey, TrustAnchor


class Side:
    """Base of ClientSide and ServerSide; ``log`` is a MessageLog (a NullLog when off)."""

    def __init__(self, conf: ServerConf, signer: SigningKey, trust: TrustAnchor,
                 log) -> None:
        self.conf = conf
        self.signer = signer
        self.trust = trust
        self.log = log
