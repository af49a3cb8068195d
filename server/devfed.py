"""A development federation on disk: a CA, two agencies' security servers, their
keys and configuration files.  Used by ``tunduk demo``, the benchmarks and the tests.

The story is the demo's: a public service centre (the consumer, KG/GOV/70000002,
subsystem ``centre``) fetches citizens' records from the civil registry (the provider,
KG/GOV/70000001, subsystem ``registry``).
"""
from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from . import pki
from .conf.load import load_server_conf
from .conf.model import ServerConf
from .conf.write import write_federation_toml, write_server_toml
from .core.identifiers import ClientId, MemberId, ServiceId


PROVIDER = MemberId.parse("KG/GOV/70000001")
CONSUMER = MemberId.parse("KG/GOV/70000002")
PROVIDER_NAME = "Civil Registry"
CONSUMER_NAME = "Public Service Centre"

DEFAULT_SERVICES = (
    {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
     "url": "http://127.0.0.1:9/", "title": "Birth record of a citizen"},
)
DEFAULT_ACCESS = (
    {"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]},
)


_issued_ports: set[int] = set()
_issued_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago and not handed out before.

    Drawn from below the kernel's ephemeral range (32768+ here), so that outgoing
    connections made meanwhile cannot take it before the server binds it.  A port is
    handed out at most once per process: a port checked free but not yet bound (a
    federation picks four before starting anything) must not be picked again.
    """
    with _issued_lock:
        for _ in range(500):
            port = random.randint(20000, 32000)
            if port in _issued_ports:
                continue
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _issued_ports.add(port)
            return port
    raise RuntimeError("no free TCP port found in 20000-32000")


@dataclass(frozen=True)
class DevCA:
    dir: Path
    key: Path
    cert: Path


@dataclass
class ServerFiles:
    """One security server's files in a generated federation."""

    member: MemberId
    member_name: str
    subsystem: str
    code: str
    dir: Path
    auth_key: Path
    auth_cert: Path
    sign_key: Path
    sign_cert: Path
    server_toml: Path
    client_port: int
    server_port: int

    @property
    def client(self) -> ClientId:
        """The subsystem this server hosts, e.g. KG/GOV/70000001/registry."""
        m = self.member
        return ClientId(m.instance, m.member_class, m.member_code, self.subsystem)

    @property
    def auth_fingerprint(self) -> str:
        return pki.fingerprint_sha256(self.auth_cert.read_bytes())

    def conf(self) -> ServerConf:
        return load_server_conf(self.server_toml)


@dataclass
class FederationFiles:
    dir: Path
    ca: DevCA
    federation_toml: Path
    provider: ServerFiles
    consumer: ServerFiles
    extra: dict[str, Any] = field(default_factory=dict)


class KeySource:
    """Issues key pairs once per (kind, member, code, key_type) and hands out the same
    files again: tests share one source per session so key generation stays cheap."""

    def __init__(self, ca: DevCA, root: Path):
        self.ca, self.root = ca, root
        self._done: dict[tuple, tuple[Path, Path]] = {}
        self._n = itertools.count()

    def get(self, kind: str, member: MemberId, name: str, code: str,
            key_type: str) -> tuple[Path, Path]:
        k = (kind, str(member), name, code, key_type)
        if k not in self._done:
            d = self.root / f"k{next(self._n)}"
            d.mkdir(parents=True)
            key, cert = d / f"{kind}.key", d / f"{kind}.pem"
            if kind == "auth":
                pki.issue_auth_cert(self.ca.key, self.ca.cert, member, name, code,
                                    key, cert, key_type)
            else:
                pki.issue_sign_cert(self.ca.key, self.ca.cert, member, name, key, cert,
                                    key_type)
            self._done[k] = (key, cert)
        return self._done[k]


def _copy_key(src: Path, dst: Path) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(src.read_bytes())


def build_federation(base: Path, ca: DevCA, *,
                     keys: Optional["KeySource"] = None,
                     provider_ports: Optional[tuple[int, int]] = None,
                     consumer_ports: Optional[tuple[int, int]] = None,
                     key_type: str = "ec",
                     provider_key_type: Optional[str] = None,
                     consumer_key_type: Optional[str] = None,
                     services: Sequence[dict] = DEFAULT_SERVICES,
                     access: Sequence[dict] = DEFAULT_ACCESS,
                     consumer_services: Sequence[dict] = (),
                     consumer_access: Sequence[dict] = (),
                     messagelog: Optional[dict] = None,
                     consumer_legacy: Sequence[dict] = (),
                     extra_members: Sequence[dict] = (),
                     extra_servers: Sequence[dict] = (),
                     listen: Optional[dict] = None) -> FederationFiles:
    """Write a complete two-server federation under ``base``.

    Ports are (client_proxy, server_proxy); free ports are picked when omitted.
    ``services``/``access`` are the provider's [[services]]/[[access]] tables (see
    conf/server.example.toml); ``messagelog`` and ``listen`` (extra [listen] keys,
    e.g. threads) apply to both servers.
    """
    base.mkdir(parents=True, exist_ok=True)
    keys = keys or KeySource(ca, base / "keys")
    ca_dir = base / "ca"
    ca_dir.mkdir()
    shutil.copyfile(ca.cert, ca_dir / "ca.pem")
    _copy_key(ca.key, ca_dir / "ca.key")
    ca = DevCA(ca_dir, ca_dir / "ca.key", ca_dir / "ca.pem")

    def server(member: MemberId, name: str, sub: str, code: str,
               ports: Optional[tuple[int, int]], kt: str) -> ServerFiles:
        d = base / sub
        d.mkdir()
        files = {}
        for kind in ("auth", "sign"):
            src_key, src_cert = keys.get(kind, member, name, code, kt)
            _copy_key(src_key, d / f"{kind}.key")
            shutil.copyfile(src_cert, d / f"{kind}.pem")
            files[kind] = (d / f"{kind}.key", d / f"{kind}.pem")
        cp, sp = ports or (free_port(), free_port())
        return ServerFiles(member, name, sub, code, d, files["auth"][0], files["auth"][1],
                           files["sign"][0], files["sign"][1], d / "server.toml", cp, sp)

    prov = server(PROVIDER, PROVIDER_NAME, "registry", "ss1", provider_ports,
                  provider_key_type or key_type)
    cons = server(CONSUMER, CONSUMER_NAME, "centre", "ss1", consumer_ports,
                  consumer_key_type or key_type)

    fed = write_federation_toml(
        base / "federation.toml", instance="KG", ca_certs=["ca/ca.pem"],
        members=[{"id": str(PROVIDER), "name": PROVIDER_NAME, "subsystems": ["registry"]},
                 {"id": str(CONSUMER), "name": CONSUMER_NAME, "subsystems": ["centre"]},
                 *extra_members],
        servers=[{"owner": str(s.member), "code": s.code,
                  "address": f"127.0.0.1:{s.server_port}",
                  "auth_certs": [f"{s.subsystem}/auth.pem"]} for s in (prov, cons)]
        + list(extra_servers))

    for s, svcs, acc, legacy in ((prov, services, access, ()),
                                 (cons, consumer_services, consumer_access, consumer_legacy)):
        write_server_toml(
            s.server_toml, owner=str(s.member), code=s.code, clients=[s.subsystem],
            federation="../federation.toml", data_dir="var",
            listen={"client_proxy": f"127.0.0.1:{s.client_port}",
                    "server_proxy": f"127.0.0.1:{s.server_port}", **(listen or {})},
            keys={"auth_key": "auth.key", "auth_cert": "auth.pem",
                  "sign_key": "sign.key", "sign_cert": "sign.pem"},
            services=svcs, access=acc, messagelog=messagelog, legacy=legacy)
    return FederationFiles(base, ca, fed, prov, cons)




def create_dev_ca(directory: Path) -> DevCA:
    key, cert = pki.create_ca(directory, key_type="ec")
    return DevCA(directory, key, cert)


# -- hand-written requests -------------------------------------------------------------
REGISTRY_NS = "http://registry.demo.tunduk.kg/"
CENTRE = ClientId("KG", "GOV", "70000002", "centre")


def xroad_request(service: ServiceId, payload: str, message_id: str, *,
                  client: ClientId = CENTRE, user_id: str = "KG21505198800011",
                  payload_ns: str = REGISTRY_NS) -> bytes:
    """An X-Road 4.0 request exactly as a legacy system would write it by hand.

    Used by the demo (and its printed curl command), the tests and the benchmarks.
    """
    csub = f"\n      <id:subsystemCode>{client.subsystem}</id:subsystemCode>" \
        if client.subsystem else ""
    sub = f"\n      <id:subsystemCode>{service.subsystem}</id:subsystemCode>" \
        if service.subsystem else ""
    version = f"\n      <id:serviceVersion>{service.version}</id:serviceVersion>" \
        if service.version else ""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd" xmlns:id="http://x-road.eu/xsd/identifiers"
    xmlns:reg="{payload_ns}">
  <SOAP-ENV:Header>
    <xrd:client id:objectType="{client.object_type}">
      <id:xRoadInstance>{client.instance}</id:xRoadInstance>
      <id:memberClass>{client.member_class}</id:memberClass>
      <id:memberCode>{client.member_code}</id:memberCode>{csub}
    </xrd:client>
    <xrd:service id:objectType="SERVICE">
      <id:xRoadInstance>{service.instance}</id:xRoadInstance>
      <id:memberClass>{service.member_class}</id:memberClass>
      <id:memberCode>{service.member_code}</id:memberCode>{sub}
      <id:serviceCode>{service.service_code}</id:serviceCode>{version}
    </xrd:service>
    <xrd:id>{message_id}</xrd:id>
    <xrd:userId>{user_id}</xrd:userId>
    <xrd:protocolVersion>4.0</xrd:protocolVersion>
  </SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <reg:{service.service_code}>
      {payload}
    </reg:{service.service_code}>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
""".encode("utf-8")
