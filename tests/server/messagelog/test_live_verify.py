"""``tunduk log check``: the live chain and every time-stamp token vouch for the log;
rows after the last token are reported as not yet stamped."""
from __future__ import annotations

from dataclasses import replace

import pytest

from tunduk.server.cli import main as tunduk_main
from tunduk.server.messagelog import chain, open_message_log

from .conftest import SERVER_ID
from .test_store import _tamper


def _src(conf) -> list[str]:
    store = ["--db", f"sqlite:{conf.path}"] if conf.backend == "sqlite" \
        else ["--dsn", conf.dsn]
    return [*store, "--server-id", SERVER_ID]


@pytest.fixture
def stamped_log(with_tsa, tmp_path, signer, factory):
    """Six records, a token over the first four, two more not yet stamped."""
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    for i in range(4):
        log.log(signer.record(i))
    assert log.timestamper.run_once()
    for i in range(4, 6):
        log.log(signer.record(i))
    log.close()
    store = factory()
    yield with_tsa, store
    store.close()


def _check(conf, tsa, capsys, pin=True) -> tuple[int, str, str]:
    pin_args = ["--tsa-cert", str(tsa.cert_file)] if pin else []
    rc = tunduk_main(["log", "check", *_src(conf), *pin_args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def tsa_pem(tsa, tmp_path):
    from cryptography.hazmat.primitives import serialization
    path = tmp_path / "tsa.pem"
    path.write_bytes(tsa.cert.public_bytes(serialization.Encoding.PEM))
    tsa.cert_file = path
    return tsa


def test_intact_log_reports_rows_not_yet_stamped(stamped_log, tsa_pem, capsys):
    conf, _ = stamped_log
    rc, out, err = _check(conf, tsa_pem, capsys)
    assert rc == 0, out
    assert "OK: live chain of KG/GOV/70000001/ss1 intact (seq 1..6)" in out
    assert "NOT YET STAMPED: records seq 5..6" in out
    assert "WARNING" not in err


def test_unpinned_tsa_is_said_loudly(stamped_log, tsa_pem, capsys):
    conf, _ = stamped_log
    rc, _, err = _check(conf, tsa_pem, capsys, pin=False)
    assert rc == 0
    assert "WARNING: time-stamp tokens were verified with the TSA certificate inside " \
           "each token" in err


def test_tail_deleted_with_head_rewound(stamped_log, tsa_pem, capsys):
    conf, store = stamped_log
    h2 = store.record_hash_at(SERVER_ID, 2)
    _tamper(store, "DELETE FROM records WHERE server_id = ? AND seq > 2", (SERVER_ID,))
    _tamper(store, "UPDATE chain_head SET seq = 2, hash = ? WHERE server_id = ?",
            (h2, SERVER_ID))
    rc, out, _ = _check(conf, tsa_pem, capsys)
    assert rc == 1
    assert "timestamp for seqs 1..4: covers record seq 4, which is not in the live " \
           "store" in out


def test_stamped_row_edited_and_chain_rehashed(stamped_log, tsa_pem, capsys):
    conf, store = stamped_log
    prev = store.record_hash_at(SERVER_ID, 1)
    for r in list(store.records(SERVER_ID, 2)):
        client = "KG/GOV/666/evil" if r.seq == 2 else r.client
        forged = replace(r, client=client, prev_hash=prev)
        prev = chain.hash_stored(forged)
        _tamper(store, "UPDATE records SET client = ?, prev_hash = ?, hash = ? "
                "WHERE server_id = ? AND seq = ?",
                (client, forged.prev_hash, prev, SERVER_ID, r.seq))
    _tamper(store, "UPDATE chain_head SET hash = ? WHERE server_id = ?", (prev, SERVER_ID))
    _tamper(store, "UPDATE timestamps SET chain_hash = ? WHERE server_id = ?",
            (store.record_hash_at(SERVER_ID, 4), SERVER_ID))
    rc, out, _ = _check(conf, tsa_pem, capsys)
    assert rc == 1
    assert "timestamp for seqs 1..4: token does not verify (time-stamp token is for " \
           "different data" in out


def test_corrupted_tokens(stamped_log, tsa_pem, capsys):
    conf, store = stamped_log
    token = store.timestamps(SERVER_ID)[0].token
    bad = token[:-5] + bytes([token[-5] ^ 1]) + token[-4:]
    _tamper(store, "UPDATE timestamps SET token = ? WHERE server_id = ?", (bad, SERVER_ID))
    for pin in (True, False):
        rc, out, _ = _check(conf, tsa_pem, capsys, pin=pin)
        assert rc == 1
        assert "timestamp for seqs 1..4: token does not verify" in out
        assert "NOT YET STAMPED" not in out
