"""``python -m bench``: run the scenarios, print one table, write the JSON results."""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

from . import report

LOAD = ("ceiling", "direct", "plain", "aiohttp", "off", "sqlite", "postgresql", "slow",
        "scaling")
MICRO = ("sign", "parse", "mlog", "pipeline")
# measured side by side: with --rounds N each runs N times, round by round
# ("aiohttp": the plain proxies on aiohttp, against tunduk's own HTTP stack)
INTERLEAVED = ("direct", "plain", "aiohttp", "off", "sqlite", "postgresql")
ALL = LOAD + MICRO

PROFILES = {
    # load seconds per run, warm-up seconds, micro-benchmark seconds per figure,
    # interleaved rounds of the main comparison
    "quick": {"duration": 5.0, "warmup": 1.0, "micro": 1.0, "max_ops": 50_000,
              "rounds": 1},
    "full": {"duration": 20.0, "warmup": 3.0, "micro": 4.0, "max_ops": 500_000,
             "rounds": 3},
}
PIPELINE_REPEAT = 5
# threads at once in the threaded in-memory pipeline row (the servers default to 16)
PIPELINE_THREADS = 8
SLOW_CONCURRENCY = (1, 8, 32)
SLOW_DELAY_MS = 20.0
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    p.add_argument("--duration", type=float, help="seconds of load per measured run")
    p.add_argument("--warmup", type=float, help="seconds of load before each run")
    p.add_argument("--micro-seconds", type=float,
                   help="seconds per micro-benchmark figure")
    p.add_argument("--rounds", type=int,
                   help="interleaved rounds of " + ",".join(INTERLEAVED) + " (round 1 runs "
                        "each once in that order, then round 2...); figures are medians, "
                        "ratios the median of the per-round ratios (quick 1, full 3)")
    p.add_argument("--only", help="comma-separated scenarios: " + ",".join(ALL))
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--key-types", default="ec,rsa",
                   help="signing key types, first one for all scenarios (ec,rsa)")
    p.add_argument("--workers", default="1,2,4", help="worker counts for 'scaling'")
    p.add_argument("--slow-log", default="sqlite", choices=("off", "sqlite"),
                   help="message log of the tunduk servers in the slow-backend scenario")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    a = p.parse_args(argv)
    prof = PROFILES[a.profile]
    a.duration = a.duration if a.duration is not None else prof["duration"]
    a.warmup = a.warmup if a.warmup is not None else prof["warmup"]
    a.micro_seconds = a.micro_seconds if a.micro_seconds is not None else prof["micro"]
    a.max_ops = prof["max_ops"]
    a.rounds = a.rounds if a.rounds is not None else prof["rounds"]
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    a.selected = tuple(s.strip() for s in a.only.split(",")) if a.only else ALL
    bad = [s for s in a.selected if s not in ALL]
    if bad:
        p.error(f"unknown scenario(s) {bad}; choose from {','.join(ALL)}")
    a.key_types = tuple(k.strip() for k in a.key_types.split(",") if k.strip())
    if not a.key_types or any(k not in ("ec", "rsa") for k in a.key_types):
        p.error("--key-types takes ec and/or rsa")
    a.workers = tuple(int(w) for w in a.workers.split(","))
    return a


# ------------------------------------------------------------------ machine facts

