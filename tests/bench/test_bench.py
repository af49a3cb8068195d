"""The benchmark harness runs end to end on a tiny profile and reports in its format.

No timing is asserted: only that every figure is there and is a positive number.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cheroot import wsgi

from bench import loadgen, procs, report
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


@pytest.mark.parametrize("kind", ["aioproxy", "aiohttpproxy"])
def test_plain_proxies_forward_the_answer_unchanged(tmp_path, kind):
    if kind == "aiohttpproxy":
        pytest.importorskip("aiohttp", reason="the bench extra (pip install -e '.[bench]')")
    from bench.scenarios import PlainProxies
    from tests.http_helpers import post
    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), static(b"<fixed/>"), numthreads=4)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    proxies = PlainProxies(tmp_path, f"http://127.0.0.1:{port}/", kind)
    try:
        reply = post(proxies.url, b"<x/>", headers={"SOAPAction": '""'})
    finally:
        proxies.stop()
        server.stop()
    assert (reply.status, reply.body) == (200, b"<fixed/>")
    assert reply.headers["content-type"] == "text/xml"


def test_messagelog_micro_benchmark_writes_through_the_store(tmp_path):
    from bench.micro import bench_messagelog
    from tunduk.server.messagelog.sqlite import SqliteStore
    r = bench_messagelog("sqlite", tmp_path, b"<Envelope/>", b"\x30\x00", budget_s=0.2,
                         max_ops=40, threads=(1, 4), loop_batches=(1, 20))
    assert set(r) == {"threads_1", "threads_4", "loop_1", "loop_20"}
    assert all(0 < v["ops"] <= 40 and v["per_s"] > 0 for v in r.values())
    assert r["loop_20"]["ops"] % 20 == 0 and r["loop_1"]["cpu_us"] > 0
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
         "--micro-seconds", "0.1", "--only", "direct,off,sign,parse,mlog,pipeline",
         "--rounds", "2", "--key-types", "ec", "--out", str(out)],
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


def _number_at_least_zero(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def test_tiny_profile_runs_the_comparison_in_interleaved_rounds(tiny_run):
    proc, files = tiny_run
    res = json.loads(files[0].read_text())
    assert res["meta"]["rounds"] == 2
    assert res["meta"]["interleaved"] == ["direct", "off"]
    for key in ("direct", "tunduk_off_ec"):
        s = res["scenarios"][key]
        assert [r["round"] for r in s["rounds"]] == [1, 2], key
        rps = [r["rps"] for r in s["rounds"]]
        assert all(_positive(x) for x in rps)
        assert s["rps"] == pytest.approx(sum(rps) / 2, abs=0.01)   # median of two
    # the progress log shows the interleaving: direct, off, direct, off
    order = re.findall(r"\] (direct|tunduk log=off ec) \(round (\d)/2\)", proc.stderr)
    assert order == [("direct", "1"), ("tunduk log=off ec", "1"),
                     ("direct", "2"), ("tunduk log=off ec", "2")]
    sp = res["ratio_spread"]["tunduk_off/direct"]
    per = [o["rps"] / d["rps"] for o, d in zip(res["scenarios"]["tunduk_off_ec"]["rounds"],
                                               res["scenarios"]["direct"]["rounds"])]
    assert sp["rounds"] == 2 and sp["per_round"] == [round(x, 3) for x in per]
    assert sp["min"] <= sp["median"] <= sp["max"]
    assert res["ratios"]["tunduk_off/direct"] == sp["median"]
    line = next(ln for ln in res["table"].splitlines() if "ratio tunduk off / direct" in ln)
    assert re.search(r"\d+\.\d\d \(\d+\.\d\d–\d+\.\d\d, 2 rounds\)", line), line


def test_tiny_profile_splits_cpu_into_user_and_system(tiny_run):
    _, files = tiny_run
    res = json.loads(files[0].read_text())
    off = res["scenarios"]["tunduk_off_ec"]
    for d in (off, *off["rounds"]):
        u, sy = d["cpu_user_ms_per_exchange"], d["cpu_sys_ms_per_exchange"]
        assert _number_at_least_zero(u) and _number_at_least_zero(sy), d
        assert u + sy == pytest.approx(d["cpu_ms_per_exchange"], abs=0.005)
    assert res["scenarios"]["direct"]["cpu_user_ms_per_exchange"] is None  # not measured
    assert any("CPU user / sys per exchange, tunduk log=off EC" in ln
               and re.search(r"\d+\.\d\d / \d+\.\d\d ms", ln)
               for ln in res["table"].splitlines())


def test_tiny_profile_reports_the_in_memory_pipeline(tiny_run):
    _, files = tiny_run
    res = json.loads(files[0].read_text())
    pipe = res["micro"]["pipeline"]
    assert pipe["exchanges"] > 0 and pipe["key_type"] == "ec"
    assert _positive(pipe["cpu_us"]) and _positive(pipe["cpu_us_median"])
    assert pipe["cpu_us_min"] <= pipe["cpu_us_median"]
    assert any(ln.startswith("| in-memory pipeline (bench.pipeline)") and " µs" in ln
               for ln in res["table"].splitlines())
    thr = pipe["threaded"]
    assert thr["threads"] == 8 and thr["exchanges"] > 0 and _positive(thr["cpu_us"])
    assert any(ln.startswith("| in-memory pipeline, 8 threads at once") and " µs" in ln
               for ln in res["table"].splitlines())


def test_tree_cpu_times_splits_user_and_system_of_a_process_tree():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        user, system = procs.tree_cpu_times(os.getpid())
        own = os.times()
        assert _number_at_least_zero(user) and _number_at_least_zero(system)
        # this process alone has used at least this much (clock ticks: 1/100 s)
        assert user >= own.user - 0.02 and user > 0
        assert min(procs.tree_cpu_times(child.pid)) >= 0
        assert procs.tree_cpu_times(2 ** 22 + 12345) == (0.0, 0.0)   # no such process
    finally:
        child.kill()
        child.wait()


def _run(rnd: int, rps: float, cpu: float | None = None, **kw) -> dict:
    d = {"round": rnd, "rps": rps, "p50_ms": 10.0 + rnd, "p99_ms": 20.0 + rnd,
         "requests": int(rps), "duration_s": 1.0, "errors": 0,
         "cpu_ms_per_exchange": cpu, "cpu_user_ms_per_exchange": None if cpu is None
         else cpu * 0.75, "cpu_sys_ms_per_exchange": None if cpu is None else cpu * 0.25}
    d.update(kw)
    return d


def test_combine_rounds_takes_medians_and_keeps_every_run():
    runs = [_run(1, 100.0, 8.0), _run(2, 140.0, 6.0, errors=2), _run(3, 120.0, 9.0),
            {"round": 4, "error": "RuntimeError: boom"}]
    d = report.combine_rounds(runs)
    assert d["rps"] == 120.0 and d["cpu_ms_per_exchange"] == 8.0
    assert d["cpu_user_ms_per_exchange"] == 6.0 and d["cpu_sys_ms_per_exchange"] == 2.0
    assert (d["p50_ms"], d["median_run_round"]) == (13.0, 3)   # the median-rps run
    assert d["errors"] == 2 and d["rounds"] == runs and "round" not in d
    assert "error" in report.combine_rounds([{"round": 1, "error": "x"}])


def _results(rounds: list[tuple[float, float]]) -> dict:
    """direct and tunduk sqlite with these (direct, sqlite) req/s per round."""
    direct = report.combine_rounds([_run(i, d) for i, (d, _) in enumerate(rounds, 1)])
    sqlite = report.combine_rounds([_run(i, t, 9.0) for i, (_, t) in enumerate(rounds, 1)])
    return {"meta": {"key_types": ["ec"], "concurrency": 8},
            "scenarios": {"direct": direct, "tunduk_sqlite_ec": sqlite}, "micro": {}}


def test_ratios_are_medians_of_per_round_ratios_with_their_spread():
    # per-round ratios 0.40, 0.20, 0.25 -> median 0.25 (MISS); the ratio of the
    # medians would be 120 / 400 = 0.30 (PASS)
    res = _results([(300.0, 120.0), (600.0, 120.0), (400.0, 100.0)])
    report.analyse(res)
    sp = res["ratio_spread"]["tunduk_sqlite/direct"]
    assert (sp["median"], sp["min"], sp["max"], sp["rounds"]) == (0.25, 0.2, 0.4, 3)
    assert sp["per_round"] == [0.4, 0.2, 0.25]
    assert res["ratios"]["tunduk_sqlite/direct"] == 0.25
    status = {c["name"]: c["status"] for c in res["checks"]}
    assert status["throughput_sqlite_vs_direct"] == "MISS"
    assert status["cpu_ms_per_exchange_sqlite"] == "MISS"     # median 9.0 ms
    text = report.table(res)
    assert "0.25 (0.20–0.40, 3 rounds)" in text
    assert "3 rounds: 300–600 req/s" in text
    assert re.search(r"CPU user / sys per exchange, tunduk log=sqlite EC .*6\.75 / 2\.25 ms",
                     text)


def test_a_single_round_reports_plain_ratios():
    res = _results([(500.0, 160.0)])
    report.analyse(res)
    assert res["ratios"]["tunduk_sqlite/direct"] == 0.32 and res["ratio_spread"] == {}
    line = next(ln for ln in report.table(res).splitlines() if "sqlite / direct" in ln)
    assert re.search(r"\|\s+0\.32 \|", line) and "PASS" in line, line
    assert "rounds" not in report.table(res)
