"""TOML → the frozen dataclasses of ``model.py``, checking everything on the way.

Loading never stops at the first mistake: every problem found in server.toml and in
the federation file it names is collected, and one :class:`ConfError` lists them all,
each with the file, the key (``services[2].url``) and a hint.  Relative paths are
relative to the directory of the file they appear in.
"""
from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import pki
from ..core.envelope import XmlLimits
from ..core.errors import XRoadError
from ..core.identifiers import ClientId, MemberId, ServiceId
from .model import (AccessRule, Federation, Keys, LegacyAlias, Listen, LocalService,
                    Member, MessageLogConf, SecurityServer, ServerConf)

MESSAGELOG_BACKENDS = ("sqlite", "postgresql", "off")
_SPYNE_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


@dataclass
class Problem:
    """One thing wrong in one file, at one key."""

    file: str
    key: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.file}: {self.key}: {self.message}" if self.key else \
            f"{self.file}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConfError(Exception):
    """The configuration cannot be used; ``problems`` says every reason why."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


# --------------------------------------------------------------------------- helpers

# A key's expected type: name shown to the user and a predicate.
_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "str": ("string", lambda v: isinstance(v, str)),
    "int": ("integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "num": ("number", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
    "strlist": ("list of strings",
                lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
    "table": ("table", lambda v: isinstance(v, dict)),
    "tables": ("array of tables ([[...]])",
               lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v)),
}


@dataclass(frozen=True)
class _Key:
    type: str
    required: bool = False
    hint: str = ""


class _File:
    """Problems found in one file, plus the table/key checks every section shares."""

    def __init__(self, path: Path, problems: list[Problem]):
        self.path = path
        self.dir = path.parent
        self.name = str(path)
        self.problems = problems

    def add(self, key: str, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.name, key, message, hint))

    def read_toml(self) -> Optional[dict]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            self.add("", "file not found")
            return None
        except OSError as exc:
            self.add("", f"cannot read file: {exc.strerror}")
            return None
        try:
            return tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            self.add("", "file is not UTF-8 text")
        except tomllib.TOMLDecodeError as exc:
            self.add("", f"TOML syntax error: {exc}")
        return None

    def table(self, value: Any, where: str, spec: dict[str, _Key]) -> dict[str, Any]:
        """Check a table's keys against ``spec``; return the well-typed values."""
        if not isinstance(value, dict):
            self.add(where, f"expected a table, got {_tname(value)}")
            return {}
        out: dict[str, Any] = {}
        for key, val in value.items():
            full = f"{where}.{key}" if where else key
            if key not in spec:
                close = difflib.get_close_matches(key, list(spec), n=1)
                msg = f"unknown key {key!r}"
                if close:
                    msg += f" (did you mean {close[0]!r}?)"
                self.add(full, msg, "known keys: " + ", ".join(sorted(spec)))
                continue
            name, ok = _TYPES[spec[key].type]
            if not ok(val):
                self.add(full, f"expected {name}, got {_tname(val)}", spec[key].hint)
                continue
            out[key] = val
        for key, k in spec.items():
            if k.required and key not in value:
                full = f"{where}.{key}" if where else key
                self.add(full, "missing required key", k.hint)
        return out

    def path_of(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else (self.dir / p)

    def read_file(self, key: str, text: str) -> Optional[bytes]:
        """Read a file named in this file; report if missing/unreadable."""
        p = self.path_of(text)
        try:
            return p.read_bytes()
        except FileNotFoundError:
            self.add(key, f"file not found: {p}",
                     f"relative paths are relative to {self.dir}")
        except IsADirectoryError:
            self.add(key, f"is a directory, not a file: {p}")
        except OSError as exc:
            self.add(key, f"cannot read {p}: {exc.strerror}")
        return None

    def parse(self, key: str, text: str, kind: type, hint: str = ""):
        """Parse an identifier; report and return None if it does not parse."""
        try:
            return kind.parse(text)
        except (ValueError, XRoadError) as exc:
            detail = exc.message if isinstance(exc, XRoadError) else str(exc)
            self.add(key, f"bad {_ID_NAMES[kind]} {text!r}: {detail}", hint)
            return None


_ID_NAMES = {MemberId: "member id", ClientId: "client id", ServiceId: "service id"}


def _tname(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "integer", float: "number", list: "array",
            dict: "table"}.get(type(value), type(value).__name__)


def parse_host_port(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6addr]:port`` → (host, port); ValueError if malformed."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\s\[\]/]+):(\d{1,5})", text.strip())
    if not m:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return host, port


