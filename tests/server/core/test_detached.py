"""Detached signatures over the exact message bytes: round trips and every refusal."""
from __future__ import annotations

import base64
import copy
import hashlib
import re
from datetime import timedelta

import pytest
import xmlsec
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from tests.fixtures.certs_for_signing import NOW, make_ca, make_signing_cert
from tunduk.server.core import detached, errors, signing
from tunduk.server.core.errors import XRoadError

DS = signing.DS_NS
MESSAGE = b'<?xml version="1.0"?><s:Envelope xmlns:s="urn:s"><s:Body>12345</s:Body></s:Envelope>'
CTYPE = "text/xml; charset=utf-8"


@pytest.fixture(scope="module", params=["rsa", "ec"])
def key(request, ca):
    issued = make_signing_cert(ca, "KG/GOV/123", kind=request.param)
    return signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)


def sign(key, data=MESSAGE, **kw) -> bytes:
    return detached.sign_message(data, CTYPE, key, now=NOW, **kw)


def verify(sig, trust, data=MESSAGE, ctype=CTYPE, **kw):
    return detached.verify_message(data, ctype, sig, trust, now=kw.pop("now", NOW), **kw)


def expect(code: str, fn, *args, **kw) -> XRoadError:
    with pytest.raises(XRoadError) as ei:
        fn(*args, **kw)
    assert ei.value.code == code, ei.value.message
    return ei.value


def edit(sig: bytes, change) -> bytes:
    root = etree.fromstring(sig)
    change(root)
    return etree.tostring(root)


def ds(name: str) -> str:
    return f"{{{DS}}}{name}"


def test_round_trip_both_key_types(key, trust):
    v = verify(sign(key, request_hash="abc="), trust)
    assert v.cert_der == key.cert_der
    assert v.request_hash == "abc="
    assert abs((v.created - NOW).total_seconds()) < 1
    assert verify(sign(key), trust).request_hash is None


def test_layout(key):
    root = etree.fromstring(sign(key))
    assert [etree.QName(c).localname for c in root] == [
        "SignedInfo", "SignatureValue", "KeyInfo", "Object"]
    refs = root.findall(f"{ds('SignedInfo')}/{ds('Reference')}")
    assert [r.get("URI") for r in refs] == ["cid:message", "#props"]
    assert refs[0].findtext(ds("DigestValue")) == \
        base64.b64encode(hashlib.sha256(MESSAGE).digest()).decode()
    assert root.findtext(".//{urn:tunduk:xsd:signature:1}contentType") == CTYPE


def test_signature_verifies_with_plain_xmlsec(key):
    """Interoperability: the SignedInfo, as canonicalised by xmlsec itself, carries a
    signature that plain xmlsec accepts with the certificate's key."""
    root = etree.fromstring(sign(key))
    info = root.find(ds("SignedInfo"))
    value = base64.b64decode(root.findtext(ds("SignatureValue")))
    pem = key.cert.public_bytes(Encoding.PEM)
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(pem, xmlsec.constants.KeyDataFormatCertPem)
    method = info.find(ds("SignatureMethod")).get("Algorithm")
    ctx.verify_binary(etree.tostring(info, method="c14n", exclusive=True),
                      signing._XMLSEC_TRANSFORMS[method], value)


def test_changed_message_byte(key, trust):
    err = expect(errors.INVALID_SIGNATURE_VALUE, verify, sign(key), trust,
                 data=MESSAGE.replace(b"12345", b"12346"))
    assert "changed after signing" in err.message


def test_content_type_differs_from_signed(key, trust):
    err = expect(errors.INVALID_SIGNATURE_VALUE, verify, sign(key), trust,
                 ctype="text/xml; charset=iso-8859-1")
    assert "signed as 'text/xml; charset=utf-8'" in err.message


@pytest.mark.parametrize("target,new", [
    ("{urn:tunduk:xsd:signature:1}contentType", "text/plain"),
    ("{urn:tunduk:xsd:signature:1}requestHash", "forged="),
])
def test_changed_signed_property(key, trust, target, new):
    def change(root):
        root.find(f".//{target}").text = new
    err = expect(errors.INVALID_SIGNATURE_VALUE, verify,
                 edit(sign(key, request_hash="abc="), change), trust)
    assert "properties" in err.message


