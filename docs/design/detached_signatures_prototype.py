"""PROTOTYPE, not product code: one exchange with detached byte-level signatures
instead of in-envelope WS-Security, built from the same core steps, to measure what the
proposal in docs/design/detached-signatures.md would save.  From the repository root:

    .venv/bin/python docs/design/detached_signatures_prototype.py

It prints the in-memory CPU per exchange of the current pipeline (bench.pipeline) and
of the prototype, alternated.  Left out on purpose (a real implementation adds them):
strict structure checks of the signature document (it asserts), the clock-skew check,
multipart messages, the consumer's refusal of tunduk headers from clients.  It imports
private names of tunduk.server.core.signing and may break when those change.
"""
from __future__ import annotations
import base64, binascii, hashlib, hmac, sys, tempfile, time, ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path
sys.path.insert(0, ".")
import xmlsec
from lxml import etree
from tunduk.server.core import signing, exchange, errors
from tunduk.server.core.signing import (_XMLSEC_TRANSFORMS, _peer_cert, _utc_text, DS_NS,
                                        EXC_C14N, WSU_NS, _SHA256, _fragment_parser)
from tunduk.server.core.client_side import ClientSide, check_content_type
from tunduk.server.core.server_side import ServerSide, _with_request_hash
from tunduk.server.core.envelope import (parse_envelope, check_soap_action, envelope_from_parts,
                                         serialize, HEADER, REQUEST_HASH)
from tunduk.server.core.identifiers import XROAD_NS
from tunduk.server.core.records import make_record
from bench.pipeline import make_exchange, measure, _side, ECHO_ANSWER
from bench.payload import CONTENT_TYPE, ECHO_TEXT, SOAP_ACTION, echo_request
from tunduk.server.services.echo_headers import echo_into_response, request_xroad_headers

def b64(d): return binascii.b2a_base64(d, newline=False).decode()

def sign_detached(data: bytes, key, ttl=300) -> bytes:
    now = datetime.now(timezone.utc)
    obj = (f'<ds:Object xmlns:ds="{DS_NS}" Id="ts"><wsu:Timestamp xmlns:wsu="{WSU_NS}">'
           f'<wsu:Created>{_utc_text(now)}</wsu:Created><wsu:Expires>'
           f'{_utc_text(now + timedelta(seconds=ttl))}</wsu:Expires></wsu:Timestamp></ds:Object>')
    si = (f'<ds:SignedInfo xmlns:ds="{DS_NS}"><ds:CanonicalizationMethod Algorithm="{EXC_C14N}">'
          f'</ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="{key._method_uri}">'
          f'</ds:SignatureMethod><ds:Reference URI="cid:message"><ds:DigestMethod Algorithm="{_SHA256}">'
          f'</ds:DigestMethod><ds:DigestValue>{b64(hashlib.sha256(data).digest())}</ds:DigestValue>'
          f'</ds:Reference><ds:Reference URI="#ts"><ds:Transforms><ds:Transform Algorithm="{EXC_C14N}">'
          f'</ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="{_SHA256}"></ds:DigestMethod>'
          f'<ds:DigestValue>{b64(hashlib.sha256(obj.encode()).digest())}</ds:DigestValue></ds:Reference>'
          '</ds:SignedInfo>')
    ctx = xmlsec.SignatureContext(); ctx.key = key._key
    raw = ctx.sign_binary(si.encode(), _XMLSEC_TRANSFORMS[key._method_uri])
    return (f'<ds:Signature xmlns:ds="{DS_NS}">{si}<ds:SignatureValue>{b64(raw)}</ds:SignatureValue>'
            f'<ds:KeyInfo><ds:X509Data><ds:X509Certificate>{key._cert_b64}</ds:X509Certificate>'
            f'</ds:X509Data></ds:KeyInfo>{obj}</ds:Signature>').encode()

D = "{%s}" % DS_NS
def verify_detached(data: bytes, sig: bytes, trust):
    root = etree.fromstring(sig, _fragment_parser())
    si, sv, ki, obj = root[0], root[1], root[2], root[3]
    assert si.tag == D + "SignedInfo" and sv.tag == D + "SignatureValue" and obj.get("Id") == "ts"
    method = si[1].get("Algorithm")
    r1, r2 = si[2], si[3]
    assert r1.get("URI") == "cid:message" and r2.get("URI") == "#ts"
    if not hmac.compare_digest(r1[1].text, b64(hashlib.sha256(data).digest())):
        raise errors.XRoadError(errors.INVALID_SIGNATURE_VALUE, "message changed")
    if not hmac.compare_digest(r2[2].text, b64(hashlib.sha256(
            etree.tostring(obj, method="c14n", exclusive=True)).digest())):
        raise errors.XRoadError(errors.INVALID_SIGNATURE_VALUE, "timestamp changed")
    der = base64.b64decode(ki[0][0].text)
    cert, xkey, kt = _peer_cert(der)
    trust.validate(cert, usage="signing")
    ctx = xmlsec.SignatureContext(); ctx.key = xkey
    ctx.verify_binary(etree.tostring(si, method="c14n", exclusive=True), _XMLSEC_TRANSFORMS[method],
                      base64.b64decode(sv.text))
    ts = obj[0]
    created = datetime.fromisoformat(ts[0].text); expires = datetime.fromisoformat(ts[1].text)
    return cert, der

