"""A bounded fuzz of the envelope parser and the signature verifier: whatever bytes
arrive, the answer is an XRoadError (a fault with a code), never another exception."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.certs_for_signing import make_ca, make_signing_cert
from tests.xroad_requests import request
from tunduk.server.core import detached, signing
from tunduk.server.core.envelope import parse_envelope
from tunduk.server.core.errors import XRoadError

REQUEST = request()
CTYPES = st.sampled_from(["text/xml; charset=utf-8", "text/xml", "application/xml",
                          "text/xml; charset=utf-16", "text/xml; charset=windows-1251"])


@st.composite
def mutated(draw, base: bytes) -> bytes:
    """``base`` with a few bytes replaced, inserted or cut out."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["replace", "insert", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if kind == "replace":
            data[i:i + len(chunk)] = chunk
        elif kind == "insert":
            data[i:i] = chunk
        else:
            del data[i:i + len(chunk)]
    return bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(mutated(REQUEST), st.binary(max_size=300)), ctype=CTYPES)
def test_the_envelope_parser_answers_any_bytes_with_a_fault(data, ctype):
    try:
        parse_envelope(data, ctype, request=True)
    except XRoadError:
        pass


@pytest.fixture(scope="module")
def signed():
    ca = make_ca("fuzz")
    issued = make_signing_cert(ca, "KG/GOV/70000002", kind="ec")
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    trust = signing.TrustAnchor.from_pem(ca.cert_pem)
    now = datetime.now(timezone.utc)
    sig = detached.sign_message(REQUEST, "text/xml; charset=utf-8", key, now=now,
                                request_hash="x")
    assert detached.verify_message(REQUEST, "text/xml; charset=utf-8", sig, trust, now=now)
    return sig, trust, now


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_signature_verifier_answers_any_signature_with_a_fault(signed, data):
    sig, trust, now = signed
    forged = data.draw(st.one_of(mutated(sig), st.binary(max_size=200)))
    try:
        detached.verify_message(REQUEST, "text/xml; charset=utf-8", forged, trust, now=now)
    except XRoadError:
        return
    assert forged == sig or detached.verify_message(     # accepted: still that signature
        REQUEST, "text/xml; charset=utf-8", forged, trust, now=now).replay_key == \
        detached.verify_message(REQUEST, "text/xml; charset=utf-8", sig, trust,
                                now=now).replay_key
