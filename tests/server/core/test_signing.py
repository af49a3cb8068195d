"""WS-Security signing between security servers: round trips and every refusal."""
from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from lxml import etree

from tunduk.server.core import errors, signing
from tunduk.server.core.errors import XRoadError
from tunduk.server.core.identifiers import MemberId
from tests.fixtures.certs_for_signing import NOW, make_ca, make_signing_cert

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
XRD = "http://x-road.eu/xsd/xroad.xsd"
ID = "http://x-road.eu/xsd/identifiers"
WSSE = signing.WSSE_NS
WSU = signing.WSU_NS
DS = signing.DS_NS

ENVELOPE = f"""<soap:Envelope xmlns:soap="{SOAP}" xmlns:xrd="{XRD}" xmlns:id="{ID}">
 <soap:Header>
  <xrd:client id:objectType="SUBSYSTEM"><id:xRoadInstance>KG</id:xRoadInstance>
   <id:memberClass>GOV</id:memberClass><id:memberCode>123</id:memberCode>
   <id:subsystemCode>app</id:subsystemCode></xrd:client>
  <xrd:service id:objectType="SERVICE"><id:xRoadInstance>KG</id:xRoadInstance>
   <id:memberClass>GOV</id:memberClass><id:memberCode>456</id:memberCode>
   <id:subsystemCode>reg</id:subsystemCode><id:serviceCode>getPerson</id:serviceCode>
  </xrd:service>
  <xrd:id>4894e35d-bf0f-44a6-867a-8e51f1daa7e0</xrd:id>
  <xrd:protocolVersion>4.0</xrd:protocolVersion>
 </soap:Header>
 <soap:Body><p:getPerson xmlns:p="urn:example:persons"><p:pin>12345</p:pin></p:getPerson>
 </soap:Body>
</soap:Envelope>""".encode()


@pytest.fixture(scope="module")
def ca():
    return make_ca()


@pytest.fixture(scope="module")
def trust(ca):
    return signing.TrustAnchor.from_pem(ca.cert_pem)


@pytest.fixture(scope="module", params=["rsa", "ec"])
def key(request, ca):
    issued = make_signing_cert(ca, "KG/GOV/123", kind=request.param)
    return signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)


@pytest.fixture(scope="module")
def rsa_key(ca):
    issued = make_signing_cert(ca, "KG/GOV/123", kind="rsa")
    return signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data, etree.XMLParser(resolve_entities=False))


def xroad_headers(env: etree._Element) -> list[etree._Element]:
    return [el for el in env.find(f"{{{SOAP}}}Header")
            if etree.QName(el).namespace == XRD]


def required(env: etree._Element) -> list[etree._Element]:
    return [env.find(f"{{{SOAP}}}Body"), *xroad_headers(env)]


def signed_bytes(key, **kw) -> bytes:
    env = parse(ENVELOPE)
    signing.sign_envelope(env, key, xroad_headers(env), **kw)
    return etree.tostring(env)


def verify(data_or_env, trust, **kw):
    env = parse(data_or_env) if isinstance(data_or_env, bytes) else data_or_env
    return signing.verify_envelope(env, trust, required(env), **kw)


def expect(code: str, fn, *args, **kw) -> XRoadError:
    with pytest.raises(XRoadError) as info:
        fn(*args, **kw)
    assert info.value.code == code, info.value.message
    assert info.value.message
    return info.value


# ----------------------------------------------------------------- round trips

def test_round_trip_both_key_types(key, trust):
    data = signed_bytes(key)
    result = verify(data, trust)
    assert result.cert_der == key.cert_der
    assert abs(result.created - NOW) < timedelta(hours=1)
    assert len(result.signature_value) > 0


def test_algorithm_follows_key_type(ca):
    rsa_issued = make_signing_cert(ca, kind="rsa")
    ec_issued = make_signing_cert(ca, kind="ec")
    assert signing.SigningKey.from_pem(rsa_issued.key_pem,
                                       rsa_issued.cert_pem).algorithm == "rsa-sha256"
    assert signing.SigningKey.from_pem(ec_issued.key_pem,
                                       ec_issued.cert_pem).algorithm == "ecdsa-sha256"


