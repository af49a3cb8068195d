"""``python -m bench.pipeline``: CPU cost of one exchange through the sans-I/O core.

No sockets, no HTTP, no backend process: the consumer's ``ClientSide`` and the
provider's ``ServerSide`` are wired together in memory, as
tests/server/core/test_pipeline_pair.py does, and one full exchange is

    prepare (consumer) → accept (provider) → respond (provider) → finish (consumer)

for the ~1.7 KB echo request of the load benchmarks (bench/payload.py), EC keys and
the message log off (NullLog: records are still built, nothing is stored).  The
backend's answer (an echo response that echoes the X-Road headers, as the demo
registry does, with the request's text) is computed once, outside the timed loop.

Prints µs per exchange in thread CPU time and in wall time, over the whole run and
for the fastest and the median of ``--repeat`` rounds (on a shared machine the run
to run spread is large: compare minima, or alternate runs of the two versions);
``--profile`` adds a cProfile (thread CPU clock) top list by tottime and by cumtime.
``--threads N`` also runs N threads at once through the same two sides and prints
the process CPU per exchange: what the GIL hand-offs between threads cost (the
servers run each exchange in one of many threads).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from tunduk.server.core.client_side import ClientSide
from tunduk.server.core.server_side import ServerSide
from tunduk.server.core.signing import SigningKey, TrustAnchor
from tunduk.server.devfed import KeySource, build_federation, create_dev_ca
from tunduk.server.messagelog import NullLog
from tunduk.server.services.echo_headers import echo_into_response, request_xroad_headers

from .payload import CONTENT_TYPE, ECHO_TEXT, SOAP_ACTION, echo_request

ECHO_ANSWER = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<soap11env:Envelope xmlns:soap11env='
    b'"http://schemas.xmlsoap.org/soap/envelope/" xmlns:tns="http://registry.demo.tunduk.kg/">'
    b"<soap11env:Body><tns:echoResponse><tns:echoResult>%s</tns:echoResult>"
    b"</tns:echoResponse></soap11env:Body></soap11env:Envelope>")


def _side(cls, files):
    conf = files.conf()
    return cls(conf, SigningKey.load(conf.keys.sign_key, conf.keys.sign_cert),
               TrustAnchor.from_pem(conf.federation.ca_certs_pem), NullLog())


def make_exchange(work: Path, key_type: str = "ec") -> Callable[[], bytes]:
    """A function running one full exchange in memory; returns the client's answer."""
    ca = create_dev_ca(work / "ca")
    fed = build_federation(
        work / "fed", ca, keys=KeySource(ca, work / "keys"), key_type=key_type,
        services=[{"subsystem": "registry", "code": "echo", "version": "v1",
                   "url": "http://127.0.0.1:9/", "title": "echo (benchmark)"}],
        access=[{"service": "registry/echo", "clients": ["KG/GOV/70000002/centre"]}])
    consumer, provider = _side(ClientSide, fed.consumer), _side(ServerSide, fed.provider)
    peer = ssl.PEM_cert_to_DER_cert(fed.consumer.auth_cert.read_text())
    raw = echo_request()

    # The backend's answer, once: the demo registry echoes the X-Road headers.
    pending = consumer.prepare(raw, CONTENT_TYPE, SOAP_ACTION)
    accepted = provider.accept(pending.body, pending.content_type, peer, pending.signature)
    answer = echo_into_response(ECHO_ANSWER % ECHO_TEXT.encode(),
                                request_xroad_headers(accepted.backend_body))

    def exchange() -> bytes:
        pending = consumer.prepare(raw, CONTENT_TYPE, SOAP_ACTION)
        accepted = provider.accept(pending.body, pending.content_type, peer,
                                   pending.signature)
        signed = provider.respond(accepted, answer, "text/xml; charset=utf-8", 200)
        return consumer.finish(pending, signed, accepted.response_content_type, 200,
                               accepted.response_signature)

    out = exchange()
    if b"echoResult" not in out or b"requestHash" not in out:
        raise RuntimeError("the in-memory exchange did not produce the echo answer")
    return exchange


