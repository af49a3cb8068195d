"""``tunduk run`` as operators start it: worker processes on the event-loop engine,
exchanges through them, and a clean stop on SIGTERM."""
from __future__ import annotations

import concurrent.futures
import signal
import socket
import subprocess
import sys
import uuid

import pytest

from tests.http_helpers import post
from tests.server.edges.test_logged_exchange import ACCESS, _wait_listening
from tests.xroad_requests import request


def test_two_workers_serve_exchanges_and_stop_on_sigterm(make_federation, echo_backend):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    files = make_federation(services=[svc], access=ACCESS, messagelog={"backend": "sqlite"},
                            )
    tunduk = [sys.executable, "-m", "tunduk.server.cli", "run", "--workers", "2"]
    procs = [subprocess.Popen(tunduk + [str(s.server_toml)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
             for s in (files.provider, files.consumer)]
    try:
        url = f"http://127.0.0.1:{files.consumer.client_port}/"
        _wait_listening(f"http://127.0.0.1:{files.provider.client_port}/", procs[0])
        _wait_listening(url, procs[1])

        def one(_):
            mid = str(uuid.uuid4())
            reply = post(url, request(message_id=mid))
            return reply.status, reply.fault_code, mid.encode() in reply.body
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(40)))
        assert results == [(200, None, True)] * 40
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(20) for p in procs]
        errs = [p.stderr.read().decode() for p in procs]
    assert codes == [0, 0], errs
    assert "Traceback" not in "".join(errs), errs


def test_a_worker_that_cannot_start_makes_tunduk_run_fail_with_the_reason(
        make_federation):
    files = make_federation()
    taken = socket.create_server(("127.0.0.1", files.provider.client_port))
    try:
        proc = subprocess.run([sys.executable, "-m", "tunduk.server.cli", "run",
                               "--workers", "2", str(files.provider.server_toml)],
                              capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert proc.returncode == 1, proc.stderr
    assert "address already in use" in proc.stderr.lower()
    assert "a worker failed; stopping the others" in proc.stderr
