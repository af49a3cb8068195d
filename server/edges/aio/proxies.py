"""The two proxies on the event loop: the ordinary X-Road exchange handled here,
everything else by the threaded engine's WSGI apps on a worker thread.

The core steps (prepare, finish, accept, respond) run on the loop thread: they are
CPU work without I/O.  Their message-log records are collected (``LOG_COLLECTOR``)
and committed on the loop after the step (messagelog/loop_writer.py for SQLite,
loop_postgres.py over an asynchronous connection; each bounds a record's wait by its
commit timeout); a step's output leaves the server only once its records are durable.
A log without a loop writer (one attached by another loop) goes through its writer
thread, waited for here with the same timeout.
"""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from typing import Optional
from urllib.parse import urlsplit

from ...conf.model import LocalService
from ...core import detached
from ...core.client_side import PendingExchange
from ...core.envelope import check_soap_action
from ...core.errors import MLOG_FAILED, Origin, PeerFault, XRoadError
from ...core.faults import FAULT_CONTENT_TYPE
from ...core.side import LOG_COLLECTOR
from ..backend import backend_path, request_headers, unreachable
from ..client_proxy import ClientProxyApp, Failover, PeerPins, answer, fault_answer
from ..http_pool import Response, TransportError
from ..server_proxy import ServerProxyApp, answer_headers
from ..wsgi_util import fault_body, internal_error, too_large
from .http_server import Answer, Request
from .upstream import AsyncPool, AsyncPools
from .wsgi_bridge import run_app

_SIGNATURE = detached.SIGNATURE_HEADER.lower()
COMMIT_TIMEOUT = 60.0     # seconds, as GroupWriter.commit_timeout on the threaded engine


class LogWaits:
    """The records one exchange's core steps log: ``step`` returns a step's result
    once all its records are durable, or raises MessageLogFailed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.futures: list[asyncio.Future] = []
        self.threaded = False    # some records went to a writer thread (need a timeout)

    def collect(self, message_log, record) -> None:
        on_loop = getattr(message_log, "submit_on_loop", None)
        future = on_loop(record, self.loop) if on_loop is not None else None
        if future is not None:
            # committed on this loop (loop_writer.py), which bounds its own wait
            self.futures.append(future)
            return
        submit = getattr(message_log, "submit", None)
        if submit is None:                 # a log without a writer thread: in-line
            message_log.log(record)
            return
        future = self.loop.create_future()
        loop = self.loop

        def done(seq: Optional[int], error: Optional[str]) -> None:
            if loop.is_closed():           # stopped meanwhile: nobody waits for it
                return
            try:
                loop.call_soon_threadsafe(_settle, future, error)
            except RuntimeError:           # closed between the check and the call
                pass
        submit(record, done)
        self.futures.append(future)
        self.threaded = True

    async def step(self, fn, *args):
        """``fn(*args)`` (a core step) with its records collected and waited for."""
        token = LOG_COLLECTOR.set(self.collect)
        try:
            result = fn(*args)
        finally:
            LOG_COLLECTOR.reset(token)
        if self.futures:
            futures, self.futures = self.futures, []
            if self.threaded:
                self.threaded = False
                _, late = await asyncio.wait(futures, timeout=COMMIT_TIMEOUT)
                if late:
                    raise XRoadError(MLOG_FAILED, "message log did not commit the record "
                                                  f"within {COMMIT_TIMEOUT:.0f} s")
            for future in futures:
                error = await future      # (a done future does not suspend)
                if error is not None:
                    raise XRoadError(MLOG_FAILED, error)
        return result


def _settle(future: asyncio.Future, error: Optional[str]) -> None:
    if not future.done():
        future.set_result(error)


def fault(err: XRoadError, origin: Origin, headers=None) -> Answer:
    return Answer(err.http_status, [("Content-Type", FAULT_CONTENT_TYPE)],
                  fault_body(err, origin, headers))


class AioClientProxy:
    """Local systems POST X-Road SOAP here (plain HTTP)."""

    def __init__(self, app: ClientProxyApp, ssl_context, executor: Executor,
                 timeout: float = 60.0) -> None:
        self.app, self.side, self.executor = app, app.side, executor
        self.ssl_context, self.timeout = ssl_context, timeout
        self.pools = AsyncPools(self._make_pool)
        self.pins = PeerPins()

    def _make_pool(self, host: str, port: int) -> AsyncPool:
        return AsyncPool(host, port, ssl_context=self.ssl_context, timeout=self.timeout,
                         verify_peer=self.pins.verifier(host, port))

    @property
    def max_bytes(self) -> int:
        return self.app.max_bytes

    async def __call__(self, request: Request) -> Answer:
        origin = Origin.CLIENT_PROXY
        try:
            if request.too_large:
                raise too_large(request.too_large)
            if request.method != "POST" or self.app.legacy_alias(request.path):
                return await run_app(self.executor, self.app, request)
            status, body, ctype = await self.exchange(
                request.body, request.headers.get("content-type"),
                request.headers.get("soapaction"))
            return Answer(status, [("Content-Type", ctype)], body)
        except XRoadError as err:
            return fault(err, origin)
        except Exception as exc:   # the caller always gets a fault, never a traceback
            return fault(internal_error(exc), origin)

    async def exchange(self, raw: bytes, content_type: Optional[str],
                       soap_action: Optional[str]) -> tuple[int, bytes, str]:
        """As ``ClientProxyApp.run_exchange``: faults are answers too."""
        waits = LogWaits(asyncio.get_running_loop())
        pending = None
        try:
            pending = await waits.step(self.side.prepare, raw, content_type, soap_action)
            resp = await self.send(pending)
            return await waits.step(answer, self.side, pending, resp)
        except (PeerFault, XRoadError) as exc:
            return fault_answer(exc, pending)

    async def send(self, pending: PendingExchange) -> Response:
        """To the provider's first server that takes it (as ``PeerClient.send``)."""
        attempts = Failover(pending, self.pins)
        for host, port in attempts:
            try:
                return await self.pools.get(host, port).post("/", pending.body,
                                                             attempts.headers)
            except TransportError as exc:
                attempts.failed(exc)
        raise attempts.exhausted()

    def close(self) -> None:
        self.pools.close()


