"""Archiving closed periods and verifying archives offline (and the ``tunduk log`` CLI)."""
from __future__ import annotations

import datetime as dt
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from tunduk.server.cli import main as tunduk_main
from tunduk.server.conf.model import MessageLogConf
from tunduk.server.messagelog import open_message_log
from tunduk.server.messagelog.archive import archive_until, verify_archive
from tunduk.server.messagelog.live_verify import verify_store

from .conftest import SERVER_ID

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
LATER = dt.datetime(2100, 1, 1, tzinfo=UTC)


def _fill(log, signer, n, start=0):
    recs = [signer.record(start + i, created=T0 + dt.timedelta(minutes=start + i))
            for i in range(n)]
    for r in recs:
        log.log(r)
    return recs


@pytest.fixture
def stamped(with_tsa, tmp_path, signer, factory):
    """Six records, a timestamp over the first four, two more unstamped."""
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    _fill(log, signer, 4)
    assert log.timestamper.run_once()
    _fill(log, signer, 2, start=4)
    store = factory()
    yield log, store
    store.close()
    log.close()


def test_archive_then_verify_ok(stamped, tmp_path, tsa):
    log, store = stamped
    res = archive_until(store, SERVER_ID, LATER, tmp_path / "arch", timestamped=True)
    # Only the closed (time-stamped) period leaves the store.
    assert (res.first_seq, res.last_seq, res.records, res.removed) == (1, 4, 4, 4)
    assert [r.seq for r in store.records(SERVER_ID)] == [5, 6]
    assert log.status()["records"] == 2 == store.count(SERVER_ID)   # what /healthz shows
    rep = verify_archive(res.path)
    assert rep.ok, rep.problems
    assert (rep.records, rep.timestamps) == (4, 1)
    assert verify_archive(res.path, tsa_cert_der=tsa.cert_der).ok
    with zipfile.ZipFile(res.path) as zf:
        names = set(zf.namelist())
    assert {"manifest.json", "records.jsonl", "timestamps.jsonl", "tsa/tsa-cert.der",
            "envelopes/1.xml", "timestamps/4.tst"} <= names
    # The live chain is still verifiable across the cut, and keeps growing from it.
    assert verify_store(store, SERVER_ID) == []
    assert log.timestamper.run_once()
    res2 = archive_until(store, SERVER_ID, LATER, tmp_path / "arch", timestamped=True)
    assert (res2.first_seq, res2.last_seq) == (5, 6)
    m1 = json.loads(zipfile.ZipFile(res.path).read("manifest.json"))
    m2 = json.loads(zipfile.ZipFile(res2.path).read("manifest.json"))
    assert m2["prev_hash"] == m1["last_hash"]
    assert verify_archive(res2.path).ok
    assert store.count(SERVER_ID) == 0 and verify_store(store, SERVER_ID) == []


def test_until_limits_the_period(ml_conf, tmp_path, signer, factory):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    _fill(log, signer, 5)
    store = factory()
    res = archive_until(store, SERVER_ID, T0 + dt.timedelta(minutes=3), tmp_path / "a",
                        timestamped=False)
    assert (res.first_seq, res.last_seq) == (1, 3)
    assert [r.seq for r in store.records(SERVER_ID)] == [4, 5]
    rep = verify_archive(res.path)
    assert rep.ok, rep.problems
    assert archive_until(store, SERVER_ID, T0, tmp_path / "a", timestamped=False) is None
    store.close()
    log.close()


def test_nothing_archived_without_timestamp(with_tsa, tmp_path, signer, factory):
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    _fill(log, signer, 3)
    store = factory()
    assert archive_until(store, SERVER_ID, LATER, tmp_path / "a", timestamped=True) is None
    assert store.count(SERVER_ID) == 3
    store.close()
    log.close()


def test_failed_archive_keeps_live_records(ml_conf, tmp_path, signer, factory):
    """A broken chain in the store: the archive does not verify, nothing is removed."""
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    _fill(log, signer, 3)
    store = factory()
    from .test_store import _tamper
    _tamper(store, "UPDATE records SET message_id = 'forged' WHERE server_id = ? AND seq = 2",
            (SERVER_ID,))
    from tunduk.server.messagelog.archive import ArchiveError
    with pytest.raises(ArchiveError, match="does not verify"):
        archive_until(store, SERVER_ID, LATER, tmp_path / "a", timestamped=False)
    assert store.count(SERVER_ID) == 3
    store.close()
    log.close()


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a zip, letting ``change(name, data)`` alter members (CRCs stay right)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, zin.read(info.filename)))


