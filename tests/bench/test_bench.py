"""The benchmark harness runs end to end on a tiny profile and reports in its format.

No timing is asserted: only that every figure is there and is a positive number.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cheroot import wsgi

from bench import loadgen, report
from bench.apps import static
from tunduk.server.devfed import free_port

ROOT = Path(__file__).resolve().parents[2]

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:8080/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.01ms    3.10ms  40.00ms   80.00%
    Req/Sec   660.00     50.00   700.00     70.00%
  Latency Distribution
     50%   11.50ms
     75%   13.00ms
     90%   15.00ms
     99%  850.00us
  3300 requests in 5.01s, 6.00MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:    658.68
Transfer/sec:      1.20MB
"""


def test_parse_wrk_reads_rate_percentiles_and_errors():
    r = loadgen.parse_wrk(WRK_OUTPUT, 8)
    assert (r.requests, r.rps, r.p50_ms, r.p99_ms) == (3300, 658.68, 11.5, 0.85)
    assert r.errors == 7 and r.duration_s == pytest.approx(5.01)


def test_parse_wrk_refuses_unexpected_output():
    with pytest.raises(RuntimeError):
        loadgen.parse_wrk("wrk: connection refused", 8)


def test_checks_mark_pass_miss_and_missing():
    assert report.check("throughput_sqlite_vs_direct", 0.31)["status"] == "PASS"
    assert report.check("throughput_sqlite_vs_direct", 0.29)["status"] == "MISS"
    assert report.check("cpu_ms_per_exchange_sqlite", 2.6)["status"] == "MISS"
    assert report.check("added_latency_p99_c8", None)["status"] == "n/a"


def test_python_generator_fallback_counts_requests():
    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), static(), numthreads=4)
    server.prepare()
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    try:
        r = loadgen.run_python(f"http://127.0.0.1:{port}/", b"<x/>", concurrency=2,
                               duration=0.5, content_type="text/xml", soap_action='""',
                               max_requests=200, processes=1)
    finally:
        server.stop()
    assert r.generator == "python" and 0 < r.requests <= 200
    assert r.errors == 0 and r.rps > 0 and r.p99_ms >= r.p50_ms > 0


def test_messagelog_micro_benchmark_writes_through_the_store(tmp_path):
    from bench.micro import bench_messagelog
    from tunduk.server.messagelog.sqlite import SqliteStore
    r = bench_messagelog("sqlite", tmp_path, b"<Envelope/>", b"\x30\x00", budget_s=0.2,
                         max_ops=40, threads=(1, 4))
    assert set(r) == {"threads_1", "threads_4"}
    assert all(0 < v["ops"] <= 40 and v["per_s"] > 0 for v in r.values())
    store = SqliteStore(tmp_path / "bench.sqlite3")
    try:
        assert store.count("KG/GOV/70000002/bench") == 1 + sum(v["ops"] for v in r.values())
    finally:
        store.close()


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--duration", "1", "--warmup", "0",
         "--micro-seconds", "0.1", "--only", "direct,off,sign,parse",
         "--key-types", "ec", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=180)
    files = list(out.glob("*.json"))
    return proc, files


def test_tiny_profile_prints_one_table(tiny_run):
    proc, _ = tiny_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    assert table[0].split("|")[1].strip() == "item"
    assert "req/s" in table[0] and "target" in table[0] and "result" in table[0]
    # one contiguous table
    first = lines.index(table[0])
    assert lines[first:first + len(table)] == table
    assert any("direct: backend alone" in ln for ln in table)
    assert any("tunduk log=off EC" in ln for ln in table)
    assert any("ratio tunduk off / direct" in ln for ln in table)
    assert any(("PASS" in ln or "MISS" in ln) and "sign ECDSA" in ln for ln in table)


def test_tiny_profile_writes_json_with_every_figure(tiny_run):
    proc, files = tiny_run
    assert len(files) == 1, proc.stderr
    name = files[0].name
    res = json.loads(files[0].read_text())
    assert name.endswith(f"-{res['meta']['commit']}.json")
    assert set(res) >= {"meta", "scenarios", "micro", "ratios", "checks", "table",
                        "errors", "skipped"}
    assert res["errors"] == {}
    m = res["meta"]["machine"]
    assert m["cores"] >= 1 and m["python"]
    for lib in ("lxml", "xmlsec", "cryptography", "spyne", "cheroot"):
        assert m["libraries"][lib]
    for key in ("direct", "tunduk_off_ec"):
        s = res["scenarios"][key]
        for f in ("rps", "p50_ms", "p99_ms", "requests", "duration_s"):
            assert _positive(s[f]), (key, f, s[f])
        assert s["errors"] == 0
    assert _positive(res["scenarios"]["tunduk_off_ec"]["cpu_ms_per_exchange"])
    assert _positive(res["ratios"]["tunduk_off/direct"])
    sig = res["micro"]["signing"]["ECDSA P-256"]
    for op in ("tunduk_sign", "raw_sign", "tunduk_verify", "raw_verify"):
        assert _positive(sig[op]["per_s"]) and sig[op]["ops"] > 0
    assert _positive(sig["sign_ratio"]) and _positive(sig["verify_ratio"])
    assert _positive(res["micro"]["parse"]["per_s"])
    statuses = {c["name"]: c["status"] for c in res["checks"]}
    assert statuses["sign_vs_raw_ECDSA P-256"] in ("PASS", "MISS")
    assert statuses["throughput_sqlite_vs_direct"] == "n/a"   # sqlite not run
