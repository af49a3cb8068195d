"""Serve a Node's two proxies on one asyncio event loop: start, stop, run.

``AioEngine`` is the loop side; ``LoopThread`` runs one in a background thread (tests,
the demo, ``Node.start``); ``serve_until_signalled`` runs one in the main thread until
SIGTERM/SIGINT (``tunduk run``).
"""
from __future__ import annotations

import asyncio
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from .. import tls
from .admission import Admission
from .http_server import Connections, HttpConnection
from .proxies import ClientProxy, ServerProxy

STOP_GRACE = 5.0      # seconds requests in progress get to finish when stopping


class AioEngine:
    def __init__(self, node, *, reuse_port: bool = False) -> None:
        self.node = node
        self.reuse_port = reuse_port
        self.servers: list[asyncio.base_events.Server] = []
        self.connections = Connections()
        self.executors: list[ThreadPoolExecutor] = []
        self.client: Optional[ClientProxy] = None
        self.server: Optional[ServerProxy] = None

    async def start(self) -> None:
        node, c = self.node, self.node.conf
        loop = asyncio.get_running_loop()
        # One pool per proxy for what blocks by nature (hosted services, reading the
        # log's status): a slow hosted service must not hold up local systems.
        self.executors = [ThreadPoolExecutor(max_workers=c.listen.threads,
                                             thread_name_prefix=f"tunduk-{side}")
                          for side in ("client-proxy", "server-proxy")]
        self.client = ClientProxy(node.client_side, node.peer_context, self.executors[0],
                                  max_bytes=node.max_bytes)
        self.server = ServerProxy(node.server_side, self.executors[1],
                                  max_bytes=node.max_bytes)
        name = f"tunduk {node.conf.owner}/{node.conf.server_code}"
        attach = getattr(node.message_log, "attach_loop", None)
        if attach is not None:
            attach(loop)

        lst = c.listen

        def protocol(handler):
            admission = Admission(lst.max_connections, lst.max_connections_per_peer)
            return lambda: HttpConnection(handler, server_name=name,
                                          connections=self.connections,
                                          head_timeout=lst.head_timeout,
                                          admission=admission)
        server_ctx = tls.server_context(c.federation.ca_certs_pem, c.keys.auth_cert,
                                        c.keys.auth_key)
        (ch, cp), (sh, sp) = c.listen.client_proxy, c.listen.server_proxy
        try:
            self.servers.append(await loop.create_server(
                protocol(self.client), ch, cp, backlog=1024, reuse_port=self.reuse_port))
            self.servers.append(await loop.create_server(
                protocol(self.server), sh, sp, ssl=server_ctx, backlog=1024,
                reuse_port=self.reuse_port, ssl_handshake_timeout=30))
        except BaseException:
            await self.stop(grace=0)
            raise

    def address(self, index: int) -> tuple[str, int]:
        return self.servers[index].sockets[0].getsockname()[:2]

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop accepting, let requests in progress finish (up to ``grace`` s), close.
        Whatever fails on the way, everything is closed."""
        try:
            for s in self.servers:
                s.close()
            self.connections.idle_close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace
            while self.connections.busy() and loop.time() < deadline:
                await asyncio.sleep(0.02)
        finally:
            self.connections.close_all()
            for proxy in (self.client, self.server):
                if proxy is not None:
                    proxy.close()
            for executor in self.executors:
                executor.shutdown(wait=False, cancel_futures=True)
            self.servers = []
            detach = getattr(self.node.message_log, "detach_loop", None)
            if detach is not None:
                await detach()


class LoopThread:
    """An AioEngine on its own event loop in a daemon thread."""

    def __init__(self, engine: AioEngine) -> None:
        self.engine = engine
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       name="tunduk-event-loop", daemon=True)

    def start(self) -> "LoopThread":
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.engine.start(), self.loop).result()
        except BaseException:
            self._end()
            raise
        return self

    def stop(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self.engine.stop(), self.loop).result(
                timeout=STOP_GRACE + 5)
        finally:
            self._end()

    def _end(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


async def serve_until_signalled(engine: AioEngine) -> None:
    await engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await engine.stop()