def _git(*args: str) -> str:
    try:
        r = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                           cwd=Path(__file__).resolve().parent)
        return r.stdout.strip() if r.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict:
    import lxml.etree
    import xmlsec
    libs = {}
    for name in ("lxml", "xmlsec", "cryptography", "spyne", "cheroot", "psycopg2-binary"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    libs["libxml2"] = ".".join(map(str, lxml.etree.LIBXML_VERSION))
    libs["libxmlsec1"] = ".".join(map(str, xmlsec.get_libxmlsec_version()))
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        r = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
        wrk_version = (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else ""
    return {"cores": os.cpu_count(), "cpu_model": cpu, "python": sys.version.split()[0],
            "implementation": platform.python_implementation(),
            "platform": platform.platform(), "libraries": libs, "wrk": wrk_version}


# ---------------------------------------------------------------------- running

class Run:
    """One benchmark run: shared CA and keys, the fast backend, PostgreSQL if needed."""

    def __init__(self, a: argparse.Namespace, work: Path) -> None:
        from tunduk.server.devfed import KeySource, create_dev_ca

        from .scenarios import Settings
        self.a, self.work = a, work
        self.settings = Settings(a.duration, a.warmup, a.concurrency, a.generator)
        self.ca = create_dev_ca(work / "ca")
        self.keys = KeySource(self.ca, work / "keys")
        self.results: dict = {"scenarios": {}, "micro": {}, "skipped": {}, "errors": {}}
        self._n = 0
        self._backend = None
        self._pg = None
        self._pg_problem: Optional[str] = None

    def progress(self, text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def backend(self):
        from .scenarios import Backend
        if self._backend is None:
            self._backend = Backend(self.work, "backend", threads=16)
        return self._backend

    def postgres(self) -> Optional[str]:
        """DSN of a fresh database, or None (reason in self._pg_problem)."""
        if self._pg is None and self._pg_problem is None:
            from .pg import BenchPostgres
            pg = BenchPostgres()
            self.progress("starting PostgreSQL")
            self._pg_problem = pg.start()
            if self._pg_problem is None:
                self._pg = pg
        return self._pg.new_database() if self._pg else None

    def _dir(self, name: str) -> Path:
        self._n += 1
        return self.work / f"{self._n:02d}-{name}"

    def federation(self, name: str, backend_url: str, log: str, key_type: str,
                   workers: int = 1):
        from .scenarios import Federation
        if log == "off":
            ml = {"backend": "off"}
        elif log == "sqlite":
            ml = {"backend": "sqlite"}
        else:
            dsn = self.postgres()
            if dsn is None:
                raise _Skip(self._pg_problem or "PostgreSQL unavailable")
            ml = {"backend": "postgresql", "dsn": dsn}
        return Federation(self._dir(name), self.ca, self.keys, backend_url, messagelog=ml,
                          key_type=key_type, workers=workers)

    def guarded(self, name: str, fn: Callable[[], object]) -> object:
        """``fn()``'s result; None when it was skipped or failed (recorded by name)."""
        self.progress(name)
        try:
            return fn()
        except _Skip as s:
            self.results["skipped"][name] = str(s)
        except Exception as exc:
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}"
            self.progress(f"{name} FAILED: {exc}")
            traceback.print_exc(file=sys.stderr)
        return None

    # -- load scenarios ---------------------------------------------------------
    def run_simple(self, url_of: Callable[[], tuple[str, object]]) -> dict:
        from .scenarios import measure
        url, holder = url_of()
        try:
            cpu = getattr(holder, "cpu_times", None)
            return measure(url, self.settings, cpu_of=cpu).to_dict()
        finally:
            if holder is not None:
                holder.stop()

    def ceiling(self) -> None:
        from .scenarios import Backend
        def start():
            b = Backend(self.work, "static", kind="static")
            return b.url, b
        self.results["scenarios"]["ceiling"] = self.run_simple(start)

    def direct(self) -> dict:
        return self.run_simple(lambda: (self.backend().url, None))

    def plain(self, kind: str = "aioproxy") -> dict:
        from .scenarios import PlainProxies
        if kind == "aiohttpproxy" and importlib.util.find_spec("aiohttp") is None:
            raise _Skip("aiohttp is not installed (pip install -e '.[bench]')")

        def start():
            p = PlainProxies(self.work, self.backend().url, kind)
            return p.url, p
        return self.run_simple(start)

    def tunduk(self, log: str, key_type: str, workers: int = 1) -> dict:
        from .scenarios import measure
        fed = self.federation(f"tunduk-{log}-{key_type}-w{workers}",
                              self.backend().url, log, key_type, workers)
        try:
            m = measure(fed.url, self.settings, cpu_of=fed.cpu_times)
        finally:
            fed.stop()
        d = m.to_dict()
        d.update(log=log, key_type=key_type, workers=workers)
        return d

    def tunduk_log(self, log: str, key_type: str) -> None:
        self.results["scenarios"][f"tunduk_{log}_{key_type}"] = self.tunduk(log, key_type)

    def slow(self) -> None:
        from .scenarios import Backend, measure
        kt = self.a.key_types[0]
        backend = Backend(self.work, "slow-backend", delay_ms=SLOW_DELAY_MS, threads=64)
        out: dict = {"delay_ms": SLOW_DELAY_MS, "log": self.a.slow_log, "key_type": kt,
                     "direct": {}, "tunduk": {}, "added": {}}
        try:
            for c in SLOW_CONCURRENCY:
                out["direct"][f"c{c}"] = measure(backend.url, self.settings,
                                                 concurrency=c).to_dict()
            fed = self.federation("tunduk-slow", backend.url, self.a.slow_log, kt)
            try:
                for c in SLOW_CONCURRENCY:
                    out["tunduk"][f"c{c}"] = measure(fed.url, self.settings, concurrency=c,
                                                     cpu_of=fed.cpu_times).to_dict()
            finally:
                fed.stop()
        finally:
            backend.stop()
        for c in SLOW_CONCURRENCY:
            d, t = out["direct"][f"c{c}"], out["tunduk"][f"c{c}"]
            out["added"][f"c{c}"] = {"p50_ms": round(t["p50_ms"] - d["p50_ms"], 3),
                                     "p99_ms": round(t["p99_ms"] - d["p99_ms"], 3)}
        self.results["scenarios"]["slow"] = out

    def scaling(self) -> None:
        kt = self.a.key_types[0]
        out: dict = {"log": "off", "key_type": kt}
        for w in self.a.workers:
            same = self.results["scenarios"].get(f"tunduk_off_{kt}")
            if w == 1 and same and "error" not in same:
                out["workers_1"] = dict(same, note="the tunduk log=off run above")
                continue
            out[f"workers_{w}"] = self.tunduk("off", kt, w)
        self.results["scenarios"]["scaling"] = out

    # -- micro-benchmarks -------------------------------------------------------
    def _sign_material(self) -> dict[str, tuple[bytes, bytes]]:
        from tunduk.server.devfed import CONSUMER, CONSUMER_NAME
        names = {"rsa": "RSA-2048", "ec": "ECDSA P-256"}
        out = {}
        for kt in ("rsa", "ec"):
            k, c = self.keys.get("sign", CONSUMER, CONSUMER_NAME, "ss1", kt)
            out[names[kt]] = (k.read_bytes(), c.read_bytes())
        return out

    def micro_sign(self) -> None:
        from .micro import bench_signing
        self.results["micro"]["signing"] = bench_signing(
            self._sign_material(), self.ca.cert.read_bytes(),
            budget_s=self.a.micro_seconds, max_ops=self.a.max_ops)

    def micro_parse(self) -> None:
        from .micro import bench_parse
        self.results["micro"]["parse"] = bench_parse(budget_s=self.a.micro_seconds,
                                                     max_ops=self.a.max_ops)

    def micro_mlog(self) -> None:
        from .micro import SignBench, bench_messagelog
        key_pem, cert_pem = self._sign_material()["ECDSA P-256"]
        sb = SignBench(key_pem, cert_pem, self.ca.cert.read_bytes())
        env, der = sb.logged_record(), sb.key.cert_der
        out: dict = {}
        self.results["micro"]["messagelog"] = out
        budget = self.a.micro_seconds
        out["sqlite"] = bench_messagelog("sqlite", self._dir("mlog-sqlite"), env, der,
                                         budget_s=budget, max_ops=self.a.max_ops)
        dsn = self.postgres()
        if dsn is None:
            out["postgresql"] = {"skipped": self._pg_problem}
        else:
            out["postgresql"] = bench_messagelog("postgresql", self._dir("mlog-pg"), env,
                                                 der, dsn=dsn, budget_s=budget,
                                                 max_ops=self.a.max_ops)

    def micro_pipeline(self) -> None:
        """bench.pipeline's in-memory exchange (no sockets): the core's own CPU cost."""
        from .pipeline import make_exchange, measure, measure_threads
        kt = self.a.key_types[0]
        exchange = make_exchange(self._dir("pipeline"), kt)
        r = measure(exchange, self.a.micro_seconds, PIPELINE_REPEAT)
        t = measure_threads(exchange, self.a.micro_seconds, PIPELINE_THREADS)
        self.results["micro"]["pipeline"] = {
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()},
            "key_type": kt, "log": "off", "repeat": PIPELINE_REPEAT,
            "seconds": self.a.micro_seconds,
            "threaded": {k: round(v, 1) if isinstance(v, float) else v
                         for k, v in t.items()}}

    def close(self) -> None:
        if self._backend is not None:
            self._backend.stop()
        if self._pg is not None:
            self._pg.stop()


class _Skip(Exception):
    pass


def interleaved(a: argparse.Namespace, run: Run) -> None:
    """The main comparison, ``a.rounds`` times round by round, so that every ratio
    can be taken between runs close in time; each scenario's figures are the medians
    (``report.combine_rounds``)."""
    kt = a.key_types[0]
    todo: list[tuple[str, str, Callable[[], dict]]] = []
    sel = set(a.selected)
    if "direct" in sel:
        todo.append(("direct", "direct", run.direct))
    if "plain" in sel:
        todo.append(("plain", "plain", run.plain))
    if "aiohttp" in sel:
        todo.append(("plain proxies on aiohttp", "aiohttp",
                     lambda: run.plain("aiohttpproxy")))
    for log in ("off", "sqlite", "postgresql"):
        if log in sel:
            todo.append((f"tunduk log={log} {kt}", f"tunduk_{log}_{kt}",
                         lambda log=log: run.tunduk(log, kt)))
    runs: dict[str, list[dict]] = {key: [] for _, key, _ in todo}
    for i in range(1, a.rounds + 1):
        for name, key, fn in todo:
            if name in run.results["skipped"]:
                continue          # e.g. no PostgreSQL: do not retry every round
            label = f"{name} (round {i}/{a.rounds})" if a.rounds > 1 else name
            d = run.guarded(label, fn)
            if d is None:
                skipped = run.results["skipped"]
                if label in skipped:          # recorded once, under the plain name
                    skipped[name] = skipped.pop(label)
                if label in run.results["errors"]:
                    runs[key].append({"round": i, "error": run.results["errors"][label]})
                continue
            runs[key].append({"round": i, **d})
    for key, got in runs.items():
        if got:
            run.results["scenarios"][key] = report.combine_rounds(got)


def _scenario_order(a: argparse.Namespace, key: str) -> int:
    order = ["ceiling", "direct", "plain", *(f"tunduk_off_{k}" for k in a.key_types),
             *(f"tunduk_{log}_{a.key_types[0]}" for log in ("sqlite", "postgresql")),
             "slow", "scaling"]
    return order.index(key) if key in order else len(order)


def execute(a: argparse.Namespace, run: Run) -> None:
    sel = set(a.selected)
    if "ceiling" in sel:
        run.guarded("ceiling", run.ceiling)
    interleaved(a, run)
    steps: list[tuple[str, Callable[[], None]]] = []
    if "off" in sel:
        for kt in a.key_types[1:]:
            steps.append((f"tunduk log=off {kt}", lambda kt=kt: run.tunduk_log("off", kt)))
    if "slow" in sel:
        steps.append(("slow backend", run.slow))
    if "scaling" in sel:
        steps.append(("scaling", run.scaling))
    if "sign" in sel:
        steps.append(("micro: sign/verify", run.micro_sign))
    if "parse" in sel:
        steps.append(("micro: parse", run.micro_parse))
    if "mlog" in sel:
        steps.append(("micro: message log", run.micro_mlog))
    if "pipeline" in sel:
        steps.append(("micro: in-memory pipeline", run.micro_pipeline))
    for name, fn in steps:
        run.guarded(name, fn)
    sc = run.results["scenarios"]
    run.results["scenarios"] = dict(sorted(sc.items(),
                                           key=lambda kv: _scenario_order(a, kv[0])))


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    from .loadgen import wrk_path
    if a.generator == "wrk" and not wrk_path():
        print("wrk is not installed (apt-get install wrk), use --generator python",
              file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.timezone.utc)
    commit = _git("rev-parse", "--short", "HEAD") or "nogit"
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "commit": commit, "dirty": bool(_git("status", "--porcelain")),
        "profile": a.profile, "duration_s": a.duration, "warmup_s": a.warmup,
        "micro_seconds": a.micro_seconds, "concurrency": a.concurrency,
        "rounds": a.rounds, "interleaved": [s for s in INTERLEAVED if s in a.selected],
        "key_types": list(a.key_types), "scenarios": list(a.selected),
        "generator": "wrk" if (a.generator == "wrk" or (a.generator == "auto" and wrk_path()))
        else "python",
        "machine": machine(),
    }
    work = Path(tempfile.mkdtemp(prefix="tunduk-bench-"))
    t0 = time.monotonic()
    run = Run(a, work)
    try:
        execute(a, run)
    finally:
        run.close()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    res = {"meta": meta, **run.results}
    meta["elapsed_s"] = round(time.monotonic() - t0, 1)
    report.analyse(res)
    text = report.table(res)
    res["table"] = text
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{commit}.json"
    path.write_text(json.dumps(res, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(f"tunduk benchmark, profile {a.profile} ({a.duration:g} s per run, "
          f"{a.rounds} interleaved round{'s' if a.rounds > 1 else ''}, "
          f"{meta['generator']}, {meta['machine']['cores']} cores, commit {commit}"
          f"{' +changes' if meta['dirty'] else ''})")
    print(text)
    if run.results["errors"]:
        print("errors: " + "; ".join(f"{k}: {v}" for k, v in run.results["errors"].items()))
    print(f"results: {path}")
    return 1 if run.results["errors"] else 0