class AioServerProxy:
    """Peers POST signed requests here (mutual TLS)."""

    def __init__(self, app: ServerProxyApp, executor: Executor) -> None:
        self.app, self.side, self.executor = app, app.side, executor
        self.pools = AsyncPools(self._make_pool)

    def _make_pool(self, scheme: str, host: str, port: Optional[int],
                   timeout: float) -> AsyncPool:
        tls, port = self.app.backends.endpoint(scheme, port)
        return AsyncPool(host, port, ssl_context=tls, timeout=timeout)

    @property
    def max_bytes(self) -> int:
        return self.app.max_bytes

    async def __call__(self, request: Request) -> Answer:
        origin = Origin.SERVER_PROXY
        accepted = None
        try:
            if request.method != "POST":
                return await run_app(self.executor, self.app, request)
            if request.too_large:
                raise too_large(request.too_large)
            headers = request.headers
            waits = LogWaits(asyncio.get_running_loop())
            signature = detached.from_header(headers.get(_SIGNATURE))
            accepted = await waits.step(self.side.accept, request.body,
                                        headers.get("content-type"),
                                        request.peer_cert_der, signature)
            soap_action = headers.get("soapaction")
            if accepted.meta is not None or accepted.service.spyne:
                # metaservices and in-process services: blocking, on a worker thread
                body = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self.app.answer, accepted, soap_action)
            else:
                check_soap_action(soap_action, accepted.request.xroad.service.service_code)
                resp = await self.call(accepted.service, accepted.backend_body,
                                       accepted.backend_content_type, soap_action)
                body = await waits.step(self.side.respond, accepted, resp.body,
                                        resp.headers.get("content-type"), resp.status)
            return Answer(200, [("Content-Type", accepted.response_content_type),
                                *answer_headers(accepted)], body)
        except XRoadError as err:
            headers = accepted.request.xroad.elements if accepted is not None else None
            return fault(err, origin, headers)
        except Exception as exc:
            return fault(internal_error(exc), origin)

    async def call(self, service: LocalService, body: bytes, content_type: str,
                   soap_action: Optional[str]) -> Response:
        url = urlsplit(service.backend_url)
        pool = self.pools.get(url.scheme, url.hostname, url.port, service.timeout)
        try:
            return await pool.post(backend_path(url), body,
                                   request_headers(content_type, soap_action))
        except TransportError as exc:
            raise unreachable(service, exc) from None

    def close(self) -> None:
        self.pools.close()

