"""The two proxies on the event loop: every request a security server receives.

The core steps (prepare, finish, accept, respond) run on the loop thread: CPU work
without I/O.  Each returns the message-log records it made on its result
(``records``); :class:`LogCommits` commits them on the loop (messagelog/loop_writer.py
for SQLite, loop_postgres.py for PostgreSQL; each bounds a record's wait by its commit
timeout) and what a step produced leaves the server only once its records are
durable.  Only code that blocks by nature runs on the executor: hosted spyne
services, their WSDL, and reading the message log's status for ``/healthz``.
"""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import Executor
from datetime import datetime, timezone
from typing import Optional
from urllib.parse import parse_qs, urlsplit

from cryptography import x509

from tunduk.schemas import SCHEMA_NAMES, schema_bytes

from ...conf.model import LegacyAlias, LocalService
from ...core import detached, errors, getwsdl, legacy
from ...core.client_side import SIGNED_CONTENT_TYPE, PendingExchange
from ...core.content_type import soap_request
from ...core.envelope import check_soap_action, parse_xml
from ...core.errors import MLOG_FAILED, Origin, PeerFault, XRoadError
from ...core.faults import FAULT_CONTENT_TYPE
from ...core.identifiers import ClientId
from ...core.metaservices import list_clients_xml
from ...core.replay import ReplayCache, duplicate
from ...core.server_side import BACKEND_CONTENT_TYPE, AcceptedRequest
from ...core.wsdl import prepare_wsdl
from ...messagelog.health import health
from ...messagelog.record import DuplicateRecord
from ...services.hosting import call_wsgi, load_wsgi_app, local_wsdl
from ..answers import fault_body, internal_error, too_large
from ..backend import (WSDL_PLACEHOLDER_ADDRESS, Backends, backend_path, request_headers,
                       unreachable, wsdl_location)
from ..cert_health import certificate_health
from ..client_proxy import (Failover, PeerPins, fault_answer, legacy_alias, response_of,
                            service_from_query)
from ..http_wire import Response, TransportError
from .http_server import Answer, Request
from .fairness import ServiceSlots
from .upstream import AsyncPool, AsyncPools

_SIGNATURE = detached.SIGNATURE_HEADER.lower()
XML_CONTENT_TYPE = "text/xml; charset=utf-8"


