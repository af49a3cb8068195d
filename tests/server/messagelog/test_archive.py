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


@pytest.fixture
def signer_key(manifest_signer):
    return manifest_signer


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


def test_archive_then_verify_ok(stamped, tmp_path, tsa, signer_key):
    log, store = stamped
    res = archive_until(store, SERVER_ID, LATER, tmp_path / "arch",
                        timestamped=True, signer=signer_key)
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
    res2 = archive_until(store, SERVER_ID, LATER, tmp_path / "arch",
                        timestamped=True, signer=signer_key)
    assert (res2.first_seq, res2.last_seq) == (5, 6)
    m1 = json.loads(zipfile.ZipFile(res.path).read("manifest.json"))
    m2 = json.loads(zipfile.ZipFile(res2.path).read("manifest.json"))
    assert m2["prev_hash"] == m1["last_hash"]
    assert verify_archive(res2.path).ok
    assert store.count(SERVER_ID) == 0 and verify_store(store, SERVER_ID) == []


def test_until_limits_the_period(ml_conf, tmp_path, signer, factory, signer_key):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    _fill(log, signer, 5)
    store = factory()
    res = archive_until(store, SERVER_ID, T0 + dt.timedelta(minutes=3), tmp_path / "a",
                        timestamped=False, signer=signer_key,
                        allow_unstamped=True)
    assert (res.first_seq, res.last_seq) == (1, 3)
    assert [r.seq for r in store.records(SERVER_ID)] == [4, 5]
    rep = verify_archive(res.path)
    assert rep.ok, rep.problems
    assert archive_until(store, SERVER_ID, T0, tmp_path / "a", timestamped=False,
                         signer=signer_key, allow_unstamped=True) is None
    store.close()
    log.close()


def test_nothing_archived_without_timestamp(with_tsa, tmp_path, signer, factory,
                                            signer_key):
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    _fill(log, signer, 3)
    store = factory()
    assert archive_until(store, SERVER_ID, LATER, tmp_path / "a", timestamped=True,
                         signer=signer_key) is None
    assert store.count(SERVER_ID) == 3
    store.close()
    log.close()


def test_failed_archive_keeps_live_records(ml_conf, tmp_path, signer, factory,
                                           signer_key):
    """A broken chain in the store: the archive does not verify, nothing is removed."""
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    _fill(log, signer, 3)
    store = factory()
    from .test_store import _tamper
    _tamper(store, "UPDATE records SET message_id = 'forged' WHERE server_id = ? AND seq = 2",
            (SERVER_ID,))
    from tunduk.server.messagelog.archive import ArchiveError
    with pytest.raises(ArchiveError, match="does not verify"):
        archive_until(store, SERVER_ID, LATER, tmp_path / "a",
                        timestamped=False, signer=signer_key, allow_unstamped=True)
    assert store.count(SERVER_ID) == 3
    store.close()
    log.close()


def _rewrite(src: Path, dst: Path, change) -> None:
    """Copy a zip, letting ``change(name, data)`` alter members (CRCs stay right)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, change(info.filename, zin.read(info.filename)))


@pytest.fixture
def archive(with_tsa, tmp_path, signer, factory, signer_key):
    """An archive of five time-stamped records, and the records."""
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    recs = _fill(log, signer, 5)
    assert log.timestamper.run_once()
    store = factory()
    res = archive_until(store, SERVER_ID, LATER, tmp_path / "out",
                        timestamped=True, signer=signer_key)
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

def _key_files(signer, tmp_path) -> list[str]:
    """--sign-key/--sign-cert files of the server's signing key."""
    from cryptography.hazmat.primitives import serialization
    key, cert = tmp_path / "sign.key", tmp_path / "sign.pem"
    key.write_bytes(signer._key_pem)
    cert.write_bytes(signer.cert.public_bytes(serialization.Encoding.PEM))
    return ["--sign-key", str(key), "--sign-cert", str(cert)]


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
    keys = _key_files(signer, tmp_path)
    assert tunduk_main(["log", "archive", *src, "--until", "2024-03-01T12:05:00",
                        "--out", str(tmp_path / "out"), *keys, "--allow-unstamped"]) == 0
    out, err = capsys.readouterr()
    assert "archived records seq 1..3" in out
    assert "WARNING: records seq 1..3 were archived and removed without a time-stamp" \
        in err
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


# -- an archive proves its own completeness ----------------------------------------------

@pytest.fixture
def two_tokens(with_tsa, tmp_path, signer, factory, signer_key):
    """An archive of six records under two tokens (1..4 and 5..6)."""
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    _fill(log, signer, 4)
    assert log.timestamper.run_once()
    _fill(log, signer, 2, start=4)
    assert log.timestamper.run_once()
    store = factory()
    res = archive_until(store, SERVER_ID, LATER, tmp_path / "out", timestamped=True,
                        signer=signer_key)
    store.close()
    log.close()
    return res.path


