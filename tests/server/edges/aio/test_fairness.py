"""A hanging service does not starve the provider's other services."""
from __future__ import annotations

import asyncio
import concurrent.futures
import io
import threading

import pytest
from cheroot import wsgi

from tests.fixtures.exchange import echo_app
from tests.fixtures.pki import free_port
from tests.http_helpers import post
from tests.xroad_requests import request
from tunduk.server.core import errors
from tunduk.server.core.errors import XRoadError
from tunduk.server.edges.aio.fairness import ServiceSlots

CENTRE = ["KG/GOV/70000002/centre"]


def test_a_service_gets_its_slots_and_then_a_bounded_wait():
    async def scenario():
        slots = ServiceSlots(per_service=2, wait=0.05)
        release = asyncio.Event()

        async def hold(name):
            held = await slots.acquire(name)
            await release.wait()
            held.release()
        holders = [asyncio.create_task(hold("hang")) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(XRoadError) as ei:
            await slots.acquire("hang")
        (await slots.acquire("other")).release()   # another service is not held up
        release.set()
        await asyncio.gather(*holders)
        (await slots.acquire("hang")).release()    # free again
        return ei.value
    err = asyncio.run(scenario())
    assert err.code == errors.SERVICE_BUSY
    assert "2 requests to service hang are in progress" in err.message


@pytest.fixture
def gated_backend():
    """(URL, gate): the echo backend, except that ``hang`` waits for the gate."""
    gate = threading.Event()

    def gated(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        if b"<reg:hang>" in body:
            gate.wait(30)
        environ["wsgi.input"] = io.BytesIO(body)
        return echo_app(environ, start_response)
    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), gated, numthreads=16)
    server.prepare()
    threading.Thread(target=server.serve, daemon=True).start()
    yield f"http://127.0.0.1:{port}/", gate
    gate.set()
    server.stop()


def test_requests_hanging_on_one_service_leave_room_for_the_others(run_federation,
                                                                   gated_backend):
    """70 requests hanging on one service made every other service of the provider
    wait 27 s: each service may hold only its share of the connections."""
    url, gate = gated_backend
    services = [{"subsystem": "registry", "code": c, "version": "v1", "url": url}
                for c in ("hang", "getBirthRecord")]
    access = [{"service": f"registry/{c}", "clients": CENTRE}
              for c in ("hang", "getBirthRecord")]
    fed = run_federation(services=services, access=access)
    client = fed.consumer._loop.engine.client
    client.slots = ServiceSlots(per_service=3, wait=0.3)
    fed.provider._loop.engine.server.slots = ServiceSlots(per_service=3, wait=0.3)
    make = client._make_pool           # 4 connections to the provider (64 by default)

    def small(host, port):
        pool = make(host, port)
        pool.max_connections, pool._slots = 4, asyncio.Semaphore(4)
        return pool
    client.pools = type(client.pools)(small)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        hanging = [pool.submit(post, fed.client_url, request("hang")) for _ in range(6)]
        first = []          # the three beyond the service's share, refused in 0.3 s
        for f in concurrent.futures.as_completed(hanging, timeout=20):
            first.append(f)
            if len(first) == 3:
                break
        other = post(fed.client_url, request())     # while three still hang
        gate.set()
        rest = [f.result(timeout=30) for f in hanging if f not in first]
    assert [f.result().fault_code for f in first] == ["Server.ClientProxy.ServiceBusy"] * 3
    assert "3 requests to service KG/GOV/70000001/registry/hang" in \
        first[0].result().fault_string
    assert other.status == 200, other.body
    assert [r.status for r in rest] == [200] * 3


def test_slots_of_services_no_longer_in_use_are_forgotten():
    """Service codes are the caller's to choose: one slot table per code ever seen
    would grow without bound."""
    async def scenario():
        slots = ServiceSlots(per_service=2, wait=0.05)
        for i in range(100):
            held = await slots.acquire(f"svc{i}")
            held.release()
        first, second = await slots.acquire("a"), await slots.acquire("a")
        assert len(slots) == 1
        first.release()
        assert len(slots) == 1
        second.release()
        return len(slots)
    assert asyncio.run(scenario()) == 0
