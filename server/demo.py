"""``tunduk demo``: two agencies exchange a citizen's records through their security servers.

The story: a public service centre (the consumer) fetches a citizen's birth and
residence records from the civil registry (the provider) instead of sending the
citizen there.  Everything runs on loopback with a freshly generated development PKI.
Each hop is reported from what the security servers themselves recorded in their
message logs (a record is written only after its signature was made or verified).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import tempfile
import time
import uuid
from pathlib import Path

from lxml import etree

from .core.identifiers import ServiceId
from .devfed import xroad_request as build_request
from .core.signing import cert_member_id

CITIZEN = "21505198800011"
REGISTRY_SPEC = "tunduk.server.services.civil_registry:application"
REGISTRY_NS = "http://registry.demo.tunduk.kg/"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICES = [
    {"subsystem": "registry", "code": "getBirthRecord", "version": "v1",
     "spyne": REGISTRY_SPEC, "title": "Birth record of a citizen"},
    {"subsystem": "registry", "code": "getResidenceRecord", "version": "v1",
     "spyne": REGISTRY_SPEC, "title": "Registered residence of a citizen"},
    {"subsystem": "registry", "code": "echo", "version": "v1",
     "spyne": REGISTRY_SPEC, "title": "Echo (for tests and benchmarks)"},
]
ACCESS = [
    {"service": "registry/getBirthRecord", "clients": ["KG/GOV/70000002/centre"]},
    {"service": "registry/getResidenceRecord", "clients": ["KG/GOV/70000002/centre"]},
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--serve", action="store_true",
                   help="keep the federation running for exploring (Ctrl-C stops it)")
    p.add_argument("--dir", type=Path, default=None,
                   help="where to write the federation (default: a temporary directory)")
    p.add_argument("--key-type", choices=("ec", "rsa"), default="ec",
                   help="signing and TLS key type (default: ec, ECDSA P-256)")


class Demo:
    def __init__(self, base: Path, key_type: str) -> None:
        from .devfed import build_federation, create_dev_ca
        from .node import Node
        ca_dir = base / "dev-ca"
        ca_dir.mkdir(parents=True, exist_ok=True)
        ca = create_dev_ca(ca_dir)
        self.tsa, tsa_url, tsa_cert = _start_tsa(ca, base / "tsa")
        messagelog = {"backend": "sqlite", "tsa_url": tsa_url, "tsa_cert": str(tsa_cert),
                      "timestamp_interval": 1.0}
        self.files = build_federation(base / "federation", ca, key_type=key_type,
                                      services=SERVICES, access=ACCESS,
                                      messagelog=messagelog)
        self.provider = Node.from_conf(self.files.provider.conf())
        self.consumer = Node.from_conf(self.files.consumer.conf())

    def start(self) -> None:
        self.provider.start()
        self.consumer.start()

    def stop(self) -> None:
        self.consumer.stop()
        self.provider.stop()
        self.tsa.stop()

    def wait_timestamped(self, timeout: float = 10.0) -> list[str]:
        """One line per server once its log is covered by a time-stamp (or timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            states = [(n, n.message_log.status()) for n in (self.consumer, self.provider)]
            done = all(st.get("last_timestamped_seq") == st.get("last_seq") for _, st in states)
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        from .node import server_id
        return [f"  SERVER:{server_id(n.conf)}: {st.get('records')} records in a hash chain, "
                f"time-stamped up to seq {st.get('last_timestamped_seq')} "
                f"(timestamping {st.get('timestamping')})" for n, st in states]

    def call(self, request: bytes) -> tuple[int, bytes]:
        import http.client
        host, port = self.consumer.client_proxy_url.rsplit("//", 1)[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            conn.request("POST", "/", body=request,
                         headers={"Content-Type": "text/xml; charset=utf-8"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def log_records(self, node, message_id: str) -> list:
        """What ``node`` logged for this message: (direction, side, signer subject)."""
        from cryptography import x509
        store = getattr(node.message_log, "_factory", None)
        if store is None:
            return []
        from .node import server_id
        s = store()
        try:
            rows = s.search(server_id(node.conf), message_id=message_id)
        finally:
            s.close()
        out = []
        for r in rows:
            cert = x509.load_der_x509_certificate(r.signature_cert_der)
            org = cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
            who = f"{cert_member_id(cert)} ({org[0].value})" if org else str(cert_member_id(cert))
            out.append((r.seq, r.direction, r.side, who))
        return out


def _start_tsa(ca, directory: Path):
    """The demo's RFC 3161 time-stamping authority, certified by the development CA."""
    from .devfed import free_port
    from .messagelog.tsa_pki import load_cert, load_key, make_tsa_cert, write_cert, write_key
    from .messagelog.tsa_server import make_tsa_app, serve
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = make_tsa_cert(load_key(ca.key), load_cert(ca.cert))
    write_key(directory / "tsa.key", key)
    write_cert(directory / "tsa.pem", cert)
    port = free_port()
    server = serve(make_tsa_app(key, cert), "127.0.0.1", port)
    return server, f"http://127.0.0.1:{port}/", directory / "tsa.pem"


def _print(text: str = "") -> None:
    print(text, flush=True)


def _short(el) -> str:
    parts = []
    for child in el.iter():
        if child is el or len(child):
            continue
        parts.append(f"{etree.QName(child).localname}={(child.text or '').strip()}")
    return ", ".join(parts)


def exchange(demo: Demo, service: ServiceId, payload: str, expect_fault: str | None = None
             ) -> bool:
    message_id = str(uuid.uuid4())
    request = build_request(service, payload, message_id)
    _print(f"\n== {service.service_code}: the service centre asks for citizen {CITIZEN} ==")
    _print(f"  1. centre system → own security server   POST {demo.consumer.client_proxy_url}/"
           f"  (xroad:id {message_id})")
    started = time.perf_counter()
    status, body = demo.call(request)
    elapsed = (time.perf_counter() - started) * 1000
    root = etree.fromstring(body)
    payload_el = root.find(f"{{{SOAP}}}Body")[0]
    fault = payload_el.findtext("faultcode") if etree.QName(payload_el).localname == "Fault" \
        else None
    cons, prov = demo.files.consumer, demo.files.provider
    cons_srv, prov_srv = f"SERVER:{cons.member}/{cons.code}", f"SERVER:{prov.member}/{prov.code}"
    c_logs = {(d, s): (seq, subj) for seq, d, s, subj in demo.log_records(demo.consumer, message_id)}
    p_logs = {(d, s): (seq, subj) for seq, d, s, subj in demo.log_records(demo.provider, message_id)}
    hops = (
        (c_logs, ("request", "client"),
         "2. {cons} signed the request as {subj}, logged it (seq {seq}) and sent it over "
         "mutual TLS to {prov}"),
        (p_logs, ("request", "server"),
         "3. {prov} checked the TLS peer is a server of {member}, verified the signature "
         "of {subj}, checked access, logged it (seq {seq})"),
        (p_logs, ("response", "server"),
         "4. {prov} called the registry backend, signed its answer as {subj} with the "
         "requestHash, logged it (seq {seq})"),
        (c_logs, ("response", "client"),
         "5. {cons} verified the signature of {subj} and the requestHash, logged it "
         "(seq {seq}) and answered the centre system"),
    )
    for logs, key, text in hops:    # only what the servers really logged is told
        if key in logs:
            seq, subj = logs[key]
            _print("  " + text.format(cons=cons_srv, prov=prov_srv, member=cons.member,
                                      subj=subj, seq=seq))
    if fault:
        _print(f"  ✗ fault {fault}: {payload_el.findtext('faultstring')}  ({elapsed:.0f} ms)")
        ok = fault == expect_fault
    else:
        _print(f"  ✓ HTTP {status} in {elapsed:.0f} ms: {etree.QName(payload_el).localname}")
        _print(f"    {_short(payload_el)}")
        ok = expect_fault is None and status == 200 and len(c_logs) == 2 and len(p_logs) == 2
    if not ok:
        _print(f"  !! unexpected outcome (expected {expect_fault or 'success'})")
    return ok


def curl_command(demo: Demo) -> str:
    prov = demo.files.provider
    service = ServiceId(prov.member.instance, prov.member.member_class,
                        prov.member.member_code, "registry", "getBirthRecord", "v1")
    request = build_request(service, f"<reg:personalCode>{CITIZEN}</reg:personalCode>",
                            str(uuid.uuid4())).decode()
    return (f"curl -s -H 'Content-Type: text/xml; charset=utf-8' --data-binary "
            f"{shlex.quote(request)} {demo.consumer.client_proxy_url}/")


def run(args) -> int:
    # Faults are part of the story here and printed by the demo itself.
    logging.getLogger("tunduk").setLevel(logging.ERROR)
    base = args.dir or Path(tempfile.mkdtemp(prefix="tunduk-demo-"))
    _print("tunduk demo: a public service centre gets a citizen's records from the civil "
           "registry,\nthrough both agencies' security servers (loopback, development PKI)")
    _print(f"  generating keys and configuration in {base} …")
    demo = Demo(base, args.key_type)
    demo.start()
    try:
        p, c = demo.files.provider, demo.files.consumer
        _print(f"  provider  {p.member_name:<22} {p.member}  server proxy "
               f"https://127.0.0.1:{p.server_port}")
        _print(f"  consumer  {c.member_name:<22} {c.member}  client proxy "
               f"{demo.consumer.client_proxy_url}")
        sid = ServiceId(p.member.instance, p.member.member_class, p.member.member_code,
                        "registry", "getBirthRecord", "v1")
        ok = exchange(demo, sid, f"<reg:personalCode>{CITIZEN}</reg:personalCode>")
        sid = ServiceId(sid.instance, sid.member_class, sid.member_code, "registry",
                        "getResidenceRecord", "v1")
        ok &= exchange(demo, sid, f"<reg:personalCode>{CITIZEN}</reg:personalCode>")
        sid = ServiceId(sid.instance, sid.member_class, sid.member_code, "registry", "echo",
                        "v1")
        _print("\n(the centre has no access right to 'echo': the registry's server refuses)")
        ok &= exchange(demo, sid, "<reg:text>hello</reg:text>",
                       expect_fault="Server.ServerProxy.AccessDenied")
        _print("\nMessage logs (every signed message, before any answer was released):")
        for line in demo.wait_timestamped():
            _print(line)
        if args.serve:
            _print("\nThe federation is up. Client proxy (for local systems): "
                   f"{demo.consumer.client_proxy_url}/")
            url = demo.consumer.client_proxy_url
            _print("Try:\n" + curl_command(demo))
            _print("\nWSDL for developers (zeep: python -m zeep '<url>'):\n  "
                   f"{url}/wsdl?xRoadInstance=KG&memberClass=GOV&memberCode=70000001"
                   "&subsystemCode=registry&serviceCode=getBirthRecord&version=v1")
            _print(f"Members and subsystems: {url}/listClients")
            _print(f"Health (message log, time-stamping): {url}/healthz")
            _print(f"Configuration and keys: {base}")
            _print("\nCtrl-C stops it.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                _print("stopping")
        _print("\ndemo " + ("completed: every exchange signed, verified and logged on both "
                            "sides" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        demo.stop()
