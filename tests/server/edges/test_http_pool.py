"""The keep-alive pool: bounded answers, and whether a failed request may be retried."""
from __future__ import annotations

import threading

import pytest
from cheroot import wsgi

from tests.fixtures.pki import free_port
from tunduk.server.edges.http_pool import Pool, TransportError


@pytest.fixture
def big_answer_server():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/xml")])
        return [b"<a>" + b"x" * 5000 + b"</a>"]

    port = free_port()
    server = wsgi.Server(("127.0.0.1", port), app, numthreads=2)
    server.prepare()
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    yield port
    server.stop()
    t.join(5)


def test_answer_larger_than_the_limit_is_refused(big_answer_server):
    pool = Pool("127.0.0.1", big_answer_server, max_response_bytes=1000)
    with pytest.raises(TransportError) as ei:
        pool.post("/", b"<q/>", {"Content-Type": "text/xml"})
    assert "larger than 1000 bytes" in str(ei.value)
    assert ei.value.sent  # the request did reach the server
    ok = Pool("127.0.0.1", big_answer_server).post("/", b"<q/>", {"Content-Type": "text/xml"})
    assert ok.status == 200 and len(ok.body) == 5007


def test_connect_failure_is_marked_not_sent():
    with pytest.raises(TransportError) as ei:
        Pool("127.0.0.1", free_port(), timeout=5).post("/", b"<q/>", {})
    assert ei.value.sent is False
    assert "refused" in str(ei.value)