def test_layout_of_security_header(key):
    env = parse(signed_bytes(key))
    header = env.find(f"{{{SOAP}}}Header")
    sec = header[0]
    assert sec.tag == f"{{{WSSE}}}Security"
    assert sec.get(f"{{{SOAP}}}mustUnderstand") == "1"
    bst = sec.find(f"{{{WSSE}}}BinarySecurityToken")
    assert bst.get("ValueType").endswith("#X509v3")
    assert bst.get("EncodingType").endswith("#Base64Binary")
    created = sec.find(f"{{{WSU}}}Timestamp/{{{WSU}}}Created").text
    assert created.endswith("Z")
    uris = {r.get("URI") for r in sec.iterfind(f".//{{{DS}}}Reference")}
    expected = {"#" + el.get(f"{{{WSU}}}Id") for el in required(env)}
    expected.add("#" + sec.find(f"{{{WSU}}}Timestamp").get(f"{{{WSU}}}Id"))
    assert uris == expected
    method = sec.find(f".//{{{DS}}}SignatureMethod").get("Algorithm")
    assert method.endswith(key.algorithm)


def test_sign_creates_missing_header(rsa_key, trust):
    env = parse(f'<s:Envelope xmlns:s="{SOAP}"><s:Body><a/></s:Body></s:Envelope>'.encode())
    signing.sign_envelope(env, rsa_key, [])
    env = parse(etree.tostring(env))
    assert env[0].tag == f"{{{SOAP}}}Header"
    signing.verify_envelope(env, trust, [env.find(f"{{{SOAP}}}Body")])


def test_key_load_from_files(tmp_path, ca):
    issued = make_signing_cert(ca, kind="ec")
    (tmp_path / "k.pem").write_bytes(issued.key_pem)
    (tmp_path / "c.pem").write_bytes(issued.cert_pem)
    key = signing.SigningKey.load(tmp_path / "k.pem", tmp_path / "c.pem")
    assert key.algorithm == "ecdsa-sha256"


def test_key_and_cert_must_match(ca):
    a, b = make_signing_cert(ca, kind="ec"), make_signing_cert(ca, kind="ec")
    expect(errors.INCORRECT_CERTIFICATE, signing.SigningKey.from_pem,
           a.key_pem, b.cert_pem)


# ------------------------------------------------------------ tampered content

def test_tampered_body_text(key, trust):
    data = signed_bytes(key).replace(b">12345<", b">99999<")
    err = expect(errors.INVALID_SIGNATURE_VALUE, verify, data, trust)
    assert "changed after signing" in err.message


def test_tampered_header_value(key, trust):
    data = signed_bytes(key).replace(b"<id:memberCode>456<", b"<id:memberCode>666<")
    expect(errors.INVALID_SIGNATURE_VALUE, verify, data, trust)


