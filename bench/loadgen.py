"""Load generators: wrk (preferred) and a multi-process Python keep-alive fallback.

Both POST one fixed body at a fixed concurrency for a bounded time *and* a bounded
number of requests, and return a :class:`LoadResult` (req/s, p50/p99 latency).
"""
from __future__ import annotations

import http.client
import multiprocessing
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

MAX_REQUESTS = 2_000_000   # hard cap per run, whatever the duration


@dataclass
class LoadResult:
    generator: str
    concurrency: int
    duration_s: float
    requests: int
    errors: int              # non-2xx answers and socket errors
    rps: float
    p50_ms: float
    p99_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def wrk_path() -> Optional[str]:
    return shutil.which("wrk")


_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = %(ctype)s
wrk.headers["SOAPAction"] = %(action)s
wrk.body = [==========[%(body)s]==========]
local done = 0
local cap = %(cap)d
function response(status, headers, body)
  done = done + 1
  if done >= cap then wrk.thread:stop() end
end
"""


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str, concurrency: int) -> LoadResult:
    """Read wrk's ``--latency`` report."""
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", out, re.M)
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if not (pct.get("50") and pct.get("99") and m and rps):
        raise RuntimeError("unexpected wrk output:\n" + out)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return LoadResult("wrk", concurrency, _ms(m.group(2) + m.group(3)) / 1000,
                      int(m.group(1)), errors, float(rps.group(1)), _ms(pct["50"]),
                      _ms(pct["99"]))


def run_wrk(url: str, body: bytes, *, concurrency: int, duration: float,
            content_type: str, soap_action: str, max_requests: int = MAX_REQUESTS
            ) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as d:
        script = Path(d) / "post.lua"
        # each thread stops after its share of the cap
        threads = 1
        script.write_text(_LUA % {"ctype": _lua_str(content_type),
                                  "action": _lua_str(soap_action),
                                  "body": body.decode("utf-8"),
                                  "cap": max(1, max_requests // threads)})
        secs = max(1, round(duration))
        argv = [wrk_path() or "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{secs}s",
                "--timeout", "10s", "--latency", "-s", str(script), url]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
        if r.returncode != 0:
            raise RuntimeError(f"wrk failed ({r.returncode}): {r.stderr or r.stdout}")
        return parse_wrk(r.stdout, concurrency)


# ---------------------------------------------------------------- Python fallback

def _worker(args) -> tuple[list[float], int]:
    url, body, headers, conns, deadline, cap = args
    u = urlsplit(url)
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def loop() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
        mine: list[float] = []
        bad = 0
        while time.time() < deadline and len(mine) < cap:
            t0 = time.perf_counter()
            try:
                conn.request("POST", u.path or "/", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                if not 200 <= resp.status < 400:
                    bad += 1
            except (OSError, http.client.HTTPException):
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            lat.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=loop) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors[0]


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def run_python(url: str, body: bytes, *, concurrency: int, duration: float,
               content_type: str, soap_action: str, max_requests: int = MAX_REQUESTS,
               processes: int = 0) -> LoadResult:
    """Keep-alive POST loops: ``concurrency`` connections over a few processes."""
    procs = processes or min(concurrency, 4)
    shares = [concurrency // procs + (1 if i < concurrency % procs else 0)
              for i in range(procs)]
    headers = {"Content-Type": content_type, "SOAPAction": soap_action}
    cap = max(1, max_requests // concurrency)
    start = time.time()
    deadline = start + duration
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs) as pool:
        parts = pool.map(_worker, [(url, body, headers, n, deadline, cap)
                                   for n in shares])
    elapsed = max(time.time() - start, 1e-9)
    lat = sorted(x for p, _ in parts for x in p)
    errors = sum(e for _, e in parts)
    return LoadResult("python", concurrency, elapsed, len(lat), errors, len(lat) / elapsed,
                      _percentile(lat, 0.50) * 1000, _percentile(lat, 0.99) * 1000)


def run_load(url: str, body: bytes, *, concurrency: int, duration: float,
             content_type: str, soap_action: str, generator: str = "auto") -> LoadResult:
    """wrk when installed (or asked for), the Python generator otherwise."""
    use_wrk = generator == "wrk" or (generator == "auto" and wrk_path() is not None)
    fn = run_wrk if use_wrk else run_python
    return fn(url, body, concurrency=concurrency, duration=duration,
              content_type=content_type, soap_action=soap_action)
