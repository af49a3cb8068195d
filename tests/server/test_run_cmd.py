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


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_taken_port_is_named_by_its_configuration_key(make_federation, workers):
    """With --workers 1 a taken port was a traceback; now one message with the key."""
    files = make_federation()
    taken = socket.create_server(("127.0.0.1", files.provider.client_port))
    try:
        proc = subprocess.run([sys.executable, "-m", "tunduk.server.cli", "run",
                               "--workers", workers, str(files.provider.server_toml)],
                              capture_output=True, text=True, timeout=60)
    finally:
        taken.close()
    assert proc.returncode == 1, proc.stderr
    assert f"listen.client_proxy: cannot listen on 127.0.0.1:{files.provider.client_port}" \
        in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_second_instance_on_the_same_ports_is_refused(make_federation):
    """Two ``tunduk run --workers 2`` on the same ports both bound (SO_REUSEPORT) and
    split the traffic between two configurations and two logs."""
    first_files, second_files = make_federation(), make_federation()
    ports = (first_files.provider.client_port, first_files.provider.server_port)
    text = second_files.provider.server_toml.read_text()
    second_files.provider.server_toml.write_text(
        text.replace(f"127.0.0.1:{second_files.provider.client_port}",
                     f"127.0.0.1:{ports[0]}")
            .replace(f"127.0.0.1:{second_files.provider.server_port}",
                     f"127.0.0.1:{ports[1]}"))
    tunduk = [sys.executable, "-m", "tunduk.server.cli", "run", "--workers", "2"]
    first = subprocess.Popen(tunduk + [str(first_files.provider.server_toml)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_listening(f"http://127.0.0.1:{ports[0]}/", first)
        second = subprocess.run(tunduk + [str(second_files.provider.server_toml)],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"listen.client_proxy: 127.0.0.1:{ports[0]} is served by another tunduk " \
               "instance" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(20)