def test_tampered_timestamp(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    expires = env.find(f".//{{{WSU}}}Expires")
    expires.text = "2999-01-01T00:00:00Z"
    expect(errors.INVALID_SIGNATURE_VALUE, verify, env, trust)


# ------------------------------------------------------ coverage and wrapping

def test_header_not_signed(rsa_key, trust):
    env = parse(ENVELOPE)
    headers = xroad_headers(env)
    signing.sign_envelope(env, rsa_key, headers[:-1])  # protocolVersion left out
    env = parse(etree.tostring(env))
    err = expect(errors.INVALID_SIGNATURE, verify, env, trust)
    assert "protocolVersion" in err.message


def test_header_added_after_signing(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    extra = etree.SubElement(env.find(f"{{{SOAP}}}Header"), f"{{{XRD}}}userId")
    extra.text = "KG12345"
    err = expect(errors.INVALID_SIGNATURE, verify, env, trust)
    assert "userId" in err.message


def test_signed_element_not_required_is_refused(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    body = env.find(f"{{{SOAP}}}Body")
    err = expect(errors.INVALID_SIGNATURE, signing.verify_envelope, env, trust, [body])
    assert "does not use" in err.message


def _forge_body(env: etree._Element, keep_id: bool) -> etree._Element:
    body = env.find(f"{{{SOAP}}}Body")
    forged = copy.deepcopy(body)
    forged.find(".//{urn:example:persons}pin").text = "66666"
    if not keep_id:
        forged.attrib.pop(f"{{{WSU}}}Id")
    return forged


@pytest.mark.parametrize("where", ["header", "security"])
@pytest.mark.parametrize("keep_id", [True, False])
def test_wrapping_attack_moves_signed_body(rsa_key, trust, where, keep_id):
    env = parse(signed_bytes(rsa_key))
    body = env.find(f"{{{SOAP}}}Body")
    forged = _forge_body(env, keep_id)
    wrapper = etree.Element("{urn:evil}Wrapper")
    parent = env.find(f"{{{SOAP}}}Header")
    if where == "security":
        parent = parent.find(f"{{{WSSE}}}Security")
    parent.append(wrapper)
    body.addprevious(forged)
    wrapper.append(body)  # the genuine signed Body now hides in the wrapper
    data = etree.tostring(env)
    err = expect(errors.INVALID_SIGNATURE, verify, data, trust)
    assert ("more than once" in err.message) or ("does not cover" in err.message) or (
        where == "security" and "may hold only" in err.message)


def test_wrapping_duplicate_id_elsewhere(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    body_id = env.find(f"{{{SOAP}}}Body").get(f"{{{WSU}}}Id")
    decoy = etree.SubElement(env.find(f"{{{SOAP}}}Body")[0], "{urn:evil}decoy")
    decoy.set("Id", body_id)
    err = expect(errors.INVALID_SIGNATURE, verify, etree.tostring(env), trust)
    assert body_id in err.message


def test_wrapping_duplicate_xml_id(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    body_id = env.find(f"{{{SOAP}}}Body").get(f"{{{WSU}}}Id")
    decoy = etree.SubElement(env.find(f"{{{SOAP}}}Header"), "{urn:evil}decoy")
    decoy.set("{http://www.w3.org/XML/1998/namespace}id", body_id)
    expect(errors.INVALID_SIGNATURE, verify, etree.tostring(env), trust)


def test_reference_to_missing_id(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    ref = env.find(f".//{{{DS}}}Reference")
    ref.set("URI", "#nowhere")
    err = expect(errors.INVALID_SIGNATURE, verify, env, trust)
    assert "#nowhere" in err.message


def test_reference_with_extra_transform(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    transforms = env.find(f".//{{{DS}}}Transforms")
    etree.SubElement(transforms, f"{{{DS}}}Transform",
                     Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    expect(errors.INVALID_SIGNATURE, verify, env, trust)


def test_weak_digest_refused(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    env.find(f".//{{{DS}}}DigestMethod").set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#sha1")
    err = expect(errors.INVALID_SIGNATURE, verify, env, trust)
    assert "digest" in err.message


def test_hmac_signature_method_refused(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    env.find(f".//{{{DS}}}SignatureMethod").set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#hmac-sha1")
    expect(errors.INVALID_SIGNATURE, verify, env, trust)


# --------------------------------------------------------------- structure

def test_missing_security_header(trust):
    env = parse(ENVELOPE)
    err = expect(errors.INVALID_SIGNATURE, verify, env, trust)
    assert "not signed" in err.message


def test_missing_soap_header(trust):
    env = parse(f'<s:Envelope xmlns:s="{SOAP}"><s:Body/></s:Envelope>'.encode())
    expect(errors.INVALID_SIGNATURE, signing.verify_envelope, env, trust,
           [env.find(f"{{{SOAP}}}Body")])


def test_two_signatures(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    sig = env.find(f".//{{{DS}}}Signature")
    sig.addnext(copy.deepcopy(sig))
    err = expect(errors.INVALID_SIGNATURE, verify, env, trust)
    assert "exactly one ds:Signature" in err.message


def test_two_security_headers(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    header = env.find(f"{{{SOAP}}}Header")
    etree.SubElement(header, f"{{{WSSE}}}Security")
    assert len(header.findall(f"{{{WSSE}}}Security")) == 2
    expect(errors.INVALID_SIGNATURE, verify, etree.tostring(env), trust)


def test_signing_twice_refused(rsa_key):
    env = parse(signed_bytes(rsa_key))
    expect(errors.INVALID_MESSAGE, signing.sign_envelope, env, rsa_key,
           xroad_headers(env))


# ------------------------------------------------------------ certificates

def test_cert_from_foreign_ca(trust):
    foreign = make_ca("Foreign CA")
    issued = make_signing_cert(foreign, kind="ec")
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    err = expect(errors.CERT_VALIDATION, verify, signed_bytes(key), trust)
    assert "trusted CA" in err.message


def test_expired_cert(ca, trust):
    issued = make_signing_cert(ca, kind="ec", not_after=NOW + timedelta(days=1))
    key = signing.SigningKey.from_pem(issued.key_pem, issued.cert_pem)
    later = NOW + timedelta(days=2)
    data = signed_bytes(key, now=later)
    err = expect(errors.CERT_VALIDATION, verify, data, trust, now=later)
    assert "expired" in err.message


def test_cert_without_signing_usage(ca, trust):
    issued = make_signing_cert(ca, kind="ec", digital_signature=False,
                               non_repudiation=False)
    expect(errors.CERT_VALIDATION, trust.validate, issued.cert)


def test_trust_anchor_accepts_bundle(ca):
    other = make_ca("Other CA")
    bundle = signing.TrustAnchor.from_pem(other.cert_pem + ca.cert_pem)
    bundle.validate(make_signing_cert(ca, kind="ec").cert)
    bundle.validate(make_signing_cert(other, kind="ec").cert)


# --------------------------------------------------------------- timestamps

def test_expired_timestamp(rsa_key, trust):
    data = signed_bytes(rsa_key, ttl=60)
    err = expect(errors.INVALID_TIMESTAMP, verify, data, trust,
                 now=NOW + timedelta(hours=1))
    assert "expired" in err.message


def test_timestamp_from_the_future(rsa_key, trust):
    data = signed_bytes(rsa_key, now=NOW + timedelta(hours=1))
    err = expect(errors.INVALID_TIMESTAMP, verify, data, trust, now=NOW)
    assert "future" in err.message


def test_timestamp_within_skew_accepted(rsa_key, trust):
    data = signed_bytes(rsa_key, now=NOW + timedelta(seconds=100))
    verify(data, trust, now=NOW, max_skew=300)


# -------------------------------------------------------------------- strip

def test_strip_security_leaves_no_traces(key, trust):
    env = parse(signed_bytes(key))
    verify(env, trust)
    signing.strip_security(env)
    data = etree.tostring(env)
    assert b"oasis-200401-wss" not in data
    assert b"xmldsig" not in data
    assert env.find(f"{{{SOAP}}}Header") is not None
    assert len(xroad_headers(env)) == 4
    original = parse(ENVELOPE)
    assert etree.tostring(env, method="c14n") == etree.tostring(original, method="c14n")


def test_strip_keeps_payload_default_namespace(rsa_key):
    env = parse(f'<s:Envelope xmlns:s="{SOAP}"><s:Body><a xmlns="urn:d" '
                f'xmlns:xs="urn:xs">xs:string</a></s:Body></s:Envelope>'.encode())
    signing.sign_envelope(env, rsa_key, [])
    signing.strip_security(env)
    data = etree.tostring(env)
    assert b'xmlns="urn:d"' in data and b'xmlns:xs="urn:xs"' in data
    assert b"wsu:Id" not in data


# ----------------------------------------------------------------- identity

def test_cert_member_id(ca):
    cert = make_signing_cert(ca, "KG/GOV/123", kind="ec").cert
    assert signing.cert_member_id(cert) == MemberId("KG", "GOV", "123")


@pytest.mark.parametrize("serial", [None, "KG/GOV", "KG/GOV/12 3"])
def test_cert_member_id_refuses_bad_serial(ca, serial):
    cert = make_signing_cert(ca, serial, kind="ec").cert
    expect(errors.INCORRECT_CERTIFICATE, signing.cert_member_id, cert)


# ------------------------------------------------------- interoperability with xmlsec

def test_signature_verifies_with_plain_xmlsec(key, ca):
    """Our digests and SignedInfo signature are standard XML-DSig: xmlsec's own
    reference processing (which walks the document itself) accepts them."""
    import xmlsec as _xmlsec
    root = parse(signed_bytes(key))
    cert_pem = key.cert.public_bytes(__import__("cryptography").hazmat.primitives
                                     .serialization.Encoding.PEM)

    def xmlsec_verify(r):
        _xmlsec.tree.add_ids(r, ["Id"])
        ctx = _xmlsec.SignatureContext()
        ctx.key = _xmlsec.Key.from_memory(cert_pem, _xmlsec.KeyFormat.CERT_PEM)
        ctx.verify(r.find(f".//{{{DS}}}Signature"))

    xmlsec_verify(root)
    root.find(f"{{{SOAP}}}Body")[0][0].text = "changed"
    with pytest.raises(_xmlsec.Error):
        xmlsec_verify(root)


def test_inclusive_namespaces_parameter_is_refused(key, trust):
    env = parse(signed_bytes(key))
    t = env.find(f".//{{{DS}}}Transform")
    etree.SubElement(t, "{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces",
                     PrefixList="soap")
    with pytest.raises(XRoadError) as ei:
        verify(env, trust)
    assert ei.value.code == errors.INVALID_SIGNATURE


def test_security_header_holds_nothing_else(rsa_key, trust):
    env = parse(signed_bytes(rsa_key))
    sec = env.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security")
    etree.SubElement(sec, f"{{{DS}}}Reference", URI="#decoy")
    err = expect(errors.INVALID_SIGNATURE, verify, etree.tostring(env), trust)
    assert "may hold only" in err.message


def test_repeated_ids_in_business_data_are_fine(rsa_key, trust):
    env = parse(ENVELOPE)
    payload = env.find(f"{{{SOAP}}}Body")[0]
    for text in ("a", "b"):
        etree.SubElement(payload, "{urn:example:persons}item", ID="1").text = text
    signing.sign_envelope(env, rsa_key, xroad_headers(env))
    verify(etree.tostring(env), trust)



# ------------------------------------------------- caches and shared digests

def test_cached_certificate_is_still_checked_against_the_time(ca):
    """Validity periods are cached with the CA check; every call still compares them
    with its own ``now``."""
    issued = make_signing_cert(ca, kind="ec", not_after=NOW + timedelta(days=1))
    anchor = signing.TrustAnchor.from_pem(ca.cert_pem)
    anchor.validate(issued.cert, now=NOW)            # caches the static checks
    err = expect(errors.CERT_VALIDATION, anchor.validate, issued.cert,
                 now=NOW + timedelta(days=2))
    assert "expired" in err.message
    err = expect(errors.CERT_VALIDATION, anchor.validate, issued.cert,
                 now=NOW - timedelta(days=400))
    assert "not valid before" in err.message
    anchor.validate(issued.cert, now=NOW)


def test_cert_member_id_refusal_is_not_cached(ca):
    issued = make_signing_cert(ca, "KG/GOV")
    for _ in range(2):
        expect(errors.INCORRECT_CERTIFICATE, signing.cert_member_id, issued.cert)


def _c14n_sha256_hex(el: etree._Element) -> str:
    import hashlib
    return hashlib.sha256(etree.tostring(el, method="c14n", exclusive=True,
                                         with_comments=False)).hexdigest()


def test_sign_and_verify_report_the_body_digest(key, trust):
    env = parse(ENVELOPE)
    body_hex = signing.sign_envelope(env, key, xroad_headers(env))
    body = env.find(f"{{{SOAP}}}Body")
    assert body_hex == _c14n_sha256_hex(body)
    received = parse(etree.tostring(env))
    result = verify(received, trust)
    assert result.body_sha256 == _c14n_sha256_hex(received.find(f"{{{SOAP}}}Body"))
    assert result.body_sha256 == body_hex


def test_body_digest_not_reported_for_other_digest_algorithms(rsa_key, trust):
    """A peer may digest the Body with SHA-512: the check still runs with that
    algorithm, and no SHA-256 value is made up for the message log."""
    import base64
    import hashlib

    import xmlsec
    env = parse(signed_bytes(rsa_key))
    body = env.find(f"{{{SOAP}}}Body")
    body_id = body.get(f"{{{WSU}}}Id")
    signed_info = env.find(f".//{{{DS}}}SignedInfo")
    ref = [r for r in signed_info.iter(f"{{{DS}}}Reference")
           if r.get("URI") == "#" + body_id][0]
    ref.find(f"{{{DS}}}DigestMethod").set("Algorithm",
                                          "http://www.w3.org/2001/04/xmlenc#sha512")
    ref.find(f"{{{DS}}}DigestValue").text = base64.b64encode(hashlib.sha512(
        etree.tostring(body, method="c14n", exclusive=True)).digest()).decode()
    ctx = xmlsec.SignatureContext()
    ctx.key = rsa_key._key
    value = ctx.sign_binary(etree.tostring(signed_info, method="c14n", exclusive=True),
                            xmlsec.constants.TransformRsaSha256)
    env.find(f".//{{{DS}}}SignatureValue").text = base64.b64encode(value).decode()
    result = verify(env, trust)
    assert result.body_sha256 is None
    # and the SHA-512 digest is really checked
    body.find(".//{urn:example:persons}pin").text = "99999"
    expect(errors.INVALID_SIGNATURE_VALUE, verify, env, trust)
