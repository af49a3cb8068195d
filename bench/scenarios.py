"""The load scenarios: processes on 127.0.0.1 driven by the load generator.

* direct        wrk → backend (cheroot serving the spyne civil registry)
* plain         wrk → pass-through proxy A → proxy B → backend (tunduk's HTTP pool)
* tunduk        wrk → consumer's security server → provider's → backend
                (``tunduk run`` processes; message log off / sqlite / postgresql)
* slow          the same with a backend that sleeps 20 ms per call
* ceiling       wrk → a static answer: what the generator itself can drive
"""
from __future__ import annotations

import http.client
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tunduk.server.devfed import DevCA, FederationFiles, KeySource, build_federation

from .loadgen import LoadResult, run_load
from .payload import CONTENT_TYPE, SOAP_ACTION, echo_request
from .procs import Proc, free_port, python_argv


@dataclass
class Settings:
    duration: float
    warmup: float
    concurrency: int = 8
    generator: str = "auto"


def check_once(url: str, body: bytes) -> None:
    """One request before the load: the scenario must really answer the echo."""
    from urllib.parse import urlsplit
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("POST", u.path or "/", body=body,
                     headers={"Content-Type": CONTENT_TYPE, "SOAPAction": SOAP_ACTION})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or b"echoResult" not in data:
        raise RuntimeError(f"{url} did not answer the echo request ({resp.status}): "
                           f"{data[:600]!r}")


class Backend:
    """``python -m bench.apps backend|static`` in its own process."""

    def __init__(self, workdir: Path, name: str, *, delay_ms: float = 0.0,
                 threads: int = 16, kind: str = "backend") -> None:
        self.port = free_port()
        argv = python_argv("-m", "bench.apps", kind, str(self.port), "--threads",
                           str(threads))
        if delay_ms:
            argv += ["--delay-ms", str(delay_ms)]
        self.proc = Proc(name, argv, log=workdir / f"{name}.log")
        self.proc.wait_listening([self.port])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        self.proc.stop()


def _add(x: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
    return x[0] + y[0], x[1] + y[1]


class PlainProxies:
    """Two pass-through proxies in series in front of ``upstream``."""

    def __init__(self, workdir: Path, upstream: str, kind: str = "aioproxy") -> None:
        """``kind``: "aioproxy" (the security servers' HTTP stack, no security work)."""
        self.port_b, self.port_a = free_port(), free_port()
        self.b = Proc("proxy-b", python_argv("-m", "bench.apps", kind, str(self.port_b),
                                             upstream), log=workdir / "proxy-b.log")
        self.b.wait_listening([self.port_b])
        self.a = Proc("proxy-a", python_argv("-m", "bench.apps", kind, str(self.port_a),
                                             f"http://127.0.0.1:{self.port_b}/"),
                      log=workdir / "proxy-a.log")
        self.a.wait_listening([self.port_a])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port_a}/"

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) seconds of both proxies."""
        return _add(self.a.cpu_times(), self.b.cpu_times())

    def stop(self) -> None:
        self.a.stop()
        self.b.stop()


def _tunduk_argv() -> list[str]:
    exe = Path(sys.executable).parent / "tunduk"
    if exe.exists():
        return [str(exe)]
    return python_argv("-c", "import sys; from tunduk.server.cli import main; "
                             "sys.exit(main())")


class Federation:
    """Two ``tunduk run`` processes: the consumer's and the provider's security server."""

    def __init__(self, base: Path, ca: DevCA, keys: KeySource, backend_url: str, *,
                 messagelog: dict, key_type: str, workers: int = 1,
                 argv_for=None) -> None:
        """``argv_for(server_toml, workers)``: how to start a server (``tunduk run``)."""
        argv_for = argv_for or (lambda conf, w: [*_tunduk_argv(), "run", str(conf),
                                                 "--workers", str(w)])
        self.files: FederationFiles = build_federation(
            base, ca, keys=keys, key_type=key_type, messagelog=messagelog,
            services=[{"subsystem": "registry", "code": "echo", "version": "v1",
                       "url": backend_url, "title": "echo (benchmark)"}],
            access=[{"service": "registry/echo", "clients": ["KG/GOV/70000002/centre"]}])
        p, c = self.files.provider, self.files.consumer
        self.provider = Proc("provider", argv_for(p.server_toml, workers),
                             log=base / "provider.log")
        try:
            self.provider.wait_listening([p.server_port, p.client_port])
            self.consumer = Proc("consumer", argv_for(c.server_toml, workers),
                                 log=base / "consumer.log")
            self.consumer.wait_listening([c.client_port, c.server_port])
        except Exception:
            self.provider.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.files.consumer.client_port}/"

    def cpu_times(self) -> tuple[float, float]:
        """(user, system) seconds of both security servers (with their workers)."""
        return _add(self.provider.cpu_times(), self.consumer.cpu_times())

    def stop(self) -> None:
        self.consumer.stop()
        self.provider.stop()


@dataclass
class Measured:
    load: LoadResult
    cpu_ms_per_exchange: Optional[float] = None
    cpu_user_ms_per_exchange: Optional[float] = None
    cpu_sys_ms_per_exchange: Optional[float] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = self.load.to_dict()
        for name in ("cpu_ms_per_exchange", "cpu_user_ms_per_exchange",
                     "cpu_sys_ms_per_exchange"):
            v = getattr(self, name)
            d[name] = None if v is None else round(v, 3)
        d.update(self.extra)
        return d


def measure(url: str, s: Settings, *, concurrency: Optional[int] = None,
            cpu_of: Optional[Callable[[], tuple[float, float]]] = None) -> Measured:
    """Check one answer, warm up, then load ``url``; CPU of ``cpu_of`` over the load.

    ``cpu_of`` returns (user, system) CPU seconds (``Federation.cpu_times``)."""
    body = echo_request()
    c = concurrency or s.concurrency
    check_once(url, body)
    if s.warmup > 0:
        run_load(url, body, concurrency=c, duration=s.warmup, content_type=CONTENT_TYPE,
                 soap_action=SOAP_ACTION, generator=s.generator)
    before = cpu_of() if cpu_of else None
    load = run_load(url, body, concurrency=c, duration=s.duration,
                    content_type=CONTENT_TYPE, soap_action=SOAP_ACTION,
                    generator=s.generator)
    m = Measured(load)
    if cpu_of and load.requests:
        after = cpu_of()
        per = 1000 / load.requests
        m.cpu_user_ms_per_exchange = (after[0] - before[0]) * per
        m.cpu_sys_ms_per_exchange = (after[1] - before[1]) * per
        m.cpu_ms_per_exchange = m.cpu_user_ms_per_exchange + m.cpu_sys_ms_per_exchange
    return m