@pytest.fixture
def archive(with_tsa, tmp_path, signer, factory):
    """An archive of five time-stamped records, and the records."""
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    recs = _fill(log, signer, 5)
    assert log.timestamper.run_once()
    store = factory()
    res = archive_until(store, SERVER_ID, LATER, tmp_path / "out", timestamped=True)
    store.close()
    log.close()
    return res.path, recs


def test_bit_flip_in_zip_reported(archive, tmp_path):
    path, recs = archive
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("envelopes/3.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x10
    bad = tmp_path / "flipped.zip"
    bad.write_bytes(bytes(data))
    rep = verify_archive(bad)
    assert not rep.ok
    assert any(p.startswith(f"record seq 3 (message id {recs[2].message_id}): envelope "
                            "file envelopes/3.xml") for p in rep.problems), rep.problems


def test_changed_envelope_reported(archive, tmp_path):
    path, recs = archive
    bad = tmp_path / "changed.zip"
    _rewrite(path, bad, lambda n, d: d.replace(b"<q>2</q>", b"<q>7</q>")
             if n == "envelopes/3.xml" else d)
    rep = verify_archive(bad)
    assert f"record seq 3 (message id {recs[2].message_id}): envelope changed (hash " \
           "mismatch)" in rep.problems
    assert any("seq 3" in p and "XML signature does not verify" in p for p in rep.problems)


def test_changed_manifest_field_reported(archive, tmp_path):
    path, recs = archive

    def change(name, data):
        if name != "records.jsonl":
            return data
        lines = data.decode().splitlines()
        rec = json.loads(lines[1])
        rec["client"] = "KG/GOV/666/evil"
        lines[1] = json.dumps(rec)
        return ("\n".join(lines) + "\n").encode()

    bad = tmp_path / "fields.zip"
    _rewrite(path, bad, change)
    rep = verify_archive(bad)
    assert rep.problems == [f"record seq 2 (message id {recs[1].message_id}): record "
                            "fields changed (hash mismatch)"]


def test_removed_record_reported(archive, tmp_path):
    path, _ = archive

    def change(name, data):
        if name != "records.jsonl":
            return data
        lines = data.decode().splitlines(keepends=True)
        return "".join(lines[:3] + lines[4:]).encode()

    bad = tmp_path / "removed.zip"
    _rewrite(path, bad, change)
    rep = verify_archive(bad)
    assert "record seq 4: missing: seq 4 deleted from the chain" in rep.problems


def test_changed_token_reported(archive, tmp_path):
    path, _ = archive
    bad = tmp_path / "token.zip"

    def change(name, data):
        if not name.startswith("timestamps/"):
            return data
        d = bytearray(data)
        d[-5] ^= 0x01          # inside the signature
        return bytes(d)

    _rewrite(path, bad, change)
    rep = verify_archive(bad)
    assert any(p.startswith("timestamp for seqs 1..5: token timestamps/5.tst does not "
                            "verify") for p in rep.problems), rep.problems
    assert any("not covered by a valid timestamp" in p for p in rep.problems)


def test_other_tsa_cert_pinned_rejects(archive, test_ca):
    from cryptography.hazmat.primitives import serialization
    from tunduk.server.messagelog import tsa_pki
    _, other = tsa_pki.make_tsa_cert(*test_ca)
    rep = verify_archive(archive[0], tsa_cert_der=other.public_bytes(
        serialization.Encoding.DER))
    assert any("does not verify" in p for p in rep.problems)


# -- the command line -------------------------------------------------------------------

def test_cli_archive_verify_show_search(tmp_path, signer, capsys):
    db = tmp_path / "ml.sqlite3"
    log = open_message_log(MessageLogConf(backend="sqlite", path=db), tmp_path, SERVER_ID)
    recs = _fill(log, signer, 3)
    log.log(replace(signer.record(99, created=T0 + dt.timedelta(minutes=10)),
                    client="KG/GOV/70000003/other"))
    log.close()
    src = ["--db", f"sqlite:{db}", "--server-id", SERVER_ID]

    assert tunduk_main(["log", "show", *src, recs[1].message_id]) == 0
    out = capsys.readouterr().out
    assert recs[1].message_id in out and "seq              2" in out

    assert tunduk_main(["log", "search", *src, "--client", "KG/GOV/70000003/other",
                        "--json"]) == 0
    found = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [f["seq"] for f in found] == [4]
    assert tunduk_main(["log", "search", *src, "--since", "2024-03-01T12:01:00",
                        "--until", "2024-03-01T12:02:00Z", "--json"]) == 0
    assert [json.loads(l)["seq"] for l in capsys.readouterr().out.splitlines()] == [2]

    assert tunduk_main(["log", "check", *src]) == 0
    assert tunduk_main(["log", "archive", *src, "--until", "2024-03-01T12:05:00",
                        "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "archived records seq 1..3" in out
    (zip_path,) = (tmp_path / "out").glob("*.zip")
    assert tunduk_main(["log", "verify", str(zip_path)]) == 0
    assert capsys.readouterr().out.startswith("OK:")

    bad = tmp_path / "bad.zip"
    _rewrite(zip_path, bad, lambda n, d: d.replace(b"<q>1</q>", b"<q>5</q>")
             if n == "envelopes/2.xml" else d)
    assert tunduk_main(["log", "verify", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"record seq 2 (message id {recs[1].message_id}): envelope changed" in out
    assert "FAILED" in out

    assert tunduk_main(["log", "show", *src, recs[0].message_id]) == 1  # archived
    assert tunduk_main(["log", "check", *src]) == 0


def test_cli_needs_a_store(capsys):
    assert tunduk_main(["log", "search"]) == 2
    assert "--conf" in capsys.readouterr().err


def test_cli_reads_server_conf(make_federation, signer, capsys):
    """``--conf SERVER.toml``: the store and the chain's server id come from the
    server's own configuration (sqlite under its data_dir by default)."""
    from tunduk.server.conf.load import load_server_conf
    fed = make_federation()
    conf = load_server_conf(fed.provider.server_toml)
    server_id = f"{conf.owner}/{conf.server_code}"
    log = open_message_log(conf.messagelog, conf.data_dir, server_id)
    recs = _fill(log, signer, 2)
    log.close()
    assert tunduk_main(["log", "show", "--conf", str(fed.provider.server_toml),
                        recs[1].message_id]) == 0
    assert recs[1].message_id in capsys.readouterr().out
    assert tunduk_main(["log", "check", "--conf", str(fed.provider.server_toml)]) == 0
    assert server_id in capsys.readouterr().out


def test_message_signed_by_the_pipeline_verifies(signer):
    """Interop: a record container built as the pipeline builds it (core/records.py,
    core/detached.py) passes archive checks, its Body digest is the one the archive
    recomputes, and a changed byte or another certificate is reported."""
    import base64
    import re

    from cryptography.hazmat.primitives import serialization
    from tunduk.server.core import detached, signing
    from tunduk.server.core.records import signed_message
    from tunduk.server.messagelog import envelope_check
    key = signing.SigningKey(
        signer.key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()),
        signer.cert.public_bytes(serialization.Encoding.PEM))
    soap = (b'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
            b'xmlns:x="http://x-road.eu/xsd/xroad.xsd"><s:Header><x:id>m1</x:id></s:Header>'
            b'<s:Body><p:q xmlns:p="urn:t">1</p:q></s:Body></s:Envelope>')
    ctype = "text/xml; charset=utf-8"
    raw = signed_message(soap, ctype, detached.sign_message(soap, ctype, key))
    assert envelope_check.check_signature(raw, signer.cert_der) is None
    assert envelope_check.logged_message(raw) == soap
    import hashlib
    from lxml import etree
    body = etree.fromstring(soap)[1]
    assert hashlib.sha256(etree.tostring(body, method="c14n", exclusive=True)).hexdigest() \
        in envelope_check.body_hashes(raw)
    m = re.search(rb"<tdk:message[^>]*>([^<]*)<", raw)
    changed = base64.b64encode(base64.b64decode(m.group(1)).replace(b">1<", b">2<"))
    why = envelope_check.check_signature(raw.replace(m.group(1), changed), signer.cert_der)
    assert why and "changed after signing" in why
