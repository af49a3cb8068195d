"""Every exchange is logged on both servers, before anything is returned (fail closed).

Runs against SQLite and a real PostgreSQL cluster.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.http_helpers import post
from tests.xroad_requests import request
from tunduk.server.messagelog import store_factory
from tunduk.server.messagelog.live_verify import verify_store
from tunduk.server.node import server_id

ACCESS = [{"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]}]


@pytest.fixture(params=["sqlite", "postgresql"])
def messagelog(request):
    if request.param == "sqlite":
        return {"backend": "sqlite"}
    return {"backend": "postgresql", "dsn": request.getfixturevalue("postgresql_db")}


@pytest.fixture
def fed(run_federation, echo_backend, messagelog):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    return run_federation(services=[svc], access=ACCESS, messagelog=messagelog)


def open_store(node):
    return store_factory(node.conf.messagelog, node.conf.data_dir)()


def records_by_message(node) -> dict:
    store = open_store(node)
    try:
        out: dict = {}
        for r in store.records(server_id(node.conf)):
            out.setdefault(r.message_id, []).append((r.direction, r.side))
        return out
    finally:
        store.close()


def test_both_directions_logged_on_both_servers(fed):
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for mid in ids:
        assert post(fed.client_url, request(message_id=mid)).status == 200
    consumer, provider = records_by_message(fed.consumer), records_by_message(fed.provider)
    for mid in ids:
        assert consumer[mid] == [("request", "client"), ("response", "client")]
        assert provider[mid] == [("request", "server"), ("response", "server")]
    for node in (fed.consumer, fed.provider):
        store = open_store(node)
        try:
            recs = list(store.records(server_id(node.conf)))
            assert all(b"SignatureValue" in r.envelope for r in recs)
            assert verify_store(store, server_id(node.conf)) == []
        finally:
            store.close()


def _break_log(node) -> None:
    """Make every later write of this server's records fail, as a full disk would."""
    sid = server_id(node.conf)
    store = open_store(node)
    try:
        cur = store.conn.cursor()
        if store.PARAM == "?":  # SQLite
            cur.execute(f"CREATE TRIGGER fail_writes BEFORE INSERT ON records "
                        f"WHEN NEW.server_id = '{sid}' "
                        "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")
        else:
            cur.execute("CREATE FUNCTION fail_writes() RETURNS trigger AS $$ BEGIN "
                        "RAISE EXCEPTION 'disk full (test)'; END $$ LANGUAGE plpgsql")
            cur.execute(f"CREATE TRIGGER fail_writes BEFORE INSERT ON records FOR EACH ROW "
                        f"WHEN (NEW.server_id = '{sid}') EXECUTE FUNCTION fail_writes()")
        store.conn.commit()
    finally:
        store.close()


def test_provider_log_failure_returns_fault_not_the_answer(fed):
    assert post(fed.client_url, request()).status == 200
    _break_log(fed.provider)
    reply = post(fed.client_url, request())
    assert reply.fault_code == "Server.ServerProxy.MessageLogFailed"
    assert b"getBirthRecordResponse" not in reply.body


def test_consumer_log_failure_stops_the_request_before_it_leaves(fed):
    assert post(fed.client_url, request()).status == 200
    before = sum(len(v) for v in records_by_message(fed.provider).values())
    _break_log(fed.consumer)
    reply = post(fed.client_url, request())
    assert reply.fault_code == "Server.ClientProxy.MessageLogFailed"
    after = sum(len(v) for v in records_by_message(fed.provider).values())
    assert after == before  # nothing reached the provider unlogged


def _wait_listening(url: str, proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"tunduk run exited with {proc.returncode}: "
                                 f"{proc.stderr.read().decode()}")
        try:
            post(url, b"", method="GET")
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not come up")


def test_sigkill_during_load_loses_no_acknowledged_message(make_federation, echo_backend):
    svc = {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
           "url": echo_backend.url}
    files = make_federation(services=[svc], access=ACCESS,
                            messagelog={"backend": "sqlite"})
    tunduk = [sys.executable, "-m", "tunduk.server.cli", "run"]
    procs = [subprocess.Popen(tunduk + [str(s.server_toml)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
             for s in (files.provider, files.consumer)]
    try:
        url = f"http://127.0.0.1:{files.consumer.client_port}/"
        _wait_listening(url, procs[1])
        _wait_listening(f"http://127.0.0.1:{files.provider.client_port}/", procs[0])
        acknowledged: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def load():
            while not stop.is_set():
                mid = str(uuid.uuid4())
                try:
                    reply = post(url, request(message_id=mid))
                except OSError:
                    return  # the server is gone
                if reply.status == 200 and reply.fault_code is None:
                    with lock:
                        acknowledged.append(mid)

        threads = [threading.Thread(target=load) for _ in range(6)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(procs[1].pid, signal.SIGKILL)
        procs[1].wait(10)
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acknowledged) >= 60
        conf = files.consumer.conf()
        store = store_factory(conf.messagelog, conf.data_dir)()
        try:
            logged = {}
            for r in store.records(f"{conf.owner}/{conf.server_code}"):
                logged.setdefault(r.message_id, set()).add(r.direction)
            lost = [m for m in acknowledged if logged.get(m) != {"request", "response"}]
            assert lost == [], f"{len(lost)} acknowledged messages not in the log"
            assert verify_store(store, f"{conf.owner}/{conf.server_code}") == []
        finally:
            store.close()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def test_records_are_committed_on_the_loop(fed):
    """Every record goes through the loop writer (no writer thread in the exchange
    path): both servers' records of each exchange."""
    for _ in range(3):
        assert post(fed.client_url, request()).status == 200
    for node in (fed.consumer, fed.provider):
        log = node.message_log
        assert log.loop_writer is not None and log.loop_writer.committed == 6
        assert log.writer.committed == 0
