"""In-process micro-benchmarks: signing, envelope parsing, message-log writes.

Every loop is bounded by an iteration count *and* a time budget; figures are
operations per second.  Sign/verify run through ``tunduk.server.core.detached`` and,
on the same message bytes, through python-xmlsec directly, so the overhead of the
signature document shows as a ratio.
"""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tunduk.server.core import detached, records, signing
from tunduk.server.core.envelope import parse_envelope

from .payload import CONTENT_TYPE, echo_request

def _rate(batch: Callable[[int], tuple[int, float]], budget_s: float, max_ops: int,
          batch_size: int) -> dict:
    """Call ``batch(n)`` (returns ops done and the seconds they took) until time or
    count runs out."""
    return _rates({"_": batch}, budget_s, max_ops, batch_size)["_"]


def _rates(batches: dict[str, Callable[[int], tuple[int, float]]], budget_s: float,
           max_ops: int, batch_size: int) -> dict[str, dict]:
    """:func:`_rate` for several candidates at once, alternating them batch by batch
    (a few ms each): this machine's speed drifts by tens of per cent within minutes,
    and a ratio of two rates measured one after the other would show the drift."""
    done = dict.fromkeys(batches, 0)
    spent = dict.fromkeys(batches, 0.0)
    wall_end = time.monotonic() + (budget_s * 3 + 5) * len(batches)  # setup counts too
    while time.monotonic() < wall_end:
        open_ = [k for k in batches if done[k] < max_ops and spent[k] < budget_s]
        if not open_:
            break
        for k in open_:
            ops, secs = batches[k](min(batch_size, max_ops - done[k]))
            done[k] += ops
            spent[k] += secs
    return {k: {"ops": done[k], "seconds": round(spent[k], 4),
                "per_s": round(done[k] / spent[k], 1) if spent[k] > 0 else 0.0}
            for k in batches}


# ------------------------------------------------------------------- signing

class SignBench:
    """The same ~1.7 KB X-Road request signed and verified both ways: tunduk's detached
    signature document (core/detached.py) and python-xmlsec signing the bytes alone."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        self.key = signing.SigningKey.from_pem(key_pem, cert_pem)
        self.trust = signing.TrustAnchor.from_pem(ca_pem)
        self.raw_key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM)
        # the bare public key, as tunduk hands it to xmlsec (cheapest form)
        public = x509.load_pem_x509_certificate(cert_pem).public_key()
        spki = public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        self.raw_pub = xmlsec.Key.from_memory(spki, xmlsec.KeyFormat.DER)
        self.raw_method = (xmlsec.Transform.RSA_SHA256 if self.key.algorithm == "rsa-sha256"
                           else xmlsec.Transform.ECDSA_SHA256)
        self.message = echo_request()
        self.signature = detached.sign_message(self.message, CONTENT_TYPE, self.key)
        ctx = xmlsec.SignatureContext()
        ctx.key = self.raw_key
        self.raw_signature = ctx.sign_binary(self.message, self.raw_method)

    def logged_record(self) -> bytes:
        """What the message log keeps for this message (core/records.py)."""
        return records.signed_message(self.message, CONTENT_TYPE, self.signature)

    def tunduk_sign(self, n: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        for _ in range(n):
            detached.sign_message(self.message, CONTENT_TYPE, self.key)
        return n, time.perf_counter() - t0

    def raw_sign(self, n: int) -> tuple[int, float]:
        """python-xmlsec alone: a signature over the message bytes, nothing else."""
        t0 = time.perf_counter()
        for _ in range(n):
            ctx = xmlsec.SignatureContext()
            ctx.key = self.raw_key
            ctx.sign_binary(self.message, self.raw_method)
        return n, time.perf_counter() - t0

    def tunduk_verify(self, n: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        for _ in range(n):
            detached.verify_message(self.message, CONTENT_TYPE, self.signature, self.trust)
        return n, time.perf_counter() - t0

    def raw_verify(self, n: int) -> tuple[int, float]:
        """python-xmlsec alone: verify the bare signature with the signer's key."""
        t0 = time.perf_counter()
        for _ in range(n):
            ctx = xmlsec.SignatureContext()
            ctx.key = self.raw_pub
            ctx.verify_binary(self.message, self.raw_method, self.raw_signature)
        return n, time.perf_counter() - t0


def bench_signing(keys: dict[str, tuple[bytes, bytes]], ca_pem: bytes, *,
                  budget_s: float, max_ops: int) -> dict:
    """``keys``: {"RSA-2048": (key_pem, cert_pem), "ECDSA P-256": ...}."""
    out: dict = {}
    for name, (key_pem, cert_pem) in keys.items():
        b = SignBench(key_pem, cert_pem, ca_pem)
        r = {"message_bytes": len(b.message), "signature_bytes": len(b.signature)}
        for pair in (("tunduk_sign", "raw_sign"), ("tunduk_verify", "raw_verify")):
            for op in pair:
                getattr(b, op)(5)  # warm caches (certificate parsing, trust checks)
            r.update(_rates({op: getattr(b, op) for op in pair}, budget_s, max_ops, 50))
        r["sign_ratio"] = round(r["raw_sign"]["per_s"] / r["tunduk_sign"]["per_s"], 3)
        r["verify_ratio"] = round(r["raw_verify"]["per_s"] / r["tunduk_verify"]["per_s"], 3)
        out[name] = r
    return out