class LogCommits:
    """Commits core steps' records on the loop; ``commit`` returns once all are
    durable, or raises MessageLogFailed."""

    def __init__(self, message_log, executor: Executor) -> None:
        self.log, self.executor = message_log, executor

    async def commit(self, records: list, replay_key: Optional[str] = None) -> None:
        """``replay_key``: of the request among ``records``; its record is refused
        (DuplicateMessage) when the log already holds one with that key."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        futures = []
        for record in records:
            future = self.log.submit_on_loop(record, loop)
            if future is None:          # no writer on this loop: the blocking store
                future = loop.run_in_executor(self.executor, _log_blocking, self.log,
                                              record)
            futures.append(future)
        records.clear()
        for future in futures:
            error = await future        # (a done future does not suspend)
            if isinstance(error, DuplicateRecord):
                raise duplicate(replay_key or "")
            if error is not None:
                raise XRoadError(MLOG_FAILED, error)


def _log_blocking(message_log, record) -> Optional[str]:
    try:
        message_log.log(record)
    except XRoadError as err:
        return err.message
    return None


def fault(err: XRoadError, origin: Origin, headers=None) -> Answer:
    return Answer(err.http_status, [("Content-Type", FAULT_CONTENT_TYPE)],
                  fault_body(err, origin, headers))


def _xml(body: bytes, status: int = 200) -> Answer:
    return Answer(status, [("Content-Type", XML_CONTENT_TYPE)], body)


class ClientProxy:
    """Local systems POST X-Road SOAP here (plain HTTP); GET serves ``/listClients``,
    ``/wsdl?...``, ``/xsd/<name>``, ``/healthz`` (readiness) and ``/livez``."""

    origin = Origin.CLIENT_PROXY

    def __init__(self, side, ssl_context, executor: Executor, *, timeout: float = 60.0,
                 max_bytes: int) -> None:
        self.side, self.conf, self.executor = side, side.conf, executor
        self.ssl_context, self.timeout, self.max_bytes = ssl_context, timeout, max_bytes
        self.pools = AsyncPools(self._make_pool)
        self.pins = PeerPins()
        self.logs = LogCommits(side.log, executor)
        self.slots = ServiceSlots()     # per provider service: a hanging one holds few
        owner = self.conf.owner
        self.owner = ClientId(owner.instance, owner.member_class, owner.member_code)
        self.own_certs = {"signing": side.signer.cert,
                          "TLS": x509.load_pem_x509_certificate(
                              self.conf.keys.auth_cert.read_bytes())}

    def _make_pool(self, host: str, port: int) -> AsyncPool:
        return AsyncPool(host, port, ssl_context=self.ssl_context, timeout=self.timeout,
                         verify_peer=self.pins.verifier(host, port),
                         max_age=self.conf.listen.peer_connection_max_age)

    async def __call__(self, request: Request) -> Answer:
        try:
            if request.too_large:
                raise too_large(request.too_large)
            if request.method == "GET":
                return await self.get(request)
            if request.method != "POST":
                raise XRoadError(errors.INVALID_HTTP_METHOD,
                                 f"HTTP {request.method} is not accepted here: POST an "
                                 "X-Road SOAP request (GET serves /wsdl and /listClients)",
                                 http_status=405)
            headers = request.headers
            ctype, action = headers.get("content-type"), headers.get("soapaction")
            alias = legacy_alias(self.conf, request.path)
            if alias is not None:
                return await self.legacy(alias, request.body, ctype, action)
            # Any path (and absolute-form targets) carries an ordinary X-Road request.
            status, body, out_type = await self.exchange(request.body, ctype, action)
            return Answer(status, [("Content-Type", out_type)], body)
        except PeerFault as peer:
            return Answer(500, [("Content-Type", peer.content_type)], peer.body)
        except XRoadError as err:
            return fault(err, self.origin)
        except Exception as exc:   # the caller always gets a fault, never a traceback
            return fault(internal_error(exc), self.origin)

    async def exchange(self, raw: bytes, content_type: Optional[str],
                       soap_action: Optional[str]) -> tuple[int, bytes, str]:
        """One request through the signed exchange: (HTTP status, body, content type);
        faults (ours or the peer's) are answers too."""
        pending = None
        try:
            pending = self.side.prepare(raw, content_type, soap_action)
            await self.logs.commit(pending.records)
            resp = await self.send(pending)
            status, body, ctype = response_of(self.side, pending, resp)
            await self.logs.commit(pending.records)
            return status, body, ctype
        except (PeerFault, XRoadError) as exc:
            return fault_answer(exc, pending)

    async def legacy(self, alias: LegacyAlias, raw: bytes, content_type: Optional[str],
                     soap_action: Optional[str]) -> Answer:
        """A plain SOAP request on an alias path: X-Road headers added, then removed."""
        soap_request(content_type)
        xroad_raw = legacy.add_headers(raw, content_type, alias.client, alias.service)
        status, body, ctype = await self.exchange(xroad_raw, SIGNED_CONTENT_TYPE,
                                                  soap_action)
        return Answer(status, [("Content-Type", ctype)], legacy.strip_headers(body))

    async def send(self, pending: PendingExchange) -> Response:
        """To the provider's first server that takes it."""
        attempts = Failover(pending, self.pins)
        slot = await self.slots.acquire(pending.request.xroad.service.without_version())
        try:
            for host, port in attempts:
                try:
                    return await self.pools.get(host, port).post("/", pending.body,
                                                                 attempts.headers)
                except TransportError as exc:
                    attempts.failed(exc)
        finally:
            slot.release()
        raise attempts.exhausted()

    # -- GET ------------------------------------------------------------------------
    async def get(self, request: Request) -> Answer:
        path = request.path.rstrip("/")
        if path == "/listClients":
            q = parse_qs(request.query)
            instance = (q.get("xRoadInstance") or [""])[0].strip() or None
            return _xml(list_clients_xml(self.conf.federation, instance))
        if path == "/wsdl":
            return await self.wsdl(request)
        if request.path.startswith("/xsd/"):
            name = request.path[len("/xsd/"):]
            if name not in SCHEMA_NAMES:
                raise XRoadError(errors.INVALID_HTTP_METHOD,
                                 f"no schema {name!r} here; available: "
                                 + ", ".join(SCHEMA_NAMES), http_status=404)
            return _xml(schema_bytes(name))
        if path == "/livez":
            return Answer(200, [("Content-Type", "application/json")],
                          b'{"status": "alive"}\n')
        if path == "/healthz":
            status, doc = await asyncio.get_running_loop().run_in_executor(
                self.executor, health, self.side.log)
            expired, doc["certificates"] = certificate_health(
                self.own_certs, datetime.now(timezone.utc))
            if any(c["state"] != "ok" for c in doc["certificates"].values()):
                doc["status"] = "failing"
            if expired is not None:
                status, doc["accepting"] = 503, False
                doc.setdefault("refusing", expired)
            body = json.dumps(doc, indent=1, sort_keys=True).encode("utf-8") + b"\n"
            return Answer(status, [("Content-Type", "application/json")], body)
        raise XRoadError(errors.INVALID_HTTP_METHOD,
                         f"nothing to GET at {request.path}: GET serves /listClients, "
                         "/wsdl?..., /xsd/<schema>, /healthz and /livez; POST X-Road "
                         "requests",
                         http_status=404)

    async def wsdl(self, request: Request) -> Answer:
        """The service's WSDL, asked of the provider with getWsdl through the signed
        exchange (as this server's owner), rewritten to point at this client proxy."""
        service = service_from_query(request.query)
        raw = getwsdl.request_envelope(self.owner, service)
        pending = self.side.prepare(raw, SIGNED_CONTENT_TYPE)
        await self.logs.commit(pending.records)
        resp = await self.send(pending)
        _, body, _ = response_of(self.side, pending, resp)
        await self.logs.commit(pending.records)
        root = parse_xml(body)
        fault_el = root.find("{http://schemas.xmlsoap.org/soap/envelope/}Body/"
                             "{http://schemas.xmlsoap.org/soap/envelope/}Fault")
        if fault_el is not None:
            # A signed fault (unusual for a metaservice): pass its code on.
            code = (fault_el.findtext("faultcode") or "").split(":")[-1].strip()
            raise XRoadError(code or errors.WSDL_FAILED,
                             fault_el.findtext("faultstring") or "getWsdl failed")
        answer = getwsdl.read_response(root)
        base = _base_url(request)
        return _xml(prepare_wsdl(answer.wsdl, soap_address=base + "/",
                                 schema_base_url=base + "/xsd/",
                                 service_version=answer.service_version or service.version))

    def close(self) -> None:
        self.pools.close()


def _base_url(request: Request) -> str:
    """This client proxy's own base URL as the caller reached it (Host header first)."""
    scheme = "https" if request.tls else "http"
    host = request.headers.get("host")
    if not host:
        name, port = request.server_address[:2]
        host = name if port == (443 if request.tls else 80) else f"{name}:{port}"
    return f"{scheme}://{host}"


class ServerProxy:
    """Peers POST signed requests here (mutual TLS)."""

    origin = Origin.SERVER_PROXY

    def __init__(self, side, executor: Executor, *, max_bytes: int) -> None:
        self.side, self.executor, self.max_bytes = side, executor, max_bytes
        self.pools = AsyncPools(self._make_pool)
        self.logs = LogCommits(side.log, executor)
        self.backends = Backends()
        self.slots = ServiceSlots()     # per local service: a hanging one holds few
        # the message log refuses a replayed request for all workers and nodes; with
        # the log off, this process remembers what it accepted
        self.replays = None if getattr(side.log, "enabled", True) else ReplayCache()

    def _make_pool(self, scheme: str, host: str, port: Optional[int],
                   timeout: float) -> AsyncPool:
        tls, port = self.backends.endpoint(scheme, port)
        return AsyncPool(host, port, ssl_context=tls, timeout=timeout)

    async def __call__(self, request: Request) -> Answer:
        accepted = None
        try:
            if request.method != "POST":
                raise XRoadError(errors.INVALID_HTTP_METHOD,
                                 "the server proxy accepts only POST", http_status=405)
            if request.too_large:
                raise too_large(request.too_large)
            headers = request.headers
            signature = detached.from_header(headers.get(_SIGNATURE))
            accepted = self.side.accept(request.body, headers.get("content-type"),
                                        request.peer_cert_der, signature)
            if self.replays is not None:
                self.replays.claim(accepted.replay_key, accepted.replay_until,
                                   datetime.now(timezone.utc))
            await self.logs.commit(accepted.records, accepted.replay_key)
            status, resp_headers, raw = await self.answer(accepted,
                                                          headers.get("soapaction"))
            body = self.side.respond(accepted, raw, resp_headers.get("content-type"),
                                     status)
            await self.logs.commit(accepted.records)
            return Answer(200, [("Content-Type", accepted.response_content_type),
                                (detached.SIGNATURE_HEADER,
                                 detached.header_value(accepted.response_signature))],
                          body)
        except XRoadError as err:
            headers = accepted.request.xroad.elements if accepted is not None else None
            return fault(err, self.origin, headers)
        except Exception as exc:
            return fault(internal_error(exc), self.origin)

    async def answer(self, accepted: AcceptedRequest, soap_action: Optional[str]
                     ) -> tuple[int, dict, bytes]:
        """(status, lower-cased headers, body) of the unsigned answer: from a
        metaservice, a hosted service or the backend."""
        if accepted.meta == getwsdl.GET_WSDL:
            target = self.side.wsdl_target(accepted)
            wsdl = await self.fetch_wsdl(target)
            return 200, {"content-type": BACKEND_CONTENT_TYPE}, \
                self.side.wsdl_response(accepted, target, wsdl)
        if accepted.meta is not None:
            return 200, {"content-type": BACKEND_CONTENT_TYPE}, \
                self.side.method_list(accepted)
        service = accepted.service
        check_soap_action(soap_action, accepted.request.xroad.service.service_code)
        headers = request_headers(accepted.backend_content_type, soap_action)
        if service.spyne:                 # hosted in-process: blocking by nature
            if accepted.backend_content_type.startswith("multipart/"):
                raise XRoadError(errors.INVALID_CONTENT_TYPE,
                                 f"service {service.id} is hosted in the security server "
                                 "and takes plain SOAP only: send the request without "
                                 "attachments (text/xml)")
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, call_wsgi, load_wsgi_app(service.spyne), "POST",
                "http://localhost/", accepted.backend_body, headers)
        url = urlsplit(service.backend_url)
        pool = self.pools.get(url.scheme, url.hostname, url.port, service.timeout)
        slot = await self.slots.acquire(service.id.without_version())
        try:
            resp = await pool.post(backend_path(url), accepted.backend_body, headers)
        except TransportError as exc:
            raise unreachable(service, exc) from None
        finally:
            slot.release()
        return resp.status, resp.headers, resp.body

    async def fetch_wsdl(self, service: LocalService) -> bytes:
        """The service's own WSDL: from the hosted spyne app, or by GET from the
        backend (``wsdl_url``, else ``<backend url>?wsdl``)."""
        if service.spyne:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, local_wsdl, service.spyne, WSDL_PLACEHOLDER_ADDRESS)
        location = wsdl_location(service)
        url = urlsplit(location)
        pool = self.pools.get(url.scheme, url.hostname, url.port, service.timeout)
        try:
            resp = await pool.request("GET", backend_path(url), None, {})
        except TransportError as exc:
            raise XRoadError(errors.WSDL_FAILED,
                             f"could not fetch the WSDL of {service.id} from {location}: "
                             f"{exc}") from None
        if resp.status != 200:
            raise XRoadError(errors.WSDL_FAILED,
                             f"the WSDL of {service.id} at {location} answered HTTP "
                             f"{resp.status}")
        return resp.body

    def close(self) -> None:
        self.pools.close()