def _edit(src: Path, dst: Path, manifest=None, records=None, stamps=None) -> Path:
    """Copy an archive, rewriting its manifest, record lines and timestamp lines (as
    lists of dicts) with the given functions."""
    def change(name, data):
        if name == "manifest.json" and manifest:
            return json.dumps(manifest(json.loads(data)), indent=2, sort_keys=True).encode()
        fn = {"records.jsonl": records, "timestamps.jsonl": stamps}.get(name)
        if fn is None:
            return data
        lines = fn([json.loads(l) for l in data.decode().splitlines()])
        return "".join(json.dumps(l, sort_keys=True) + "\n" for l in lines).encode()
    _rewrite(src, dst, change)
    return dst


def _lines(path: Path, name: str) -> list[dict]:
    with zipfile.ZipFile(path) as zf:
        return [json.loads(l) for l in zf.read(name).decode().splitlines()]


def test_tail_cut_at_a_timestamp_boundary(two_tokens, tmp_path, tsa):
    h4 = _lines(two_tokens, "records.jsonl")[3]["hash"]
    bad = _edit(two_tokens, tmp_path / "tail.zip",
                manifest=lambda m: {**m, "last_seq": 4, "record_count": 4,
                                    "last_hash": h4, "timestamp_count": 1},
                records=lambda ls: ls[:4], stamps=lambda ts: ts[:1])
    assert verify_archive(two_tokens, tsa_cert_der=tsa.cert_der).ok
    rep = verify_archive(bad, tsa_cert_der=tsa.cert_der)
    assert any(p.startswith("manifest signature: the signature does not verify")
               for p in rep.problems), rep.problems


def test_head_dropped_at_a_timestamp_boundary(two_tokens, tmp_path, tsa):
    h4 = _lines(two_tokens, "records.jsonl")[3]["hash"]
    bad = _edit(two_tokens, tmp_path / "head.zip",
                manifest=lambda m: {**m, "first_seq": 5, "record_count": 2,
                                    "prev_hash": h4, "timestamp_count": 1},
                records=lambda ls: ls[4:], stamps=lambda ts: ts[1:])
    rep = verify_archive(bad, tsa_cert_der=tsa.cert_der)
    assert any(p.startswith("manifest signature: the signature does not verify")
               for p in rep.problems), rep.problems


def _rehashed(lines: list[dict]) -> list[dict]:
    """Record 2 rewritten and the chain recomputed from it, as a forger would."""
    from tunduk.server.messagelog import chain
    prev = lines[0]["hash"]
    out = lines[:1]
    for line in lines[1:]:
        line = {**line, "prev_hash": prev}
        if line["seq"] == 2:
            line["client"] = "KG/GOV/666/evil"
        enc = chain.canonical_encoding(
            line["server_id"], line["seq"], line["message_id"], line["client"],
            line["service"], line["direction"], line["side"], line["envelope_sha256"],
            line["signature_cert_sha256"], line["body_sha256"], line["created"])
        prev = line["hash"] = chain.record_hash(prev, enc)
        out.append(line)
    return out


def test_rewritten_rehashed_unstamped_archive_fails_with_pinned_tsa(two_tokens, tmp_path,
                                                                    tsa):
    forged = _rehashed(_lines(two_tokens, "records.jsonl"))
    bad = _edit(two_tokens, tmp_path / "forged.zip",
                manifest=lambda m: {**m, "last_hash": forged[-1]["hash"],
                                    "timestamped": False, "timestamp_count": 0},
                records=lambda ls: forged, stamps=lambda ts: [])
    rep = verify_archive(bad, tsa_cert_der=tsa.cert_der)
    assert "records seq 1..6 are not time-stamped although a TSA certificate is pinned " \
           "(give --allow-unstamped if this server did not time-stamp them)" in rep.problems
    assert any(p.startswith("manifest signature:") for p in rep.problems)


def test_unstamped_archive_with_pinned_tsa_needs_allow_unstamped(
        ml_conf, tmp_path, signer, factory, signer_key, tsa):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    _fill(log, signer, 3)
    log.close()
    store = factory()
    res = archive_until(store, SERVER_ID, LATER, tmp_path / "a", timestamped=False,
                        signer=signer_key, allow_unstamped=True)
    store.close()
    rep = verify_archive(res.path, tsa_cert_der=tsa.cert_der)
    assert rep.problems == ["records seq 1..3 are not time-stamped although a TSA "
                            "certificate is pinned (give --allow-unstamped if this server "
                            "did not time-stamp them)"]
    rep = verify_archive(res.path, tsa_cert_der=tsa.cert_der, allow_unstamped=True)
    assert rep.ok and "records seq 1..3 are not time-stamped: only the server's " \
                      "signature vouches for them" in rep.warnings


