"""Frozen configuration values: what the pipeline reads, after loading and checking.

``load.py`` builds these from TOML; nothing else in the server reads TOML.  The
pipeline only ever sees a :class:`ServerConf` (this server) and a
:class:`Federation` (the shared configuration every server of the instance holds).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..core.envelope import XmlLimits
from ..core.identifiers import ClientId, MemberId, ServiceId


@dataclass(frozen=True)
class SecurityServer:
    """A security server registered in the federation."""

    owner: MemberId
    code: str                      # server code, unique per owner
    address: str                   # host:port of its server proxy (mutual TLS)
    auth_cert_sha256: frozenset[str]  # hex fingerprints of its TLS (auth) certificates

    def __str__(self) -> str:
        return f"SERVER:{self.owner}/{self.code}"


@dataclass(frozen=True)
class Member:
    id: MemberId
    name: str
    subsystems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Federation:
    """The shared (global) configuration: members, their servers, the trusted CAs."""

    instance: str
    members: dict[MemberId, Member]
    servers: tuple[SecurityServer, ...]
    ca_certs_pem: bytes            # concatenated PEM of the trusted CA certificates
    source: Optional[Path] = None

    def servers_of(self, member: MemberId) -> tuple[SecurityServer, ...]:
        return tuple(s for s in self.servers if s.owner == member)

    def has_client(self, client: ClientId) -> bool:
        m = self.members.get(client.member)
        if m is None:
            return False
        return client.subsystem is None or client.subsystem in m.subsystems


@dataclass(frozen=True)
class LocalService:
    """A service this server provides: a backend URL or a hosted spyne module."""

    id: ServiceId                  # full id; version may be None
    backend_url: Optional[str] = None   # external SOAP endpoint
    spyne: Optional[str] = None         # "package.module:Application-or-ServiceBase"
    wsdl_url: Optional[str] = None      # external backend's WSDL (for getWsdl)
    timeout: float = 30.0
    title: Optional[str] = None


@dataclass(frozen=True)
class AccessRule:
    service: ServiceId             # version ignored
    clients: frozenset[ClientId]   # a MEMBER id here admits the member itself only


@dataclass(frozen=True)
class Keys:
    auth_key: Path
    auth_cert: Path
    sign_key: Path
    sign_cert: Path


@dataclass(frozen=True)
class Listen:
    client_proxy: tuple[str, int] = ("127.0.0.1", 8080)
    server_proxy: tuple[str, int] = ("127.0.0.1", 8443)
    workers: int = 1
    threads: int = 16          # executor threads for what blocks (hosted services)
    max_connections: int = 4096            # per listening proxy and worker
    max_connections_per_peer: int = 512    # from one IP address
    head_timeout: float = 10.0             # s from a request's first byte to its head
    peer_connection_max_age: float = 30.0  # s a kept connection to a peer is reused


@dataclass(frozen=True)
class MessageLogConf:
    backend: str = "sqlite"        # "sqlite" | "postgresql" | "off"
    path: Optional[Path] = None    # sqlite file (default: <data_dir>/messagelog.sqlite3)
    dsn: Optional[str] = None      # postgresql DSN
    tsa_url: Optional[str] = None
    tsa_cert_der: Optional[bytes] = None     # the TSA certificate tokens must verify against
    timestamp_interval: float = 60.0
    timestamp_batch: int = 10000
    timestamp_failure_grace: float = 1800.0  # seconds of failures before refusing


@dataclass(frozen=True)
class LegacyAlias:
    """A URL path on the client proxy for a system that cannot add X-Road headers."""

    path: str                      # e.g. "/legacy/birth-record"
    client: ClientId
    service: ServiceId


@dataclass(frozen=True)
class ServerConf:
    owner: MemberId
    server_code: str
    clients: tuple[ClientId, ...]  # this server's client subsystems (and owner member)
    listen: Listen
    keys: Keys
    federation: Federation
    services: dict[ServiceId, LocalService]   # keyed by id WITHOUT version
    access: tuple[AccessRule, ...]
    data_dir: Path
    messagelog: MessageLogConf = field(default_factory=MessageLogConf)
    legacy: tuple[LegacyAlias, ...] = ()
    source: Optional[Path] = None
    xml_limits: XmlLimits = field(default_factory=XmlLimits)

    def is_own_client(self, client: ClientId) -> bool:
        return client in self.clients
