"""Starting and stopping the event-loop engine inside a node."""
from __future__ import annotations

import socket
import time

from tests.server.edges.test_attacks import tls_context


def test_stop_while_a_tls_connection_is_closing_closes_everything(run_federation):
    # The server proxy answers "Connection: close" and starts the TLS shutdown; the
    # peer neither reads nor answers it, so the connection is still closing when the
    # node stops.  Stopping must not trip over it (an SSL transport must not be closed
    # twice) and must still close the message log.
    fed = run_federation(messagelog={"backend": "sqlite"})
    host, port = fed.provider.server_proxy_address
    raw = socket.create_connection((host, port))
    tls = tls_context(fed).wrap_socket(raw, server_hostname=host)
    tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    time.sleep(0.3)                       # answered and closing, unread
    fed.provider.stop()
    assert not fed.provider.message_log.writer._thread.is_alive()
    raw.close()
