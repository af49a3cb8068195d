"""Side by side: `tunduk run` (cheroot threads) and the asyncio prototype
(bench/prototypes/asyncio_edges.py: one event loop per process).

    .venv/bin/python -m bench.prototypes.compare_asyncio [--rounds 3] [--duration 8]
        [--warmup 2] [--concurrency 8] [--check-only]

One federation (log off, EC keys), one backend (bench.apps backend, 16 threads); per
round each variant starts both servers on the same confs/ports, is checked, warmed up,
loaded with wrk and measured (user+sys of both server processes / exchanges).
"""
from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tunduk.server.devfed import KeySource, build_federation, create_dev_ca

from ..payload import CONTENT_TYPE, SOAP_ACTION, echo_request
from ..procs import Proc
from ..scenarios import Backend, Settings, _tunduk_argv, measure


def check_echo(url: str) -> bytes:
    """One echo through the servers: 200, echoResult and the xroad requestHash header."""
    body = echo_request()
    conn = http.client.HTTPConnection("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/")),
                                      timeout=30)
    try:
        conn.request("POST", "/", body=body,
                     headers={"Content-Type": CONTENT_TYPE, "SOAPAction": SOAP_ACTION})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or b"echoResult" not in data or b"requestHash" not in data:
        raise RuntimeError(f"bad echo answer {resp.status}: {data[:800]!r}")
    return data


class Pair:
    def __init__(self, files, variant: str, base: Path, n: int) -> None:
        p, c = files.provider, files.consumer
        if variant == "tunduk":
            argv = lambda conf, mode: [*_tunduk_argv(), "run", str(conf), "--workers", "1"]
        else:
            argv = lambda conf, mode: [sys.executable, "-m", "bench.prototypes.asyncio_edges",
                                       mode, str(conf)]
        self.provider = Proc("provider", argv(p.server_toml, "provider"),
                             log=base / f"{n:02d}-{variant}-provider.log")
        self.provider.wait_listening([p.server_port])
        self.consumer = Proc("consumer", argv(c.server_toml, "consumer"),
                             log=base / f"{n:02d}-{variant}-consumer.log")
        self.consumer.wait_listening([c.client_port])
        self.url = f"http://127.0.0.1:{c.client_port}/"

    def cpu_times(self):
        a, b = self.provider.cpu_times(), self.consumer.cpu_times()
        return a[0] + b[0], a[1] + b[1]

    def stop(self) -> None:
        self.consumer.stop()
        self.provider.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--check-only", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tunduk-asyncio-proto-"))
    ca = create_dev_ca(work / "ca")
    keys = KeySource(ca, work / "keys")
    backend = Backend(work, "backend", threads=16)
    files = build_federation(
        work / "fed", ca, keys=keys, key_type="ec", messagelog={"backend": "off"},
        services=[{"subsystem": "registry", "code": "echo", "version": "v1",
                   "url": backend.url, "title": "echo (benchmark)"}],
        access=[{"service": "registry/echo", "clients": ["KG/GOV/70000002/centre"]}])
    settings = Settings(a.duration, a.warmup, a.concurrency, "wrk")
    rows: dict[str, list] = {"tunduk": [], "proto": []}
    n = 0
    try:
        if a.check_only:
            answers = {}
            for v in ("tunduk", "proto"):
                n += 1
                pair = Pair(files, v, work, n)
                try:
                    data = answers[v] = check_echo(pair.url)
                    i = data.find(b"requestHash")
                    print(f"{v}: OK {len(data)} bytes; ...{data[i - 20:i + 160].decode()}...")
                finally:
                    pair.stop()
            same = answers["tunduk"] == answers["proto"]
            print("answers byte-identical:", same)
            return 0 if same else 1
        for r in range(1, a.rounds + 1):
            for v in ("tunduk", "proto"):
                n += 1
                pair = Pair(files, v, work, n)
                try:
                    check_echo(pair.url)
                    m = measure(pair.url, settings, cpu_of=pair.cpu_times)
                finally:
                    pair.stop()
                if v == "proto":
                    for f in sorted(work.glob(f"{n:02d}-proto-*.log")):
                        stats = [l for l in f.read_text().splitlines() if "stats" in l]
                        print("   ", f.name, stats[-1] if stats else "(no stats)")
                L = m.load
                rows[v].append((L.rps, m.cpu_ms_per_exchange, m.cpu_user_ms_per_exchange,
                                m.cpu_sys_ms_per_exchange, L.p50_ms, L.p99_ms, L.errors))
                print(f"[{time.strftime('%H:%M:%S')}] round {r} {v:7s} {L.rps:8.1f} req/s  "
                      f"cpu {m.cpu_ms_per_exchange:6.3f} ms/exch (user "
                      f"{m.cpu_user_ms_per_exchange:.3f} sys {m.cpu_sys_ms_per_exchange:.3f})"
                      f"  p50 {L.p50_ms:.2f} p99 {L.p99_ms:.2f} ms  errors {L.errors}"
                      f"  n={L.requests}", flush=True)
        print(f"\nmedians over {a.rounds} rounds (c={a.concurrency}, {a.duration:g} s, "
              f"warm-up {a.warmup:g} s, log off, EC):")
        med = {}
        for v, rs in rows.items():
            med[v] = [statistics.median(x[i] for x in rs) for i in range(6)]
            print(f"  {v:7s} {med[v][0]:8.1f} req/s  cpu {med[v][1]:.3f} ms/exch (user "
                  f"{med[v][2]:.3f} sys {med[v][3]:.3f})  p50 {med[v][4]:.2f} "
                  f"p99 {med[v][5]:.2f} ms")
        ratios = [p[1] / t[1] for t, p in zip(rows["tunduk"], rows["proto"])]
        print(f"  proto/tunduk CPU per exchange, median of per-round ratios: "
              f"{statistics.median(ratios):.3f}; req/s ratio "
              f"{statistics.median(p[0] / t[0] for t, p in zip(rows['tunduk'], rows['proto'])):.3f}")
    finally:
        backend.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
