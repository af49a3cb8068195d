"""One security server process: configuration in, two listening proxies out.

Assembles the pieces (keys, trust anchor, message log, the two pipelines, their WSGI
edges) and runs them on cheroot.  Used by ``tunduk run``, the demo and the tests.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Optional

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from .conf.model import ServerConf
from .core.client_side import ClientSide
from .core.server_side import ServerSide
from .core.signing import SigningKey, TrustAnchor
from .edges import cheroot_io, tls
from .edges.backend import Backends
from .edges.client_proxy import ClientProxyApp, PeerClient
from .edges.server_proxy import ServerProxyApp

log = logging.getLogger("tunduk")


def server_id(conf: ServerConf) -> str:
    return f"{conf.owner}/{conf.server_code}"


@dataclass
class Node:
    conf: ServerConf
    client_app: ClientProxyApp
    server_app: ServerProxyApp
    message_log: object
    peer_context: object = None     # ssl.SSLContext for calls to other servers
    _servers: list = field(default_factory=list)
    _threads: list = field(default_factory=list)
    _loop: object = None            # LoopThread of the asyncio engine, when started

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
        client_side = ClientSide(conf, signer, trust, message_log)
        server_side = ServerSide(conf, signer, trust, message_log)
        peers = PeerClient(peer_ctx)
        get_handler = _get_handler(conf, client_side, peers)
        client_app = ClientProxyApp(client_side, peers, get_handler)
        server_app = ServerProxyApp(server_side, Backends())
        return cls(conf, client_app, server_app, message_log, peer_ctx)

    # -- serving ------------------------------------------------------------------
    def make_servers(self, *, reuse_port: bool = False) -> list:
        c = self.conf
        client = wsgi.Server(c.listen.client_proxy, self.client_app,
                             numthreads=c.listen.threads, reuse_port=reuse_port)
        server = wsgi.Server(c.listen.server_proxy, self.server_app,
                             numthreads=c.listen.threads, reuse_port=reuse_port)
        adapter = BuiltinSSLAdapter(str(c.keys.auth_cert), str(c.keys.auth_key))
        adapter.context = tls.server_context(c.federation.ca_certs_pem, c.keys.auth_cert,
                                             c.keys.auth_key)
        server.ssl_adapter = adapter
        for s in (client, server):
            s.ConnectionClass = cheroot_io.Connection
            # Request line + headers; bodies are bounded by the apps (read_body).
            s.max_request_header_size = cheroot_io.MAX_HEAD_BYTES
            s.server_name = f"tunduk {server_id(c)}"
        return [client, server]

    def start(self) -> "Node":
        """Serve both proxies from background threads; returns once they listen."""
        if self.conf.listen.engine == "asyncio":
            from .edges.aio.engine import AioEngine, LoopThread
            self._loop = LoopThread(AioEngine(self)).start()
            return self
        self._servers = self.make_servers()
        for s in self._servers:
            s.prepare()
            t = threading.Thread(target=s.serve, name=f"tunduk-{s.bind_addr}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _bound(self, index: int) -> tuple[str, int]:
        if self._loop is not None:
            return self._loop.engine.address(index)
        if self._servers:
            return self._servers[index].bind_addr
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
            for s in self._servers:
                s.stop()
            for t in self._threads:
                t.join(timeout=5)
            self._servers, self._threads = [], []
        finally:
            self.client_app.peers.close()
            self.server_app.backends.close()
            close = getattr(self.message_log, "close", None)
            if close:
                close()


def _get_handler(conf: ServerConf, client_side: ClientSide,
                 peers: PeerClient) -> Optional[object]:
    """GET requests on the client proxy (WSDL, listClients, schemas), when available."""
    try:
        from .edges.metaservices import make_get_handler
    except ImportError:
        return None
    return make_get_handler(conf, client_side, peers)