def make_detached_exchange(work: Path):
    current = make_exchange(work / "cur")   # builds a federation under work/cur
    from tunduk.server.devfed import KeySource, build_federation, create_dev_ca
    ca = create_dev_ca(work / "ca")
    fed = build_federation(work / "fed", ca, keys=KeySource(ca, work / "keys"), key_type="ec",
        services=[{"subsystem": "registry", "code": "echo", "version": "v1",
                   "url": "http://127.0.0.1:9/", "title": "echo"}],
        access=[{"service": "registry/echo", "clients": ["KG/GOV/70000002/centre"]}])
    cons, prov = _side(ClientSide, fed.consumer), _side(ServerSide, fed.provider)
    peer = ssl.PEM_cert_to_DER_cert(fed.consumer.auth_cert.read_text())
    raw = echo_request()
    answer = None

    def exchange_() -> bytes:
        nonlocal answer
        # consumer: prepare (the client's bytes go on unchanged)
        check_content_type(CONTENT_TYPE)
        env = parse_envelope(raw, CONTENT_TYPE, request=True)
        check_soap_action(SOAP_ACTION, env.xroad.service.service_code)
        cons.check_client(env); cons.find_provider_servers(env)
        digest = exchange.request_hash(raw)
        sig = sign_detached(raw, cons.signer)
        cons.log.log(make_record(env, raw, direction="request", side="client", cert_der=cons.signer.cert_der))
        # provider: accept
        penv = parse_envelope(raw, CONTENT_TYPE, request=True)
        prov.check_peer(penv, peer)
        cert, der = verify_detached(raw, sig, prov.trust)
        assert signing.cert_member_id(cert) == penv.xroad.client.member
        prov.find_service(penv); prov.check_access(penv)
        prov.log.log(make_record(penv, raw, direction="request", side="server", cert_der=der))
        pdigest = exchange.request_hash(raw)
        backend_body = raw
        if answer is None:
            answer = echo_into_response(ECHO_ANSWER % ECHO_TEXT.encode(), request_xroad_headers(backend_body))
        # provider: respond
        msg, a, root, header, body = prov.parse_answer(answer, "text/xml; charset=utf-8", 200, "the service")
        xroad = prov.align_headers(penv, header)
        hash_el = etree.SubElement(header, REQUEST_HASH, nsmap={"xrd": XROAD_NS})
        hash_el.set("algorithmId", exchange.SHA512_URI); hash_el.text = pdigest
        xroad = _with_request_hash(xroad, pdigest, exchange.SHA512_URI, xroad.elements + (hash_el,))
        renv = envelope_from_parts(root, header, body, request=False, xroad=xroad)
        signed = serialize(root)
        rsig = sign_detached(signed, prov.signer)
        prov.log.log(make_record(renv, signed, direction="response", side="server", cert_der=prov.signer.cert_der))
        # consumer: finish (the provider's bytes go to the client unchanged)
        msg, b, root2, header2, body2 = cons.parse_answer(signed, CONTENT_TYPE, 200, "provider")
        fenv = envelope_from_parts(root2, header2, body2, request=False)
        cert2, der2 = verify_detached(signed, rsig, cons.trust)
        assert signing.cert_member_id(cert2) == env.xroad.service.member
        assert fenv.xroad.request_hash == digest and env.xroad.first_difference(fenv.xroad) is None
        cons.log.log(make_record(fenv, signed, direction="response", side="client", cert_der=der2))
        return signed
    out = exchange_()
    assert b"echoResult" in out and b"requestHash" in out
    return current, exchange_

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        cur, det = make_detached_exchange(Path(tmp))
        for rnd in range(4):
            for name, ex in (("ws-security (current)", cur), ("detached (prototype)", det)):
                r = measure(ex, 3, 3)
                print(f"round {rnd+1} {name:22s}: median {r['cpu_us_median']:.0f} µs, min {r['cpu_us_min']:.0f} µs CPU/exchange", flush=True)
