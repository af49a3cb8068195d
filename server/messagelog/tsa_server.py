"""A small RFC 3161 time-stamping authority: ``tunduk tsa --key K --cert C --listen H:P``.

For development, tests and the demo; any RFC 3161 TSA works with the message log.
:func:`make_tsa_app` is the WSGI application; the command serves it with cheroot.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import secrets
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as a_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from . import tsa_pki
from .tsa_client import CONTENT_TYPE_QUERY, CONTENT_TYPE_REPLY

DEFAULT_POLICY = "1.3.6.1.4.1.59999.1.1"   # a private-arc policy id for development
MAX_REQUEST = 64 * 1024
_ALLOWED = {"sha256": 32, "sha384": 48, "sha512": 64}


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def _fail(status: str, info: str, text: str) -> bytes:
    # A TimeStampResp without a token (asn1crypto insists on one when dumping).
    si = tsp.PKIStatusInfo({"status": status, "status_string": [text],
                            "fail_info": {info}}).dump()
    return b"\x30" + _der_len(len(si)) + si


class TimeStamper:
    """Signs TSTInfo structures with one key; thread-safe serial numbers."""

    def __init__(self, key, cert: x509.Certificate, policy: str = DEFAULT_POLICY,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.key = key
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert = a_x509.Certificate.load(self.cert_der)
        self.policy = policy
        self.clock = clock
        self._lock = threading.Lock()

    def _serial(self) -> int:
        return secrets.randbits(64)

    def respond(self, request_der: bytes) -> bytes:
        """A DER TimeStampResp for a DER TimeStampReq (refusals are responses too)."""
        try:
            req = tsp.TimeStampReq.load(request_der)
            imprint = req["message_imprint"]
            algo = imprint["hash_algorithm"]["algorithm"].native
            digest = imprint["hashed_message"].native
            nonce = req["nonce"].native
            cert_req = bool(req["cert_req"].native)
            req_policy = req["req_policy"].native
        except Exception:
            return _fail("rejection", "bad_data_format", "malformed TimeStampReq")
        if algo not in _ALLOWED:
            return _fail("rejection", "bad_alg", f"unsupported hash algorithm {algo}")
        if len(digest) != _ALLOWED[algo]:
            return _fail("rejection", "bad_data_format", "digest length does not match")
        if req_policy is not None and req_policy != self.policy:
            return _fail("rejection", "unaccepted_policy", "unknown policy")
        tst = tsp.TSTInfo({
            "version": 1,
            "policy": self.policy,
            "message_imprint": {"hash_algorithm": {"algorithm": algo},
                                "hashed_message": digest},
            "serial_number": self._serial(),
            "gen_time": self.clock().replace(microsecond=0),
            "accuracy": {"seconds": 1},
            "ordering": False,
            **({"nonce": nonce} if nonce is not None else {}),
        })
        tst_der = tst.dump()
        token = self._sign(tst_der, cert_req)
        return tsp.TimeStampResp({"status": {"status": "granted"},
                                  "time_stamp_token": token}).dump()

    def _sign(self, content: bytes, include_cert: bool) -> cms.ContentInfo:
        signed_attrs = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(content).digest()]},
            {"type": "signing_certificate_v2", "values": [{
                "certs": [{"cert_hash": hashlib.sha256(self.cert_der).digest()}]}]},
        ])
        to_sign = signed_attrs.dump()
        if isinstance(self.key, rsa.RSAPrivateKey):
            sig = self.key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
            sig_algo = "sha256_rsa"
        elif isinstance(self.key, ec.EllipticCurvePrivateKey):
            sig = self.key.sign(to_sign, ec.ECDSA(hashes.SHA256()))
            sig_algo = "sha256_ecdsa"
        else:
            raise TypeError(f"unsupported TSA key type {type(self.key).__name__}")
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": {
                "issuer": self.cert.issuer, "serial_number": self.cert.serial_number}}),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": sig_algo}),
            "signature": sig,
        })
        sd = {
            "version": "v3",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(content)},
            "signer_infos": [signer],
        }
        if include_cert:
            sd["certificates"] = [self.cert]
        return cms.ContentInfo({"content_type": "signed_data",
                                "content": cms.SignedData(sd)})


def make_tsa_app(key, cert: x509.Certificate, policy: str = DEFAULT_POLICY):
    """WSGI app: POST application/timestamp-query → application/timestamp-reply."""
    stamper = TimeStamper(key, cert, policy)

    def app(environ, start_response) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST"),
                                                      ("Content-Type", "text/plain")])
            return [b"POST an RFC 3161 TimeStampReq (application/timestamp-query)\n"]
        ctype = environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if ctype != CONTENT_TYPE_QUERY:
            start_response("415 Unsupported Media Type", [("Content-Type", "text/plain")])
            return [b"expected Content-Type: application/timestamp-query\n"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length <= 0 or length > MAX_REQUEST:
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"missing or too large request body\n"]
        body = environ["wsgi.input"].read(length)
        resp = stamper.respond(body)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_REPLY),
                                  ("Content-Length", str(len(resp)))])
        return [resp]

    return app


def serve(app, host: str, port: int):
    """A started cheroot server (call .stop()); bound before this returns."""
    from cheroot import wsgi
    server = wsgi.Server((host, port), app, numthreads=4)
    server.prepare()
    thread = threading.Thread(target=server.serve, name="tsa", daemon=True)
    thread.start()
    return server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", required=True, type=Path, help="TSA private key (PEM)")
    parser.add_argument("--cert", required=True, type=Path, help="TSA certificate (PEM)")
    parser.add_argument("--listen", default="127.0.0.1:3180", help="HOST:PORT to listen on")
    parser.add_argument("--policy", default=DEFAULT_POLICY, help="TSA policy OID")
    parser.add_argument("--ca-key", type=Path,
                        help="with --ca-cert: create --key/--cert first if they are missing")
    parser.add_argument("--ca-cert", type=Path)


def run(args: argparse.Namespace) -> int:
    if not (args.key.exists() and args.cert.exists()):
        if not (args.ca_key and args.ca_cert):
            print(f"tunduk tsa: {args.key} or {args.cert} missing (give --ca-key and "
                  "--ca-cert to create them)", file=sys.stderr)
            return 2
        key, cert = tsa_pki.make_tsa_cert(tsa_pki.load_key(args.ca_key),
                                          tsa_pki.load_cert(args.ca_cert))
        tsa_pki.write_key(args.key, key)
        tsa_pki.write_cert(args.cert, cert)
        print(f"created TSA key {args.key} and certificate {args.cert}", file=sys.stderr)
    key = tsa_pki.load_key(args.key)
    cert = tsa_pki.load_cert(args.cert)
    host, _, port = args.listen.rpartition(":")
    from cheroot import wsgi
    server = wsgi.Server((host.strip("[]") or "127.0.0.1", int(port)),
                         make_tsa_app(key, cert, args.policy), numthreads=4)
    print(f"tunduk tsa: listening on http://{args.listen}/", file=sys.stderr)
    try:
        server.start()
    except KeyboardInterrupt:
        server.stop()
    return 0
