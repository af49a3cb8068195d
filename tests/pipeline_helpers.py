"""Building the in-memory pipelines (ClientSide, ServerSide) for tests."""
from __future__ import annotations

from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.messagelog import NullLog


class RecordingLog(NullLog):
    """A message log that is on (the steps build records) and keeps what it is given."""

    enabled = True

    def __init__(self):
        self.records = []

    def log(self, record):
        self.records.append(record)


def side(cls, files):
    """``cls`` (ClientSide or ServerSide) for one server of a test federation."""
    conf = files.conf()
    return cls(conf, SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert),
               TrustAnchor.from_pem(conf.federation.ca_certs_pem), RecordingLog())