def test_changed_timestamp(key, trust):
    def change(root):
        el = root.find(".//{%s}Expires" % signing.WSU_NS)
        el.text = el.text.replace("20", "21", 1)
    expect(errors.INVALID_SIGNATURE_VALUE, verify, edit(sign(key), change), trust)


def test_changed_signature_value(key, trust):
    def change(root):
        el = root.find(ds("SignatureValue"))
        raw = bytearray(base64.b64decode(el.text))
        raw[len(raw) // 2] ^= 1
        el.text = base64.b64encode(bytes(raw)).decode()
    expect(errors.INVALID_SIGNATURE_VALUE, verify, edit(sign(key), change), trust)


def test_signature_of_another_signer_with_its_own_certificate(ca, trust, key):
    other = make_signing_cert(ca, "KG/GOV/999", kind="ec")
    other_key = signing.SigningKey.from_pem(other.key_pem, other.cert_pem)
    v = verify(sign(other_key), trust)       # valid: who signed is the caller's question
    assert str(signing.cert_member_id(v.cert)) == "KG/GOV/999"


def test_certificate_swapped_in_keyinfo(ca, trust, key):
    other = make_signing_cert(ca, "KG/GOV/999", kind="ec")
    b64 = base64.b64encode(other.cert.public_bytes(Encoding.DER)).decode()

    def change(root):
        root.find(f".//{ds('X509Certificate')}").text = b64
    if key.algorithm == "ecdsa-sha256":   # same key type: the value does not verify
        err = expect(errors.INVALID_SIGNATURE_VALUE, verify, edit(sign(key), change), trust)
        assert "another key" in err.message
    else:                                 # RSA method, EC certificate
        err = expect(errors.INVALID_SIGNATURE, verify, edit(sign(key), change), trust)
        assert "key type" in err.message


def test_certificate_from_foreign_ca(trust):
    rogue = make_ca("rogue")
    issued = make_signing_cert(rogue, "KG/GOV/123", kind="ec")
    k = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    expect(errors.CERT_VALIDATION, verify, sign(k), trust)


def test_expired_and_future_timestamps(key, trust):
    """Lifetime 300 s, clocks within 60 s: accepted from 60 s before Created to 60 s
    after Expires, and never again."""
    sig = sign(key)
    expect(errors.INVALID_TIMESTAMP, verify, sig, trust,
           now=NOW + timedelta(seconds=300 + 61))
    expect(errors.INVALID_TIMESTAMP, verify, sig, trust, now=NOW - timedelta(seconds=61))
    assert verify(sig, trust, now=NOW + timedelta(seconds=300 + 59)) is not None
    assert verify(sig, trust, now=NOW - timedelta(seconds=59)) is not None


@pytest.mark.parametrize("ttl", [301, 10 * 365 * 86400, 0, -5])
def test_signature_claiming_a_longer_or_no_lifetime_is_refused(key, trust, ttl):
    """A signature whose Expires is ten years after its Created was accepted: a
    signature may live at most the configured lifetime."""
    sig = sign(key, ttl=ttl)
    err = expect(errors.INVALID_TIMESTAMP, verify, sig, trust, now=NOW)
    assert "at most 300 s" in err.message


def test_each_signing_act_has_its_own_replay_key(key, trust):
    one, two = sign(key), sign(key)         # same bytes, same millisecond
    k1 = verify(one, trust, now=NOW).replay_key
    assert k1 == verify(one, trust, now=NOW).replay_key
    assert k1 != verify(two, trust, now=NOW).replay_key


def test_ecdsa_signatures_are_written_and_accepted_only_with_a_low_s(ca, trust):
    """(r, n - s) is a valid ECDSA signature too: accepted, it would pass for a second
    signing act of the same SignedInfo."""
    issued = make_signing_cert(ca, "KG/GOV/123", kind="ec")
    k = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    order = detached._CURVE_ORDERS["secp256r1"]
    for _ in range(8):      # half of raw ECDSA signatures have a high s
        sig = sign(k)
        value = re.search(rb"<ds:SignatureValue>([^<]*)<", sig).group(1)
        raw = base64.b64decode(value)
        assert int.from_bytes(raw[32:], "big") <= order // 2
        assert verify(sig, trust, now=NOW) is not None
        twin = raw[:32] + (order - int.from_bytes(raw[32:], "big")).to_bytes(32, "big")
        forged = sig.replace(value, base64.b64encode(twin))
        err = expect(errors.INVALID_SIGNATURE_VALUE, verify, forged, trust, now=NOW)
        assert "canonical" in err.message


@pytest.mark.parametrize("change,words", [
    (lambda r: r.find(ds("SignedInfo")).append(
        copy.deepcopy(r.find(ds("SignedInfo"))[-1])), "exactly"),
    (lambda r: r.find(ds("SignedInfo")).remove(r.find(ds("SignedInfo"))[-1]), "exactly"),
    (lambda r: r.find(f"{ds('SignedInfo')}/{ds('Reference')}").set("URI", "#other"),
     "URI"),
    (lambda r: r.find(f"{ds('SignedInfo')}/{ds('SignatureMethod')}").set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#hmac-sha1"), "not accepted"),
    (lambda r: r.find(f".//{ds('DigestMethod')}").set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1"), "not accepted"),
    (lambda r: r.find(ds("Object")).set("Id", "other"), "Id"),
    (lambda r: r.append(etree.Comment("x")), "unexpected"),
    (lambda r: r.append(etree.Element(ds("Object"))), "exactly"),
])
def test_other_shapes_are_refused(key, trust, change, words):
    err = expect(errors.INVALID_SIGNATURE, verify, edit(sign(key), change), trust)
    assert words in err.message


def test_missing_signature(trust):
    err = expect(errors.INVALID_SIGNATURE, verify, None, trust)
    assert "not signed" in err.message


@pytest.mark.parametrize("doc", [b"not xml", b"<other/>",
                                 b'<!DOCTYPE x [<!ENTITY e "x">]><x>&e;</x>',
                                 b"<a>" + b"x" * 40000 + b"</a>"])
def test_not_a_signature_document(trust, doc):
    expect(errors.INVALID_SIGNATURE, verify, doc, trust)


def test_header_encoding_round_trip_and_refusals(key):
    sig = sign(key)
    assert detached.from_header(detached.header_value(sig)) == sig
    assert detached.from_header(None) is None
    expect(errors.INVALID_SIGNATURE, detached.from_header, "not base64!")
    expect(errors.INVALID_SIGNATURE, detached.from_header, "A" * 50000)


def test_offline_check_of_a_logged_message(key):
    sig = sign(key)
    assert detached.check_logged(MESSAGE, CTYPE, sig, key.cert_der) is None
    assert "changed after signing" in detached.check_logged(MESSAGE + b" ", CTYPE, sig,
                                                            key.cert_der)
    assert "logged signer" in detached.check_logged(MESSAGE, CTYPE, sig, b"other")


@pytest.mark.parametrize("wrap", [
    lambda sig: b'<?xml version="1.0"?>' + sig,                 # a declaration before
    lambda sig: sig.decode().encode("utf-16"),                   # another encoding
    lambda sig: sig + b"<!--after-->",                           # something after
])
def test_signature_must_be_the_element_alone_in_utf8(key, trust, wrap):
    # the message log embeds the document as received: anything around the element
    # would make the logged record unreadable (a signer could deny its message)
    err = expect(errors.INVALID_SIGNATURE, verify, wrap(sign(key)), trust)
    assert "ds:Signature" in err.message


def test_non_ascii_digest_value_is_a_refusal_not_a_crash(key, trust):
    def change(root):
        root.find(f".//{ds('DigestValue')}").text = "é" * 44
    expect(errors.INVALID_SIGNATURE_VALUE, verify, edit(sign(key), change), trust)
    assert "changed after signing" in detached.check_logged(
        MESSAGE, CTYPE, edit(sign(key), change), key.cert_der)


def test_content_type_with_a_tab_is_logged_so_that_it_verifies_later(key):
    from tunduk.server.core.records import signed_message
    from tunduk.server.messagelog import envelope_check
    ctype = "text/xml;\tcharset=utf-8"
    sig = detached.sign_message(MESSAGE, ctype, key)
    logged = signed_message(MESSAGE, ctype, sig)
    assert envelope_check.check_signature(logged, key.cert_der) is None


def test_content_type_with_control_characters_is_not_signed(key):
    expect(errors.INVALID_CONTENT_TYPE, detached.sign_message, MESSAGE,
           "text/xml; x=\x01", key)


def test_a_re_serialised_signature_is_refused_with_the_reason(key, trust):
    # lxml writes empty elements as <x/>: the same XML, not the bytes that were signed
    sig = etree.tostring(etree.fromstring(sign(key)))
    assert sig != sign(key)
    err = expect(errors.INVALID_SIGNATURE, verify, sig, trust)
    assert "exact form" in err.message


@pytest.mark.filterwarnings("ignore::UserWarning")   # forged certificates
def test_every_single_byte_change_is_refused(key, trust):
    """No byte of the document can change and still verify: the exact form leaves no
    slack (no whitespace, no second base64 spelling, no other prefix or quoting)."""
    sig = sign(key, request_hash="abc=")
    accepted = []
    for i in range(len(sig)):
        for new in {sig[i] ^ 1, ord(" ") if sig[i] != ord(" ") else ord("x")}:
            changed = sig[:i] + bytes([new]) + sig[i + 1:]
            try:
                verify(changed, trust)
            except XRoadError:
                continue
            accepted.append((i, chr(sig[i]), chr(new)))
    assert accepted == []



def test_a_certificate_with_an_invalid_version_is_a_refusal_not_a_crash(key, trust):
    der = key.cert_der
    i = der.index(bytes.fromhex("a003020102"))        # [0] EXPLICIT INTEGER 2 (v3)
    bad = der[:i + 4] + b"\x03" + der[i + 5:]
    sig = sign(key).replace(key._cert_b64.encode(), base64.b64encode(bad))
    expect(errors.INCORRECT_CERTIFICATE, verify, sig, trust)
    assert "cannot be read" in detached.check_logged(MESSAGE, CTYPE, sig, key.cert_der)


@pytest.mark.parametrize("reformat", [
    lambda sig: etree.tostring(etree.fromstring(sig)),         # <x/> for empty elements
    lambda sig: re.sub(rb"(<ds:SignatureValue>)([^<]*)", lambda m: m.group(1) + b"\n".join(
        m.group(2)[i:i + 64] for i in range(0, len(m.group(2)), 64)), sig),   # wrapped
])
def test_records_in_another_formatting_still_verify_offline(key, trust, reformat):
    """An older version accepted any formatting of the same XML and logged it as
    received: archive verification must still read those records; live messages
    must come in the exact form."""
    sig = reformat(sign(key))
    assert sig != sign(key)
    assert detached.check_logged(MESSAGE, CTYPE, sig, key.cert_der) is None
    assert "changed after signing" in detached.check_logged(MESSAGE + b"x", CTYPE, sig,
                                                            key.cert_der)
    assert "exact form" in expect(errors.INVALID_SIGNATURE, verify, sig, trust).message


def test_a_record_of_a_large_message_verifies_offline(key, trust):
    # one base64 text node of over 10 MB: libxml2's default cap on a text node
    from tunduk.server.core.records import signed_message
    from tunduk.server.messagelog import envelope_check
    big = MESSAGE.replace(b"12345", b"<x>0123456789</x>" * 480_000)
    assert len(big) * 4 // 3 > 10_000_000
    sig = sign(key, data=big)
    assert verify(sig, trust, data=big) is not None
    logged = signed_message(big, CTYPE, sig)
    assert envelope_check.check_signature(logged, key.cert_der) is None
    assert envelope_check.logged_message(logged) == big


def test_a_message_signed_the_old_way_names_the_older_peer(trust):
    old = MESSAGE.replace(b"<s:Body>", b'<s:Header><wsse:Security xmlns:wsse="http://docs.'
                          b'oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-'
                          b'1.0.xsd"/></s:Header><s:Body>')
    err = expect(errors.INVALID_SIGNATURE, verify, None, trust, data=old)
    assert "from before detached signatures" in err.message
    assert "upgrade that server" in err.message
    assert "not a tunduk security server" in expect(
        errors.INVALID_SIGNATURE, verify, None, trust).message