# ------------------------------------------------------------------- parsing

def bench_parse(*, budget_s: float, max_ops: int) -> dict:
    data = echo_request()

    def batch(n: int) -> tuple[int, float]:
        t0 = time.perf_counter()
        for _ in range(n):
            parse_envelope(data, CONTENT_TYPE, request=True)
        return n, time.perf_counter() - t0
    r = _rate(batch, budget_s, max_ops, 500)
    r["request_bytes"] = len(data)
    return r


# --------------------------------------------------------------- message log

def _records(envelope: bytes, cert_der: bytes):
    body_sha = hashlib.sha256(b"body").hexdigest()
    from tunduk.server.messagelog import LogRecord

    def make() -> "LogRecord":
        return LogRecord(message_id=str(uuid.uuid4()), client="KG/GOV/70000002/centre",
                         service="KG/GOV/70000001/registry/echo/v1", direction="request",
                         side="client", envelope=envelope, signature_cert_der=cert_der,
                         body_sha256=body_sha, created=datetime.now(timezone.utc))
    return make


def bench_messagelog(backend: str, data_dir: Path, envelope: bytes, cert_der: bytes, *,
                     dsn: Optional[str] = None, budget_s: float, max_ops: int,
                     threads: tuple[int, ...] = (1, 8),
                     loop_batches: tuple[int, ...] = (1, 100)) -> dict:
    """log() calls per second through the real store (group commit), per thread count;
    then the event loop's writer, per number of records committed together."""
    from tunduk.server.conf.model import MessageLogConf
    from tunduk.server.messagelog import open_message_log
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = MessageLogConf(backend=backend, path=data_dir / "bench.sqlite3"
                          if backend == "sqlite" else None, dsn=dsn)
    mlog = open_message_log(conf, data_dir, "KG/GOV/70000002/bench")
    make = _records(envelope, cert_der)
    out: dict = {}
    try:
        mlog.log(make())  # schema and connections ready
        for n in threads:
            per_thread = max(1, max_ops // n)
            counts = [0] * n
            deadline = time.monotonic() + budget_s
            start = threading.Barrier(n + 1)

            def loop(i: int) -> None:
                start.wait()
                while counts[i] < per_thread and time.monotonic() < deadline:
                    mlog.log(make())
                    counts[i] += 1
            workers = [threading.Thread(target=loop, args=(i,)) for i in range(n)]
            for w in workers:
                w.start()
            start.wait()
            t0, c0 = time.perf_counter(), time.process_time()
            deadline = time.monotonic() + budget_s
            for w in workers:
                w.join()
            secs, cpu = time.perf_counter() - t0, time.process_time() - c0
            total = sum(counts)
            out[f"threads_{n}"] = {"ops": total, "seconds": round(secs, 4),
                                   "per_s": round(total / secs, 1) if secs else 0.0,
                                   "cpu_us": round(1e6 * cpu / total, 1) if total else None}
        for batch in loop_batches:
            out[f"loop_{batch}"] = _loop_writer_rate(mlog, make, batch, budget_s, max_ops)
    finally:
        mlog.close()
    return out


def _loop_writer_rate(mlog, make, batch: int, budget_s: float, max_ops: int) -> dict:
    """Records per second and process CPU per record through the writer the event-loop
    engine uses (commits on the loop): ``batch`` records submitted in one turn of the
    loop and awaited together, again and again."""
    import asyncio
    loop = asyncio.new_event_loop()
    mlog.attach_loop(loop)

    async def run() -> tuple[int, float, float]:
        done, t0, c0 = 0, time.perf_counter(), time.process_time()
        deadline = time.monotonic() + budget_s
        while done < max_ops and time.monotonic() < deadline:
            futures = [mlog.submit_on_loop(make(), loop) for _ in range(batch)]
            errors = [e for e in await asyncio.gather(*futures) if e is not None]
            if errors:
                raise RuntimeError(errors[0])
            done += batch
        return done, time.perf_counter() - t0, time.process_time() - c0
    try:
        done, secs, cpu = loop.run_until_complete(run())
        loop.run_until_complete(mlog.detach_loop())
    finally:
        loop.close()
    return {"ops": done, "seconds": round(secs, 4),
            "per_s": round(done / secs, 1) if secs else 0.0,
            "cpu_us": round(1e6 * cpu / done, 1) if done else None}
