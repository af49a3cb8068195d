"""The Body digest archive verification recomputes: libxml2's exc-c14n bytes, in time
linear in the message."""
from __future__ import annotations

import datetime as dt
import hashlib
import time

import pytest
from lxml import etree

from tunduk.server.messagelog import envelope_check

S = 'xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
SOAP = "{http://schemas.xmlsoap.org/soap/envelope/}"
DOCS = [
    f'<s:Envelope {S}><s:Body><p:q xmlns:p="urn:t">1</p:q></s:Body></s:Envelope>',
    f'<s:Envelope {S} xmlns="urn:d" xmlns:a="urn:a" xmlns:b="urn:b"><s:Header/>'
    '<s:Body a:x="1" b="2"><q z="3" a:y="&amp;&lt;&gt;&quot;&#9;&#10;&#13;" b:y="1">'
    '<r xmlns=""><t xmlns="urn:d"/></r>t&amp;&lt;&gt;&#13;x<!--c--><?pi  data ?><?pi2?>'
    '<![CDATA[<&>]]></q></s:Body></s:Envelope>',
    '<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body xml:lang="en">'
    '<q xmlns="" xmlns:u="urn:u" u:a="1" a="2" xml:space="preserve"><u:r xmlns:u="urn:u2">'
    '<u:s/></u:r></q></Body></Envelope>',
    f'<s:Envelope {S} xmlns:x="urn:same" xmlns:y="urn:same"><s:Body><x:a y:b="1" x:c="2" '
    'c="0"/>\r\n<y:z>\u0436 \r\n</y:z></s:Body><s:Body><ignored/></s:Body></s:Envelope>',
    f'<s:Envelope {S}><s:Body {S}><s:x xmlns:s="urn:o"/></s:Body></s:Envelope>',
    f'<s:Envelope {S}><s:Body>  <a xmlns="urn:q&amp;z"/>  </s:Body></s:Envelope>',
]


def _libxml2(doc: bytes) -> str:
    body = etree.fromstring(doc).find(f"{SOAP}Body")
    return hashlib.sha256(etree.tostring(body, method="c14n", exclusive=True,
                                         with_comments=False)).hexdigest()


@pytest.mark.parametrize("doc", DOCS)
def test_same_digest_as_libxml2(doc):
    assert envelope_check.body_digest(doc.encode()) == _libxml2(doc.encode())


def test_other_charset_read_as_declared():
    doc = (f'<?xml version="1.0" encoding="windows-1251"?>\n<s:Envelope {S}><s:Body>'
           '<q a="\u0436">\u0436</q></s:Body></s:Envelope>').encode("windows-1251")
    assert envelope_check.body_digest(doc, "text/xml; charset=windows-1251") == \
        _libxml2(doc)


def _heavy_message(n_ns: int, n_attrs: int) -> bytes:
    """Many namespaces in scope of many elements, and one element with many attributes:
    what makes libxml2's canonicaliser superlinear."""
    ns = " ".join(f'xmlns:n{i}="urn:x:{i}"' for i in range(n_ns))
    kids = "".join(f"<n{i}:e/>" for i in range(n_ns))
    attrs = " ".join(f'a{i}="{i}"' for i in range(n_attrs))
    return (f'<s:Envelope {S}><s:Header/><s:Body><p:q xmlns:p="urn:t" {ns}>{kids}'
            f'<p:r {attrs}/></p:q></s:Body></s:Envelope>').encode()


def test_archive_and_verify_are_linear_in_namespaces_and_attributes(
        ml_conf, tmp_path, signer, factory, manifest_signer):
    """One heavy request in the log: archive (which verifies what it wrote) and verify
    take well under a second each, where whole-Body canonicalisation took minutes."""
    from cryptography.hazmat.primitives import serialization
    from tunduk.server.core import detached, signing
    from tunduk.server.core.records import signed_message
    from tunduk.server.messagelog import open_message_log
    from tunduk.server.messagelog.archive import archive_until, verify_archive
    from tunduk.server.messagelog.record import LogRecord
    soap = _heavy_message(3000, 15000)
    key = signing.SigningKey(
        signer.key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
        signer.cert.public_bytes(serialization.Encoding.PEM))
    ctype = "text/xml; charset=utf-8"
    raw = signed_message(soap, ctype, detached.sign_message(soap, ctype, key))
    log = open_message_log(ml_conf, tmp_path, "KG/GOV/70000001/ss1")
    log.log(LogRecord("m1", "KG/GOV/70000002/centre", "KG/GOV/70000001/r/op/v1",
                      "request", "server", raw, signer.cert_der, _libxml2(soap),
                      dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)))
    log.close()
    store = factory()
    t0 = time.perf_counter()
    res = archive_until(store, "KG/GOV/70000001/ss1", dt.datetime(2100, 1, 1,
                        tzinfo=dt.timezone.utc), tmp_path / "a", timestamped=False,
                        signer=manifest_signer, allow_unstamped=True)
    store.close()
    rep = verify_archive(res.path)
    elapsed = time.perf_counter() - t0
    assert rep.ok, rep.problems
    assert elapsed < 5, f"archive + verify took {elapsed:.1f} s"
