"""``python -m bench.pipeline`` (the in-memory yardstick of the core's CPU cost) runs
and prints its figures; no timing is asserted."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_bench_pipeline_prints_cost_per_exchange():
    out = subprocess.run([sys.executable, "-m", "bench.pipeline", "--seconds", "0.2",
                          "--repeat", "2"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) exchanges, (\d+) µs CPU/exchange \(thread_time\), "
                  r"(\d+) µs wall/exchange; rounds of 2: min (\d+) µs CPU, "
                  r"median (\d+) µs CPU", out.stdout)
    assert m, out.stdout
    assert all(int(g) > 0 for g in m.groups())


def test_bench_pipeline_profile_lists_core_functions():
    out = subprocess.run([sys.executable, "-m", "bench.pipeline", "--seconds", "0.2",
                          "--repeat", "1", "--profile", "--top", "10"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Ordered by: internal time" in out.stdout
    assert "Ordered by: cumulative time" in out.stdout
    assert "verify_message" in out.stdout


def test_bench_pipeline_threads_prints_process_cpu_per_exchange():
    out = subprocess.run([sys.executable, "-m", "bench.pipeline", "--seconds", "0.2",
                          "--repeat", "1", "--threads", "3"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    m = re.search(r"pipeline, 3 threads at once: (\d+) exchanges, (\d+) µs process "
                  r"CPU/exchange, (\d+) µs wall/exchange", out.stdout)
    assert m, out.stdout
    assert all(int(g) > 0 for g in m.groups())
