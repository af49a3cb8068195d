"""One security server process: configuration in, two listening proxies out.

Assembles the pieces (keys, trust anchor, message log, the two pipelines) and serves
them on one event loop (edges/aio).  Used by ``tunduk run``, the demo and the tests.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from .conf.model import ServerConf
from .core.client_side import ClientSide
from .core.envelope import MAX_MESSAGE_BYTES
from .core.server_side import ServerSide
from .core.signing import SigningKey, TrustAnchor
from .edges import tls

log = logging.getLogger("tunduk")


def server_id(conf: ServerConf) -> str:
    return f"{conf.owner}/{conf.server_code}"


@dataclass
class Node:
    conf: ServerConf
    client_side: ClientSide
    server_side: ServerSide
    message_log: object
    peer_context: object = None     # ssl.SSLContext for calls to other servers
    max_bytes: int = MAX_MESSAGE_BYTES
    _loop: Optional[object] = None  # the LoopThread serving, once started

    @classmethod
    def from_conf(cls, conf: ServerConf, *, message_log=None) -> "Node":
        signer = SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert)
        trust = TrustAnchor.from_pem(conf.federation.ca_certs_pem)
        if message_log is None:
            from .messagelog import open_message_log
            message_log = open_message_log(conf.messagelog, conf.data_dir, server_id(conf),
                                           tsa_cert_der=conf.messagelog.tsa_cert_der)
        peer_ctx = tls.client_context(conf.federation.ca_certs_pem, conf.keys.auth_cert,
                                      conf.keys.auth_key)
        return cls(conf, ClientSide(conf, signer, trust, message_log),
                   ServerSide(conf, signer, trust, message_log), message_log, peer_ctx)

    def start(self) -> "Node":
        """Serve both proxies on an event loop in a background thread; returns once
        they listen."""
        from .edges.aio.engine import AioEngine, LoopThread
        self._loop = LoopThread(AioEngine(self)).start()
        return self

    def _bound(self, index: int) -> tuple[str, int]:
        if self._loop is not None:
            return self._loop.engine.address(index)
        listen = self.conf.listen
        return (listen.client_proxy, listen.server_proxy)[index]

    @property
    def client_proxy_url(self) -> str:
        host, port = self._bound(0)
        return f"http://{host}:{port}"

    @property
    def server_proxy_address(self) -> tuple[str, int]:
        return self._bound(1)

    def stop(self) -> None:
        """Stop serving; the message log is closed (its last records committed) even
        when stopping the listeners fails."""
        try:
            if self._loop is not None:
                loop, self._loop = self._loop, None
                loop.stop()
        finally:
            close = getattr(self.message_log, "close", None)
            if close:
                close()