def test_archive_without_tsa_refuses_to_remove_unstamped(tmp_path, signer, capsys):
    db = tmp_path / "ml.sqlite3"
    log = open_message_log(MessageLogConf(backend="sqlite", path=db), tmp_path, SERVER_ID)
    _fill(log, signer, 3)
    log.close()
    src = ["--db", f"sqlite:{db}", "--server-id", SERVER_ID, *_key_files(signer, tmp_path)]
    assert tunduk_main(["log", "archive", *src, "--until", "2100-01-01",
                        "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "give --allow-unstamped" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert tunduk_main(["log", "check", "--db", f"sqlite:{db}", "--server-id",
                        SERVER_ID]) == 0
    assert "intact (seq 1..3)" in capsys.readouterr().out


def test_continuity_with_the_previous_archive(stamped, tmp_path, signer_key, tsa):
    log, store = stamped
    first = archive_until(store, SERVER_ID, LATER, tmp_path / "a", timestamped=True,
                          signer=signer_key).path
    assert log.timestamper.run_once()
    second = archive_until(store, SERVER_ID, LATER, tmp_path / "a", timestamped=True,
                           signer=signer_key).path
    alone = verify_archive(second, tsa_cert_der=tsa.cert_der)
    assert alone.ok and any("continuity with the archive before this one (ending at seq "
                            "4) was not checked" in w for w in alone.warnings)
    assert verify_archive(second, tsa_cert_der=tsa.cert_der, previous=first).ok
    rep = verify_archive(second, tsa_cert_der=tsa.cert_der, previous=second)
    assert any("does not continue the previous archive" in p for p in rep.problems)


def test_cli_says_which_certificates_it_trusted(archive, signer, tmp_path, tsa, capsys):
    from cryptography.hazmat.primitives import serialization
    path, _ = archive
    assert tunduk_main(["log", "verify", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("OK:")
    assert "WARNING: time-stamp tokens were verified with the TSA certificate inside the " \
           "archive, not a pinned one" in err
    assert "WARNING: the manifest signature was verified with the certificate inside " \
           "the archive" in err
    tsa_pem, sign_pem = tmp_path / "tsa.pem", tmp_path / "sign.pem"
    tsa_pem.write_bytes(tsa.cert.public_bytes(serialization.Encoding.PEM))
    sign_pem.write_bytes(signer.cert.public_bytes(serialization.Encoding.PEM))
    assert tunduk_main(["log", "verify", str(path), "--tsa-cert", str(tsa_pem),
                        "--sign-cert", str(sign_pem)]) == 0
    assert "WARNING" not in capsys.readouterr().err


# -- malformed input: one line, exit status 2 ---------------------------------------------

@pytest.mark.parametrize("what", ["first_seq string", "server_id missing", "manifest list",
                                  "records line list"])
def test_malformed_archive_is_one_line_exit_2(archive, tmp_path, capsys, what):
    path, _ = archive
    change = {
        "first_seq string": dict(manifest=lambda m: {**m, "first_seq": "1"}),
        "server_id missing": dict(manifest=lambda m: {k: v for k, v in m.items()
                                                      if k != "server_id"}),
        "manifest list": dict(manifest=lambda m: []),
        "records line list": dict(records=lambda ls: [[1, 2]] + ls[1:]),
    }[what]
    bad = _edit(path, tmp_path / "bad.zip", **change)
    assert tunduk_main(["log", "verify", str(bad)]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("tunduk log verify: ")
    assert "restore the archive from a copy" in err and out == ""


@pytest.mark.parametrize("argv", [["archive", "--until", "garbage", "--out", "x"],
                                  ["search", "--since", "garbage"]])
def test_bad_time_is_one_line_exit_2(tmp_path, signer, capsys, argv):
    db = tmp_path / "ml.sqlite3"
    open_message_log(MessageLogConf(backend="sqlite", path=db), tmp_path, SERVER_ID).close()
    assert tunduk_main(["log", *argv, "--db", f"sqlite:{db}", "--server-id",
                        SERVER_ID]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'garbage' is not an ISO-8601 time" in err


def test_records_within_the_replay_window_stay_in_the_live_store(store, signer, tmp_path,
                                                                 manifest_signer):
    """Archiving up to now removed request records whose replay keys still counted:
    a replay was then served again.  Records younger than the acceptance window of a
    signature (lifetime plus twice the skew) are never archived."""
    from dataclasses import replace
    now = dt.datetime.now(dt.timezone.utc)
    old = replace(signer.record(1), created=now - dt.timedelta(hours=1))
    fresh = replace(signer.record(2), created=now - dt.timedelta(seconds=60),
                    replay_key="f" * 64)
    store.append(SERVER_ID, [old, fresh])
    res = archive_until(store, SERVER_ID, now + dt.timedelta(days=1), tmp_path / "a",
                        timestamped=False, signer=manifest_signer, allow_unstamped=True)
    assert res is not None and store.head(SERVER_ID).archived_seq == 1
    assert store.append(SERVER_ID, [replace(signer.record(3), replay_key="f" * 64)]) \
        == [None]