def measure(exchange: Callable[[], bytes], seconds: float, repeat: int = 1) -> dict:
    """Run exchanges for about ``seconds`` of wall time in ``repeat`` equal rounds;
    µs per exchange overall and per round (the minimum is the figure least disturbed
    by other work on a shared machine)."""
    for _ in range(20):   # warm caches (certificate checks, parsers)
        exchange()
    rounds = []
    for _ in range(max(1, repeat)):
        n = 0
        c0, w0 = time.thread_time(), time.perf_counter()
        end = w0 + seconds / max(1, repeat)
        while True:
            for _ in range(10):
                exchange()
            n += 10
            if time.perf_counter() >= end:
                break
        rounds.append((n, time.thread_time() - c0, time.perf_counter() - w0))
    n = sum(r[0] for r in rounds)
    per_round = sorted(r[1] / r[0] * 1e6 for r in rounds)
    return {"exchanges": n, "cpu_us": sum(r[1] for r in rounds) / n * 1e6,
            "wall_us": sum(r[2] for r in rounds) / n * 1e6,
            "cpu_us_min": per_round[0], "cpu_us_median": per_round[len(per_round) // 2]}


def measure_threads(exchange: Callable[[], bytes], seconds: float, threads: int) -> dict:
    """``threads`` threads running exchanges at once for about ``seconds``: process CPU
    (user + system, every thread) and wall time per exchange."""
    for _ in range(5):
        exchange()
    counts = [0] * threads
    end = time.perf_counter() + seconds

    def loop(i: int) -> None:
        while time.perf_counter() < end:
            exchange()
            counts[i] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    t0, w0 = os.times(), time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    t1, w1 = os.times(), time.perf_counter()
    n = max(1, sum(counts))
    cpu = (t1.user - t0.user) + (t1.system - t0.system)
    return {"threads": threads, "exchanges": sum(counts), "cpu_us": cpu / n * 1e6,
            "wall_us": (w1 - w0) / n * 1e6}


def profile(exchange: Callable[[], bytes], seconds: float, top: int) -> str:
    prof = cProfile.Profile(time.thread_time)
    end = time.perf_counter() + seconds
    prof.enable()
    while time.perf_counter() < end:
        exchange()
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pipeline")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="timed run length in wall seconds (default 5)")
    p.add_argument("--repeat", type=int, default=5,
                   help="split the run into this many rounds and also report the "
                        "fastest and the median round (default 5)")
    p.add_argument("--key-type", default="ec", choices=("ec", "rsa"))
    p.add_argument("--profile", action="store_true",
                   help="also print a cProfile (thread CPU time) top list")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--threads", type=int, default=0,
                   help="also run this many threads at once and print the process CPU "
                        "per exchange")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tunduk-bench-pipeline-") as tmp:
        exchange = make_exchange(Path(tmp), a.key_type)
        r = measure(exchange, a.seconds, a.repeat)
        print(f"pipeline ({a.key_type}, log off): {r['exchanges']} exchanges, "
              f"{r['cpu_us']:.0f} µs CPU/exchange (thread_time), "
              f"{r['wall_us']:.0f} µs wall/exchange; rounds of {a.repeat}: "
              f"min {r['cpu_us_min']:.0f} µs CPU, median {r['cpu_us_median']:.0f} µs CPU",
              flush=True)
        if a.threads > 0:
            t = measure_threads(exchange, a.seconds, a.threads)
            print(f"pipeline, {t['threads']} threads at once: {t['exchanges']} exchanges, "
                  f"{t['cpu_us']:.0f} µs process CPU/exchange, "
                  f"{t['wall_us']:.0f} µs wall/exchange", flush=True)
        if a.profile:
            print(profile(exchange, a.seconds, a.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
