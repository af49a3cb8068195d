"""In-process micro-benchmarks: signing, envelope parsing, message-log writes.

Every loop is bounded by an iteration count *and* a time budget; figures are
operations per second.  Sign/verify run through ``tunduk.server.core.signing`` and,
on the same envelope, through python-xmlsec directly, so the wrapper's overhead shows
as a ratio.
"""
from __future__ import annotations

import copy
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
from lxml import etree

from tunduk.server.core import signing
from tunduk.server.core.envelope import parse_envelope, serialize

from .payload import CONTENT_TYPE, echo_request

WSU_ID = f"{{{signing.WSU_NS}}}Id"


def _rate(batch: Callable[[int], int], budget_s: float, max_ops: int,
          batch_size: int) -> dict:
    """Call ``batch(n)`` (returns ops done, timing itself) until time or count runs out."""
    done, spent = 0, 0.0
    wall_end = time.monotonic() + budget_s * 3 + 5   # setup time counts too, loosely
    while done < max_ops and spent < budget_s and time.monotonic() < wall_end:
        n = min(batch_size, max_ops - done)
        ops, secs = batch(n)
        done += ops
        spent += secs
    return {"ops": done, "seconds": round(spent, 4),
            "per_s": round(done / spent, 1) if spent > 0 else 0.0}


# ------------------------------------------------------------------- signing

class SignBench:
    """The same ~2 KB X-Road envelope signed and verified both ways."""

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
        self.unsigned = parse_envelope(echo_request(), CONTENT_TYPE).root
        signed = copy.deepcopy(self.unsigned)
        env = parse_envelope(serialize(signed), CONTENT_TYPE)
        signing.sign_envelope(env.root, self.key, list(env.xroad.elements))
        self.signed_bytes = serialize(env.root)
        self.signed = parse_envelope(self.signed_bytes, CONTENT_TYPE)
        self.required = self.signed.signed_parts()
        sec = self.signed.header.find(f"{{{signing.WSSE_NS}}}Security")
        self.sig_node = sec.find(f"{{{signing.DS_NS}}}Signature")
        self.id_nodes = [el for el in self.signed.root.iter() if el.get(WSU_ID)]

    def _copies(self, n: int) -> list:
        out = []
        for _ in range(n):
            root = copy.deepcopy(self.unsigned)
            out.append(root)
        return out

    @staticmethod
    def _xroad_headers(root) -> list:
        header = root.find(f"{{{signing.SOAP_NS}}}Header")
        return [h for h in header if isinstance(h.tag, str)]

    def tunduk_sign(self, n: int) -> tuple[int, float]:
        roots = self._copies(n)
        heads = [self._xroad_headers(r) for r in roots]
        t0 = time.perf_counter()
        for root, headers in zip(roots, heads):
            signing.sign_envelope(root, self.key, headers)
        return n, time.perf_counter() - t0

    def raw_sign(self, n: int) -> tuple[int, float]:
        """What a caller of python-xmlsec writes: ids, a timestamp, a template, sign
        (same references as tunduk: Body, the X-Road headers, the Timestamp)."""
        roots = self._copies(n)
        heads = [self._xroad_headers(r) for r in roots]
        t0 = time.perf_counter()
        for root, headers in zip(roots, heads):
            header = root.find(f"{{{signing.SOAP_NS}}}Header")
            body = root.find(f"{{{signing.SOAP_NS}}}Body")
            ts = etree.SubElement(header, f"{{{signing.WSU_NS}}}Timestamp")
            etree.SubElement(ts, f"{{{signing.WSU_NS}}}Created").text = "2026-01-01T00:00:00Z"
            sig = xmlsec.template.create(root, xmlsec.Transform.EXCL_C14N, self.raw_method)
            ctx = xmlsec.SignatureContext()
            for i, el in enumerate((body, *headers, ts)):
                el.set(WSU_ID, f"id-{i}")
                ref = xmlsec.template.add_reference(sig, xmlsec.Transform.SHA256,
                                                    uri=f"#id-{i}")
                xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
                ctx.register_id(el, "Id", signing.WSU_NS)
            header.insert(0, sig)
            ctx.key = self.raw_key
            ctx.sign(sig)
        return n, time.perf_counter() - t0

    def tunduk_verify(self, n: int) -> tuple[int, float]:
        root, required = self.signed.root, self.required
        t0 = time.perf_counter()
        for _ in range(n):
            signing.verify_envelope(root, self.trust, required)
        return n, time.perf_counter() - t0

    def raw_verify(self, n: int) -> tuple[int, float]:
        """python-xmlsec alone: register the ids, verify with the signer's key."""
        t0 = time.perf_counter()
        for _ in range(n):
            ctx = xmlsec.SignatureContext()
            for el in self.id_nodes:
                ctx.register_id(el, "Id", signing.WSU_NS)
            ctx.key = self.raw_pub
            ctx.verify(self.sig_node)
        return n, time.perf_counter() - t0


def bench_signing(keys: dict[str, tuple[bytes, bytes]], ca_pem: bytes, *,
                  budget_s: float, max_ops: int) -> dict:
    """``keys``: {"RSA-2048": (key_pem, cert_pem), "ECDSA P-256": ...}."""
    out: dict = {}
    for name, (key_pem, cert_pem) in keys.items():
        b = SignBench(key_pem, cert_pem, ca_pem)
        r = {"envelope_bytes": len(b.signed_bytes)}
        for op in ("tunduk_sign", "raw_sign", "tunduk_verify", "raw_verify"):
            getattr(b, op)(5)  # warm caches (certificate parsing, trust checks)
            r[op] = _rate(getattr(b, op), budget_s, max_ops, 100)
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
                     threads: tuple[int, ...] = (1, 8)) -> dict:
    """log() calls per second through the real store (group commit), per thread count."""
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
            t0 = time.perf_counter()
            deadline = time.monotonic() + budget_s
            for w in workers:
                w.join()
            secs = time.perf_counter() - t0
            total = sum(counts)
            out[f"threads_{n}"] = {"ops": total, "seconds": round(secs, 4),
                                   "per_s": round(total / secs, 1) if secs else 0.0}
    finally:
        mlog.close()
    return out
