"""Two provider nodes behind HAProxy (TCP passthrough) sharing one PostgreSQL log: one is
killed under load and restarted, and traffic comes back to it.

Real parts: HAProxy (Debian package ``haproxy``), two ``tunduk run`` processes, real
PostgreSQL; the consumer runs in-process with its peer connections recycled after 1 s
(30 s by default) so the test takes seconds.
"""
from __future__ import annotations

import concurrent.futures
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.fixtures.pki import free_port
from tests.http_helpers import post
from tests.server.edges.test_logged_exchange import _wait_listening
from tests.xroad_requests import request
from tunduk.server.node import Node

ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]


class Haproxy:
    """HAProxy forwarding TCP from ``port`` to the nodes, round robin, with a stats
    socket for the connections each node was given."""

    def __init__(self, tmp_path, port: int, nodes: list[int]) -> None:
        self.sock = tmp_path / "haproxy.sock"
        cfg = tmp_path / "haproxy.cfg"
        servers = "\n".join(f"    server n{i} 127.0.0.1:{p} check inter 200 fall 1 rise 1"
                            for i, p in enumerate(nodes))
        cfg.write_text(f"""global
    stats socket {self.sock} level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend peers
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
{servers}
""")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"haproxy did not start: {self.proc.stderr.read()}")
            time.sleep(0.05)

    def sessions(self) -> dict[str, int]:
        """Total connections HAProxy handed to each node (stot)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        lines = data.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        out = {}
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "nodes" and row.get("svname", "").startswith("n"):
                out[row["svname"]] = int(row["stot"] or 0)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.mark.skipif(shutil.which("haproxy") is None,
                    reason="haproxy missing (Debian package haproxy; .ci/run installs it)")
def test_a_restarted_node_behind_haproxy_gets_traffic_again(
        make_federation, echo_backend, postgresql_db, tmp_path):
    front = free_port()
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    files = make_federation(services=[svc], access=ACCESS, provider_ports=(free_port(), front),
                            messagelog={"backend": "postgresql", "dsn": postgresql_db})
    # two provider nodes: the provider's configuration on other ports, one server id
    text = files.provider.server_toml.read_text()
    node_ports, tomls = [], []
    for i in range(2):
        cp, sp = free_port(), free_port()
        node_ports.append(sp)
        toml = files.provider.server_toml.with_name(f"node{i}.toml")
        toml.write_text(text.replace(f"127.0.0.1:{files.provider.client_port}",
                                     f"127.0.0.1:{cp}")
                        .replace(f"127.0.0.1:{front}", f"127.0.0.1:{sp}"))
        tomls.append((toml, cp))

    def start(i: int) -> subprocess.Popen:
        toml, cp = tomls[i]
        proc = subprocess.Popen([sys.executable, "-m", "tunduk.server.cli", "run", str(toml)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _wait_listening(f"http://127.0.0.1:{cp}/", proc)
        return proc

    procs = [start(0), start(1)]
    lb = Haproxy(tmp_path, front, node_ports)
    consumer = Node.from_conf(files.consumer.conf()).start()
    client = consumer._loop.engine.client
    make = client._make_pool

    def recycled(host, port):
        pool = make(host, port)
        pool.max_age = 1.0
        return pool
    client.pools = type(client.pools)(recycled)
    url = consumer.client_proxy_url
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:          # a bounded load: 4 requests at a time
        while not stop.is_set():
            reply = post(url, request())
            results.append((reply.status, reply.fault_code))
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            workers = [pool.submit(load) for _ in range(4)]
            try:
                _until(lambda: len(results) >= 20)
                procs[1].send_signal(signal.SIGKILL)
                procs[1].wait(10)
                done = len(results)
                _until(lambda: len(results) >= done + 20)      # the survivor carries it
                procs[1] = start(1)
                before = lb.sessions()["n1"]
                # connections to the survivor are recycled: new ones reach both again
                _until(lambda: lb.sessions()["n1"] >= before + 6, timeout=20)
                served = len(results)
                _until(lambda: len(results) >= served + 20)
            finally:
                stop.set()       # (the workers end before the executor is left)
            for w in workers:
                w.result(timeout=60)
        # every request was answered, or failed with a fault saying why
        assert results and all(
            status == 200 or (status == 500 and code == "Server.ClientProxy.NetworkError")
            for status, code in results), [r for r in results if r[0] != 200][:5]
        assert sum(1 for s, _ in results if s == 200) >= 60
    finally:
        stop.set()
        consumer.stop()
        lb.stop()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(20)


def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)