def _host_port(f: _File, key: str, text: str, allow_zero: bool) -> Optional[tuple[str, int]]:
    try:
        host, port = parse_host_port(text)
    except ValueError as exc:
        f.add(key, str(exc), 'write it as "127.0.0.1:8443" or "[::1]:8443"')
        return None
    if port == 0 and not allow_zero:
        f.add(key, "port 0 is not a usable address", "give the port the server listens on")
        return None
    return host, port


def _load_certs(f: _File, key: str, data: bytes) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        f.add(key, f"not a certificate: {exc}", "expected a PEM or DER X.509 certificate")
        return []


def _spki(public_key) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def _issued_by_any(cert: x509.Certificate, cas: list[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
            return True
        except Exception:  # InvalidSignature, TypeError on mismatched key types
            continue
    return False


# --------------------------------------------------------------------------- federation

_FED_TOP = {
    "instance": _Key("str", True, 'the X-Road instance code, e.g. "KG"'),
    "ca_certs": _Key("strlist", True, "PEM files of the CAs that issue members' certificates"),
    "members": _Key("tables", False, "one [[members]] table per member"),
    "servers": _Key("tables", False, "one [[servers]] table per security server"),
}
_FED_MEMBER = {
    "id": _Key("str", True, 'INSTANCE/CLASS/CODE, e.g. "KG/GOV/70000001"'),
    "name": _Key("str", True, "the member's registered name"),
    "subsystems": _Key("strlist", False, "subsystem codes of this member"),
}
_FED_SERVER = {
    "owner": _Key("str", True, "member id of the owner, INSTANCE/CLASS/CODE"),
    "code": _Key("str", True, "server code, unique per owner"),
    "address": _Key("str", True, "HOST:PORT of its server proxy"),
    "auth_certs": _Key("strlist", False, "PEM files of its TLS (auth) certificates"),
    "auth_fingerprints": _Key("strlist", False, "SHA-256 hex of its auth certificates"),
}


@dataclass
class _FedExtra:
    """What the server-level checks need beyond the Federation value."""

    cas: list[x509.Certificate] = field(default_factory=list)


def _load_federation(path: Path, problems: list[Problem]) -> tuple[Optional[Federation], _FedExtra]:
    f = _File(path, problems)
    extra = _FedExtra()
    data = f.read_toml()
    if data is None:
        return None, extra
    top = f.table(data, "", _FED_TOP)
    instance = top.get("instance", "")
    if "instance" in top and not re.fullmatch(r"[A-Za-z0-9'()+,\-.=?]+", instance):
        f.add("instance", f"bad instance code {instance!r}",
              "letters, digits and '()+,-.=? only")

    pem = b""
    for i, ca_path in enumerate(top.get("ca_certs", [])):
        key = f"ca_certs[{i}]"
        raw = f.read_file(key, ca_path)
        if raw is None:
            continue
        certs = _load_certs(f, key, raw)
        for cert in certs:
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
                is_ca = bc.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                f.add(key, f"{cert.subject.rfc4514_string()} is not a CA certificate",
                      "list the CA certificate, not a member's certificate")
                continue
            extra.cas.append(cert)
            pem += cert.public_bytes(serialization.Encoding.PEM)
    if "ca_certs" in top and not top["ca_certs"]:
        f.add("ca_certs", "no CA certificates listed", "list at least one CA PEM file")

    members: dict[MemberId, Member] = {}
    for i, raw in enumerate(top.get("members", [])):
        where = f"members[{i}]"
        m = f.table(raw, where, _FED_MEMBER)
        if "id" not in m:
            continue
        mid = f.parse(f"{where}.id", m["id"], MemberId)
        if mid is None:
            continue
        if instance and mid.instance != instance:
            f.add(f"{where}.id", f"member {mid} is not in instance {instance!r}")
        if mid in members:
            f.add(f"{where}.id", f"member {mid} is listed twice")
            continue
        subs = m.get("subsystems", [])
        for j, sub in enumerate(subs):
            if f.parse(f"{where}.subsystems[{j}]", f"{mid}/{sub}", ClientId) is None:
                continue
        if len(set(subs)) != len(subs):
            f.add(f"{where}.subsystems", "a subsystem is listed twice")
        members[mid] = Member(mid, m.get("name", ""), tuple(dict.fromkeys(subs)))

    servers: list[SecurityServer] = []
    seen: set[tuple[MemberId, str]] = set()
    for i, raw in enumerate(top.get("servers", [])):
        where = f"servers[{i}]"
        s = f.table(raw, where, _FED_SERVER)
        owner = f.parse(f"{where}.owner", s["owner"], MemberId) if "owner" in s else None
        if owner is not None and owner not in members:
            f.add(f"{where}.owner", f"owner {owner} is not a member of the federation",
                  "add it under [[members]]")
        address = s.get("address")
        if address is not None:
            _host_port(f, f"{where}.address", address, allow_zero=False)
        fps: set[str] = set()
        for j, cert_path in enumerate(s.get("auth_certs", [])):
            key = f"{where}.auth_certs[{j}]"
            data = f.read_file(key, cert_path)
            if data is None:
                continue
            for cert in _load_certs(f, key, data):
                fps.add(pki.fingerprint_sha256(cert.public_bytes(serialization.Encoding.DER)))
        for j, fp in enumerate(s.get("auth_fingerprints", [])):
            norm = fp.replace(":", "").strip().lower()
            if not _HEX64.match(norm):
                f.add(f"{where}.auth_fingerprints[{j}]", f"not a SHA-256 fingerprint: {fp!r}",
                      "64 hex digits, as printed by 'tunduk init server'")
                continue
            fps.add(norm)
        if not s.get("auth_certs") and not s.get("auth_fingerprints") and isinstance(raw, dict):
            f.add(f"{where}.auth_certs", "server has no auth certificate",
                  "list its TLS certificate in auth_certs (or auth_fingerprints)")
        if owner is None or "code" not in s or address is None:
            continue
        if (owner, s["code"]) in seen:
            f.add(f"{where}.code", f"server {owner}/{s['code']} is listed twice")
            continue
        seen.add((owner, s["code"]))
        servers.append(SecurityServer(owner, s["code"], address.strip(), frozenset(fps)))

    if "instance" not in top:
        return None, extra
    return Federation(instance, members, tuple(servers), pem, path.resolve()), extra


def load_federation(path: Path) -> Federation:
    """Load and check a federation file on its own; raise ConfError listing all problems."""
    problems: list[Problem] = []
    fed, _ = _load_federation(Path(path), problems)
    if problems or fed is None:
        raise ConfError(problems or [Problem(str(path), "", "cannot load federation")])
    return fed


# --------------------------------------------------------------------------- server

_TOP = {
    "server": _Key("table", True, "[server] names the owner, server code and federation file"),
    "listen": _Key("table"),
    "keys": _Key("table", True, "[keys] names auth_key, auth_cert, sign_key, sign_cert"),
    "services": _Key("tables", False, "one [[services]] table per service"),
    "access": _Key("tables", False, "one [[access]] table per service"),
    "messagelog": _Key("table"),
    "legacy": _Key("tables", False, "one [[legacy]] table per alias"),
    "limits": _Key("table"),
}
_LIMITS = {name: _Key("int", False, hint) for name, hint in (
    ("max_depth", "elements nested in one message, at most"),
    ("max_elements", "elements in one message, at most"),
    ("max_attributes", "attributes on one element, at most"),
    ("max_namespaces", "namespace declarations on one element, at most"),
    ("max_namespaces_in_scope", "namespaces in scope of one element, at most"))}
_SERVER = {
    "owner": _Key("str", True, "member id INSTANCE/CLASS/CODE of the owner"),
    "code": _Key("str", True, "this server's code, as registered in the federation"),
    "clients": _Key("strlist", False, "subsystem codes of the owner hosted here"),
    "data_dir": _Key("str", False, "directory for the message log and state"),
    "federation": _Key("str", True, "path of the shared federation.toml"),
}
_LISTEN = {
    "client_proxy": _Key("str", False, "HOST:PORT for local information systems (HTTP)"),
    "server_proxy": _Key("str", False, "HOST:PORT for other security servers (mutual TLS)"),
    "workers": _Key("int"),
    "threads": _Key("int"),
    "max_connections": _Key("int", False, "connections per listening proxy and worker"),
    "max_connections_per_peer": _Key("int", False, "connections from one IP address"),
    "head_timeout": _Key("num", False, "seconds a request's head may take to arrive"),
    "peer_connection_max_age": _Key("num", False, "seconds a kept peer connection is "
                                    "reused (so that balancers spread load again)"),
}
_KEYS = {name: _Key("str", True, f"path of the {name.replace('_', ' ')} PEM file")
         for name in ("auth_key", "auth_cert", "sign_key", "sign_cert")}
_SERVICE = {
    "subsystem": _Key("str", False, "subsystem of the owner that provides the service"),
    "code": _Key("str", True, "service code, e.g. getBirthRecord"),
    "version": _Key("str", False, 'service version, e.g. "v1"'),
    "url": _Key("str", False, "backend SOAP endpoint URL"),
    "spyne": _Key("str", False, '"package.module:application" of a hosted spyne service'),
    "wsdl_url": _Key("str", False, "backend WSDL URL (for getWsdl)"),
    "timeout": _Key("num", False, "backend timeout in seconds"),
    "title": _Key("str"),
}
_ACCESS = {
    "service": _Key("str", True, 'SUBSYSTEM/SERVICE of this owner, e.g. "registry/getBirthRecord"'),
    "clients": _Key("strlist", True, 'client ids, e.g. ["KG/GOV/70000002/centre"]'),
}
_MESSAGELOG = {
    "backend": _Key("str", False, "sqlite, postgresql or off"),
    "path": _Key("str", False, "sqlite database file"),
    "dsn": _Key("str", False, "PostgreSQL connection string"),
    "tsa_url": _Key("str", False, "URL of the RFC 3161 time-stamping authority"),
    "tsa_cert": _Key("str", False, "PEM certificate of the TSA: tokens must be signed by it"),
    "timestamp_interval": _Key("num"),
    "timestamp_batch": _Key("int"),
    "timestamp_failure_grace": _Key("num"),
}
_LEGACY = {
    "path": _Key("str", True, 'URL path on the client proxy, e.g. "/legacy/birth-record"'),
    "client": _Key("str", True, "client id the alias sends as (one of this server's clients)"),
    "service": _Key("str", True, "full service id INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]"),
}


def _url(f: _File, key: str, text: str) -> None:
    if not re.match(r"^https?://[^/\s]+", text):
        f.add(key, f"not an http(s) URL: {text!r}", 'e.g. "http://127.0.0.1:9000/"')


def _check_cert_and_key(f: _File, keys: dict, cert_key: str, key_key: str,
                        cas: list[x509.Certificate]) -> Optional[x509.Certificate]:
    """Parse a certificate and its private key, check they match and chain to a CA."""
    cert = None
    if cert_key in keys:
        data = f.read_file(f"keys.{cert_key}", keys[cert_key])
        if data is not None:
            certs = _load_certs(f, f"keys.{cert_key}", data)
            cert = certs[0] if certs else None
    pkey = None
    if key_key in keys:
        path = f.path_of(keys[key_key])
        data = f.read_file(f"keys.{key_key}", keys[key_key])
        if data is not None:
            try:
                pkey = serialization.load_pem_private_key(data, password=None)
            except (ValueError, TypeError) as exc:
                # Never echo key material: the message names the file only.
                f.add(f"keys.{key_key}", f"not an unencrypted PEM private key: {path}",
                      f"({type(exc).__name__}) create keys with 'tunduk init server'")
            else:
                if path.stat().st_mode & 0o077:
                    f.add(f"keys.{key_key}", f"private key {path} is readable by others",
                          f"chmod 600 {path}")
    if cert is not None and pkey is not None and _spki(cert.public_key()) != _spki(pkey.public_key()):
        f.add(f"keys.{key_key}", f"does not match the certificate in keys.{cert_key}",
              "the key and certificate must be issued together")
    if cert is not None and cas and not _issued_by_any(cert, cas):
        f.add(f"keys.{cert_key}", f"{cert.subject.rfc4514_string()} is not issued by a CA "
              "listed in the federation's ca_certs")
    return cert


# A certificate that expires within this many days is noted by check-conf and run.
EXPIRY_NOTICE_DAYS = 30
_RENEW = {
    "keys.sign_cert": "issue a new signing certificate from a federation CA "
                      "('tunduk init server' with a development CA)",
    "keys.auth_cert": "issue a new TLS certificate ('tunduk init server' with a "
                      "development CA) and register it in auth_certs of this server in "
                      "the federation file",
}


@dataclass
class _Dates:
    """The time the own certificates are checked against, and the notes left for
    certificates that are still valid but expire soon."""

    now: datetime
    notes: list[Problem] = field(default_factory=list)

    def check(self, f: _File, key: str, cert: Optional[x509.Certificate]) -> None:
        """A problem if ``cert`` is not valid now, a note if it expires soon: peers
        refuse an expired certificate, and they would be the first to notice."""
        if cert is None:
            return
        subject = cert.subject.rfc4514_string()
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if self.now < start:
            f.add(key, f"certificate {subject} is not valid before {start:%Y-%m-%d %H:%M} "
                  "UTC", "check this machine's clock, or wait until then")
        elif self.now > end:
            f.add(key, f"certificate {subject} expired on {end:%Y-%m-%d %H:%M} UTC",
                  _RENEW[key])
        elif end - self.now <= timedelta(days=EXPIRY_NOTICE_DAYS):
            days = (end - self.now).days
            self.notes.append(Problem(
                f.name, key, f"certificate {subject} expires on {end:%Y-%m-%d %H:%M} UTC "
                f"(in {days} day{'s' if days != 1 else ''})",
                _RENEW[key] + " before then"))


def _check_cert_roles(f: _File, auth_cert: Optional[x509.Certificate],
                      sign_cert: Optional[x509.Certificate],
                      fed: Optional[Federation]) -> None:
    """The signing and the TLS certificate are two certificates, each fit for its own
    role: a TLS key that could sign messages would make any holder of it able to sign
    for the member."""
    if auth_cert is not None and auth_cert == sign_cert:
        f.add("keys.sign_cert", "is the same certificate as keys.auth_cert",
              "a server needs a signing and a TLS certificate of its own: 'tunduk init "
              "server' makes both (sign.pem, auth.pem)")
        return
    swapped = (auth_cert is not None and sign_cert is not None
               and pki.sign_cert_problem(auth_cert) is None
               and pki.auth_cert_problem(sign_cert) is None)
    swap_hint = ("keys.sign_cert and keys.auth_cert look swapped: exchange them, and "
                 "keys.sign_key and keys.auth_key with them")
    if sign_cert is not None:
        why = pki.sign_cert_problem(sign_cert)
        if why:
            f.add("keys.sign_cert", f"{sign_cert.subject.rfc4514_string()} {why}",
                  swap_hint if swapped else "give the member's signing certificate "
                  "(sign.pem from 'tunduk init server'), issued with nonRepudiation")
        fp = pki.fingerprint_sha256(sign_cert.public_bytes(serialization.Encoding.DER))
        for server in fed.servers if fed is not None else ():
            if fp in server.auth_cert_sha256:
                f.add("keys.sign_cert", f"is registered as the TLS (auth) certificate of "
                      f"{server} in the federation",
                      "a signing certificate must not be a TLS certificate: give the "
                      "signing certificate here, or remove this one from that server's "
                      f"auth_certs in {fed.source}")
    if auth_cert is not None:
        why = pki.auth_cert_problem(auth_cert)
        if why:
            f.add("keys.auth_cert", f"{auth_cert.subject.rfc4514_string()} {why}",
                  swap_hint if swapped else "give this server's TLS certificate "
                  "(auth.pem from 'tunduk init server'), issued with extended key "
                  "usages serverAuth and clientAuth")


def load_server_conf(path: Path) -> ServerConf:
    """Load server.toml and the federation file it names; raise ConfError listing every
    problem in either file.

    The own certificates' dates are not checked here (``check_server_conf`` does):
    ``tunduk log`` must still read the log of a server whose certificate expired."""
    return _load_server_conf(Path(path), None)


def check_server_conf(path: Path, *, now: Optional[datetime] = None
                      ) -> tuple[ServerConf, list[Problem]]:
    """``load_server_conf`` plus the own certificates' dates, for check-conf and run:
    an expired (or not yet valid) certificate is a problem; one expiring within
    EXPIRY_NOTICE_DAYS is returned as a note, with the configuration."""
    dates = _Dates(now or datetime.now(timezone.utc))
    return _load_server_conf(Path(path), dates), dates.notes


def _load_server_conf(path: Path, dates: Optional[_Dates]) -> ServerConf:
    problems: list[Problem] = []
    f = _File(path, problems)
    data = f.read_toml()
    if data is None:
        raise ConfError(problems)
    top = f.table(data, "", _TOP)
    srv = f.table(top["server"], "server", _SERVER) if "server" in top else {}

    owner = f.parse("server.owner", srv["owner"], MemberId) if "owner" in srv else None
    code = srv.get("code")
    if code is not None and not re.fullmatch(r"[A-Za-z0-9'()+,\-.=?]+", code):
        f.add("server.code", f"bad server code {code!r}", "letters, digits and '()+,-.=? only")
    data_dir = f.path_of(srv.get("data_dir", "var"))

    fed, extra = (None, _FedExtra())
    if "federation" in srv:
        fed_path = f.path_of(srv["federation"]).resolve()
        if not fed_path.exists():
            f.add("server.federation", f"file not found: {fed_path}",
                  f"relative paths are relative to {f.dir}")
        else:
            fed, extra = _load_federation(fed_path, problems)

    # --- this server's identity in the federation
    member = fed.members.get(owner) if fed is not None and owner is not None else None
    if fed is not None and owner is not None and member is None:
        f.add("server.owner", f"owner {owner} is not a member of the federation",
              f"add it under [[members]] in {fed.source}")
    clients: list[ClientId] = [ClientId(owner.instance, owner.member_class,
                                        owner.member_code)] if owner else []
    for i, sub in enumerate(srv.get("clients", [])):
        key = f"server.clients[{i}]"
        if owner is None:
            continue
        cid = f.parse(key, f"{owner}/{sub}", ClientId, "a subsystem code such as \"registry\"")
        if cid is None:
            continue
        if member is not None and sub not in member.subsystems:
            f.add(key, f"{owner} has no subsystem {sub!r} in the federation",
                  "known subsystems: " + (", ".join(member.subsystems) or "none"))
        if cid in clients:
            f.add(key, f"subsystem {sub!r} is listed twice")
            continue
        clients.append(cid)
    this_server = None
    if fed is not None and owner is not None and code is not None:
        this_server = next((s for s in fed.servers if s.owner == owner and s.code == code), None)
        if this_server is None:
            f.add("server.code", f"server {owner}/{code} is not registered in the federation",
                  f"add a [[servers]] entry to {fed.source} (see 'tunduk init server')")

    # --- listen
    raw_listen = top.get("listen")
    if isinstance(raw_listen, dict) and "engine" in raw_listen:
        f.add("listen.engine", "this key was removed: every request is served on the "
              "event loop now", "delete the line engine = ... from [listen]")
        raw_listen = {k: v for k, v in raw_listen.items() if k != "engine"}
    lst = f.table(raw_listen, "listen", _LISTEN) if "listen" in top else {}
    listen_kw: dict[str, Any] = {}
    for name in ("client_proxy", "server_proxy"):
        if name in lst:
            hp = _host_port(f, f"listen.{name}", lst[name], allow_zero=True)
            if hp:
                listen_kw[name] = hp
    for name in ("workers", "threads", "max_connections", "max_connections_per_peer",
                 "head_timeout", "peer_connection_max_age"):
        if name in lst:
            if lst[name] <= 0 or (isinstance(lst[name], int) and lst[name] < 1):
                f.add(f"listen.{name}", "must be positive (integers: at least 1)")
            else:
                listen_kw[name] = lst[name]
    if (listen_kw.get("client_proxy") and listen_kw.get("client_proxy") ==
            listen_kw.get("server_proxy") and listen_kw["client_proxy"][1] != 0):
        f.add("listen.server_proxy", "same address as listen.client_proxy")

    # --- keys
    keys = f.table(top["keys"], "keys", _KEYS) if "keys" in top else {}
    auth_cert = _check_cert_and_key(f, keys, "auth_cert", "auth_key", extra.cas)
    sign_cert = _check_cert_and_key(f, keys, "sign_cert", "sign_key", extra.cas)
    _check_cert_roles(f, auth_cert, sign_cert, fed)
    if dates is not None:
        dates.check(f, "keys.auth_cert", auth_cert)
        dates.check(f, "keys.sign_cert", sign_cert)
    if sign_cert is not None and owner is not None:
        serial = pki.cert_serial_number_attr(sign_cert)
        if serial != str(owner):
            f.add("keys.sign_cert", f"certificate serialNumber is {serial!r}, "
                  f"expected the owner id {str(owner)!r}",
                  "the signing certificate must be issued to this server's owner")
    if auth_cert is not None and this_server is not None:
        fp = pki.fingerprint_sha256(auth_cert.public_bytes(serialization.Encoding.DER))
        if fp not in this_server.auth_cert_sha256:
            f.add("keys.auth_cert", f"fingerprint {fp} is not registered for server "
                  f"{owner}/{code} in the federation",
                  f"add this certificate to auth_certs of that server in {fed.source}")

    # --- services
    own_subs = {c.subsystem for c in clients}
    services: dict[ServiceId, LocalService] = {}
    for i, raw in enumerate(top.get("services", [])):
        where = f"services[{i}]"
        s = f.table(raw, where, _SERVICE)
        sub = s.get("subsystem")
        if sub is not None and owner is not None and sub not in own_subs:
            f.add(f"{where}.subsystem", f"{sub!r} is not one of this server's clients",
                  "add it to [server] clients")
        has_url, has_spyne = "url" in s, "spyne" in s
        if has_url == has_spyne and isinstance(raw, dict):
            f.add(where, "needs exactly one backend: url or spyne" if not has_url else
                  "has both url and spyne; give exactly one",
                  'url = "http://host:port/path" or spyne = "package.module:application"')
        if has_url:
            _url(f, f"{where}.url", s["url"])
        if has_spyne and not _SPYNE_REF.match(s["spyne"]):
            f.add(f"{where}.spyne", f"not a module:attribute reference: {s['spyne']!r}",
                  'e.g. "tunduk.server.services.civil_registry:application"')
        if "wsdl_url" in s:
            _url(f, f"{where}.wsdl_url", s["wsdl_url"])
        if "timeout" in s and s["timeout"] <= 0:
            f.add(f"{where}.timeout", "must be more than 0 seconds")
        if owner is None or "code" not in s:
            continue
        ver = s.get("version")
        text = f"{owner}/{sub or ''}/{s['code']}" + (f"/{ver}" if ver else "")
        sid = f.parse(f"{where}.code", text, ServiceId)
        if sid is None:
            continue
        if sid.without_version() in services:
            f.add(f"{where}.code", f"service {sid.without_version()} is configured twice",
                  "a service is identified without its version; keep one entry")
            continue
        services[sid.without_version()] = LocalService(
            sid, s.get("url"), s.get("spyne"), s.get("wsdl_url"),
            float(s.get("timeout", 30.0)), s.get("title"))

    # --- access rules
    access: list[AccessRule] = []
    for i, raw in enumerate(top.get("access", [])):
        where = f"access[{i}]"
        a = f.table(raw, where, _ACCESS)
        sid = _access_service(f, f"{where}.service", a.get("service"), owner)
        if sid is not None and sid not in services:
            f.add(f"{where}.service", f"unknown service {sid}",
                  "configured services: " + (", ".join(str(k) for k in services) or "none"))
        allowed: set[ClientId] = set()
        for j, text in enumerate(a.get("clients", [])):
            cid = f.parse(f"{where}.clients[{j}]", text, ClientId,
                          'INSTANCE/CLASS/CODE[/SUBSYSTEM], e.g. "KG/GOV/70000002/centre"')
            if cid is None:
                continue
            if fed is not None and not fed.has_client(cid):
                f.add(f"{where}.clients[{j}]", f"client {cid} is not known to the federation",
                      "members and subsystems are listed in the federation file")
            allowed.add(cid)
        if "clients" in a and not a["clients"]:
            f.add(f"{where}.clients", "empty list admits nobody", "remove the rule or add clients")
        if sid is not None:
            access.append(AccessRule(sid, frozenset(allowed)))

    # --- message log
    ml = f.table(top["messagelog"], "messagelog", _MESSAGELOG) if "messagelog" in top else {}
    backend = ml.get("backend", "sqlite")
    if backend not in MESSAGELOG_BACKENDS:
        close = difflib.get_close_matches(backend, MESSAGELOG_BACKENDS, n=1)
        f.add("messagelog.backend", f"unknown backend {backend!r}"
              + (f" (did you mean {close[0]!r}?)" if close else ""),
              "one of: " + ", ".join(MESSAGELOG_BACKENDS))
    if backend == "postgresql" and not ml.get("dsn"):
        f.add("messagelog.dsn", "backend postgresql needs a dsn",
              'e.g. dsn = "postgresql://tunduk@localhost/tunduk"')
    if "tsa_url" in ml:
        _url(f, "messagelog.tsa_url", ml["tsa_url"])
    tsa_cert_der = None
    if "tsa_cert" in ml:
        pem = f.read_file("messagelog.tsa_cert", ml["tsa_cert"])
        if pem is not None:
            try:
                tsa_cert_der = x509.load_pem_x509_certificate(pem).public_bytes(
                    serialization.Encoding.DER)
            except ValueError:
                f.add("messagelog.tsa_cert", "not a PEM certificate",
                      "give the TSA's certificate (BEGIN CERTIFICATE)")
    elif "tsa_url" in ml:
        f.add("messagelog.tsa_cert", "tsa_url is set but tsa_cert is not",
              "give the TSA's certificate so forged time-stamps are refused")
    for name in ("timestamp_interval", "timestamp_batch", "timestamp_failure_grace"):
        if name in ml and ml[name] <= 0:
            f.add(f"messagelog.{name}", "must be more than 0")
    ml_path = f.path_of(ml["path"]) if "path" in ml else (
        data_dir / "messagelog.sqlite3" if backend == "sqlite" else None)
    messagelog = MessageLogConf(
        backend=backend, path=ml_path, dsn=ml.get("dsn"), tsa_url=ml.get("tsa_url"),
        tsa_cert_der=tsa_cert_der,
        timestamp_interval=float(ml.get("timestamp_interval", 60.0)),
        timestamp_batch=int(ml.get("timestamp_batch", 10000)),
        timestamp_failure_grace=float(ml.get("timestamp_failure_grace", 1800.0)))

    # --- legacy aliases
    legacy: list[LegacyAlias] = []
    paths: set[str] = set()
    for i, raw in enumerate(top.get("legacy", [])):
        where = f"legacy[{i}]"
        x = f.table(raw, where, _LEGACY)
        lpath = x.get("path")
        if lpath is not None:
            if not lpath.startswith("/"):
                f.add(f"{where}.path", f"must start with '/': {lpath!r}")
            elif lpath in paths:
                f.add(f"{where}.path", f"path {lpath!r} is used twice")
            paths.add(lpath)
        cid = f.parse(f"{where}.client", x["client"], ClientId) if "client" in x else None
        if cid is not None and owner is not None and cid not in clients:
            f.add(f"{where}.client", f"{cid} is not one of this server's clients",
                  "legacy systems send as a client hosted on this server")
        sid = f.parse(f"{where}.service", x["service"], ServiceId,
                      "INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION]") if "service" in x else None
        if sid is not None and fed is not None and not fed.has_client(sid.provider):
            f.add(f"{where}.service", f"provider {sid.provider} is not known to the federation")
        if lpath is not None and cid is not None and sid is not None:
            legacy.append(LegacyAlias(lpath, cid, sid))

    # --- limits
    limits = f.table(top["limits"], "limits", _LIMITS) if "limits" in top else {}
    for name, value in limits.items():
        if value < 1:
            f.add(f"limits.{name}", "must be at least 1")
    xml_limits = XmlLimits(**{k: v for k, v in limits.items() if v >= 1})

    if problems:
        raise ConfError(problems)
    assert owner is not None and code is not None and fed is not None
    return ServerConf(
        owner=owner, server_code=code, clients=tuple(clients), xml_limits=xml_limits,
        listen=Listen(**listen_kw),
        keys=Keys(*(f.path_of(keys[n]) for n in ("auth_key", "auth_cert", "sign_key", "sign_cert"))),
        federation=fed, services=services, access=tuple(access), data_dir=data_dir,
        messagelog=messagelog, legacy=tuple(legacy), source=path.resolve())


def _access_service(f: _File, key: str, text: Optional[str],
                    owner: Optional[MemberId]) -> Optional[ServiceId]:
    """``SUBSYSTEM/SERVICE`` of this owner (``/SERVICE`` for a member-level service), or
    a full service id that must belong to the owner.  The version is dropped."""
    if text is None or owner is None:
        return None
    parts = text.strip().split("/")
    if len(parts) == 2:
        sid = f.parse(key, f"{owner}/{parts[0]}/{parts[1]}", ServiceId,
                      'SUBSYSTEM/SERVICE, e.g. "registry/getBirthRecord"')
    else:
        sid = f.parse(key, text, ServiceId, 'SUBSYSTEM/SERVICE, e.g. "registry/getBirthRecord"')
        if sid is not None and sid.member != owner:
            f.add(key, f"service {sid} is not provided by this server's owner {owner}",
                  "access rules are for this server's own services")
            return None
    return sid.without_version() if sid is not None else None
