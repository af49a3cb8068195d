"""Both stores: durable group-committed records forming one chain across threads and
processes; tampering found at the right seq; failures fail closed with MLOG_FAILED."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from tunduk.server.conf.model import MessageLogConf
from tunduk.server.core.errors import MLOG_FAILED, XRoadError
from tunduk.server.messagelog import NullLog, open_message_log, store_factory
from tunduk.server.messagelog.live_verify import verify_store
from tunduk.server.messagelog.store import SCHEMA_VERSION

from .conftest import SERVER_ID


def _sql(store, text):
    return text if store.PARAM == "?" else text.replace("?", store.PARAM)


def _tamper(store, sql, params=()):
    """Change the database behind the message log's back (as an attacker would)."""
    cur = store.conn.cursor()
    if store.PARAM == "?":
        store.conn.execute("BEGIN")
    cur.execute(_sql(store, sql), params)
    store.conn.commit() if store.PARAM != "?" else store.conn.execute("COMMIT")


def test_off_gives_null_log(tmp_path):
    log = open_message_log(MessageLogConf(backend="off"), tmp_path, SERVER_ID)
    assert isinstance(log, NullLog)
    assert log.status() == {"backend": "off"}


def test_records_are_durable(ml_conf, tmp_path, signer):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    recs = [signer.record(i) for i in range(5)]
    for r in recs:
        log.log(r)
    assert log.status()["records"] == 5
    log.close()
    # A new connection (as after a restart) sees every field exactly.
    store = store_factory(ml_conf, tmp_path)()
    try:
        stored = list(store.records(SERVER_ID))
        assert [s.seq for s in stored] == [1, 2, 3, 4, 5]
        for r, s in zip(recs, stored):
            assert (s.message_id, s.envelope, s.signature_cert_der, s.body_sha256,
                    s.created) == (r.message_id, r.envelope, r.signature_cert_der,
                                   r.body_sha256, r.created)
        assert verify_store(store, SERVER_ID) == []
        assert store.schema_version() == SCHEMA_VERSION
    finally:
        store.close()


def test_sqlite_default_path_and_wal(tmp_path, signer):
    log = open_message_log(MessageLogConf(backend="sqlite"), tmp_path, SERVER_ID)
    log.log(signer.record())
    log.close()
    import sqlite3
    conn = sqlite3.connect(tmp_path / "messagelog.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1


def test_reopen_keeps_schema_and_chain(ml_conf, tmp_path, signer):
    for _ in range(2):
        log = open_message_log(ml_conf, tmp_path, SERVER_ID)
        log.log(signer.record())
        log.close()
    store = store_factory(ml_conf, tmp_path)()
    assert [r.seq for r in store.records(SERVER_ID)] == [1, 2]
    assert verify_store(store, SERVER_ID) == []
    store.close()


def test_concurrent_threads_one_chain(ml_conf, tmp_path, signer):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    rec = signer.record()
    errors = []

    def work():
        try:
            for _ in range(15):
                log.log(rec)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # Group commit batched some of them: fewer transactions than records is not
    # observable directly, but every record is there exactly once, in one chain.
    store = store_factory(ml_conf, tmp_path)()
    assert [r.seq for r in store.records(SERVER_ID)] == list(range(1, 121))
    assert verify_store(store, SERVER_ID) == []
    store.close()
    log.close()


WRITER = textwrap.dedent("""
    import datetime as dt, sys
    from pathlib import Path
    from tunduk.server.conf.model import MessageLogConf
    from tunduk.server.messagelog import open_message_log
    from tunduk.server.messagelog.record import LogRecord
    backend, target, tag = sys.argv[1:4]
    conf = (MessageLogConf(backend="sqlite", path=Path(target)) if backend == "sqlite"
            else MessageLogConf(backend="postgresql", dsn=target))
    log = open_message_log(conf, Path("."), "%s")
    for i in range(60):
        log.log(LogRecord(f"{tag}-{i}", "KG/GOV/2/c", "KG/GOV/1/s/op/v1", "request",
                          "client", f"<e>{tag}{i}</e>".encode(), b"cert", "00" * 32,
                          dt.datetime.now(dt.timezone.utc)))
    log.close()
""" % SERVER_ID)


def test_two_processes_one_chain(ml_conf, tmp_path):
    target = str(ml_conf.path) if ml_conf.backend == "sqlite" else ml_conf.dsn
    # Create the schema first, then let two processes race on the same chain.
    open_message_log(ml_conf, tmp_path, SERVER_ID).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, ml_conf.backend, target, tag],
                              stderr=subprocess.PIPE) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    store = store_factory(ml_conf, tmp_path)()
    recs = list(store.records(SERVER_ID))
    assert [r.seq for r in recs] == list(range(1, 121))
    assert {r.message_id[0] for r in recs} == {"a", "b"}
    assert verify_store(store, SERVER_ID) == []
    store.close()


def test_two_processes_create_schema_concurrently(ml_conf, tmp_path):
    target = str(ml_conf.path) if ml_conf.backend == "sqlite" else ml_conf.dsn
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, ml_conf.backend, target, tag],
                              stderr=subprocess.PIPE) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    store = store_factory(ml_conf, tmp_path)()
    assert store.count(SERVER_ID) == 120
    assert verify_store(store, SERVER_ID) == []
    store.close()


def test_chains_of_two_servers_are_separate(store, signer):
    store.append(SERVER_ID, [signer.record(), signer.record()])
    store.append("KG/GOV/70000002/ss2", [signer.record()])
    assert store.head(SERVER_ID).seq == 2
    assert store.head("KG/GOV/70000002/ss2").seq == 1
    assert verify_store(store, SERVER_ID) == []
    assert verify_store(store, "KG/GOV/70000002/ss2") == []


@pytest.fixture
def filled(store, signer):
    store.append(SERVER_ID, [signer.record(i) for i in range(1, 9)])
    assert verify_store(store, SERVER_ID) == []
    return store


def test_edited_record_found(filled):
    _tamper(filled, "UPDATE records SET client = ? WHERE server_id = ? AND seq = ?",
            ("KG/GOV/666/evil", SERVER_ID, 5))
    problems = verify_store(filled, SERVER_ID)
    assert [(p.seq, p.kind) for p in problems] == [(5, "changed")]


def test_edited_envelope_found(filled):
    _tamper(filled, "UPDATE records SET envelope = ? WHERE server_id = ? AND seq = ?",
            (b"<forged/>", SERVER_ID, 3))
    assert [(p.seq, p.kind) for p in verify_store(filled, SERVER_ID)] == [(3, "changed")]


def test_deleted_record_found(filled):
    _tamper(filled, "DELETE FROM records WHERE server_id = ? AND seq = ?", (SERVER_ID, 4))
    problems = verify_store(filled, SERVER_ID)
    assert [(p.seq, p.kind) for p in problems] == [(4, "missing")]


def test_deleted_last_record_found(filled):
    _tamper(filled, "DELETE FROM records WHERE server_id = ? AND seq = ?", (SERVER_ID, 8))
    assert [(p.seq, p.kind) for p in verify_store(filled, SERVER_ID)] == [(8, "missing")]


def test_inserted_record_found(filled):
    # Make room at seq 6 (renumber 6..8 to 7..9), then put a forged copy of 5 there.
    for seq in (8, 7, 6):
        _tamper(filled, "UPDATE records SET seq = ? WHERE server_id = ? AND seq = ?",
                (seq + 1, SERVER_ID, seq))
    _tamper(filled, "INSERT INTO records SELECT server_id, 6, 'forged', client, service, "
                    "direction, side, envelope, cert_sha256, body_sha256, created, "
                    "prev_hash, hash FROM records WHERE server_id = ? AND seq = 5",
            (SERVER_ID,))
    problems = verify_store(filled, SERVER_ID)
    assert problems and problems[0].seq == 6


def test_reordered_records_found(filled):
    _tamper(filled, "UPDATE records SET seq = -1 WHERE server_id = ? AND seq = 3", (SERVER_ID,))
    _tamper(filled, "UPDATE records SET seq = 3 WHERE server_id = ? AND seq = 4", (SERVER_ID,))
    _tamper(filled, "UPDATE records SET seq = 4 WHERE server_id = ? AND seq = -1", (SERVER_ID,))
    problems = verify_store(filled, SERVER_ID)
    assert problems[0].seq == 3 and problems[0].kind == "changed"


def test_dropped_table_fails_closed(ml_conf, tmp_path, signer):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    log.log(signer.record())
    store = store_factory(ml_conf, tmp_path)()
    _tamper(store, "DROP TABLE records")
    store.close()
    with pytest.raises(XRoadError) as ei:
        log.log(signer.record())
    assert ei.value.code == MLOG_FAILED
    assert "message log write failed" in ei.value.message
    assert "not logged" in log.status()["last_error"]
    log.close()


def test_sqlite_read_only_file_fails_closed(tmp_path, signer):
    path = tmp_path / "ml.sqlite3"
    log = open_message_log(MessageLogConf(backend="sqlite", path=path), tmp_path, SERVER_ID)
    log.log(signer.record())
    # The database turns read-only under the running server (root ignores chmod, so
    # use SQLite's own switch on the writer's connection): writes must fail, not vanish.
    log.writer._store.conn.execute("PRAGMA query_only = ON")
    with pytest.raises(XRoadError) as ei:
        log.log(signer.record())
    assert ei.value.code == MLOG_FAILED
    log.close()


def test_unopenable_store_fails_at_start(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    conf = MessageLogConf(backend="sqlite", path=blocker / "sub" / "ml.sqlite3")
    with pytest.raises(XRoadError) as ei:
        open_message_log(conf, tmp_path, SERVER_ID)
    assert ei.value.code == MLOG_FAILED


def test_postgres_stopped_fails_closed_then_recovers(postgresql_cluster, postgresql_db,
                                                     tmp_path, signer):
    conf = MessageLogConf(backend="postgresql", dsn=postgresql_db)
    log = open_message_log(conf, tmp_path, SERVER_ID)
    log.log(signer.record())
    postgresql_cluster.stop()
    try:
        with pytest.raises(XRoadError) as ei:
            log.log(signer.record())
        assert ei.value.code == MLOG_FAILED
        with pytest.raises(XRoadError) as ei:   # still down: still refused
            log.log(signer.record())
        assert ei.value.code == MLOG_FAILED
    finally:
        postgresql_cluster.restart()
    log.log(signer.record())                    # reconnects by itself
    assert log.status()["records"] == 2
    log.close()


def test_invalid_record_rejected(ml_conf, tmp_path, signer):
    from dataclasses import replace
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    with pytest.raises(XRoadError) as ei:
        log.log(replace(signer.record(), direction="sideways"))
    assert ei.value.code == MLOG_FAILED
    log.close()


def test_newer_schema_refused(ml_conf, tmp_path):
    store = store_factory(ml_conf, tmp_path)()
    _tamper(store, "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(XRoadError) as ei:
        open_message_log(ml_conf, tmp_path, SERVER_ID)
    assert ei.value.code == MLOG_FAILED and "newer" in ei.value.message


def test_rolled_back_batch_does_not_poison_the_cert_cache(tmp_path, signer, test_ca):
    """A batch that fails after its certificate was inserted is rolled back: the next
    batch with the same certificate must store it again (the cache fills on commit)."""
    from tests.server.messagelog.conftest import Signer
    from tunduk.server.messagelog.sqlite import SqliteStore
    other = Signer(*test_ca)                       # a certificate the store never saw
    store = SqliteStore(tmp_path / "ml.sqlite3")
    store.append(SERVER_ID, [signer.record()])
    _tamper(store, "CREATE TRIGGER boom BEFORE INSERT ON records "
                   "WHEN NEW.message_id LIKE 'msg-666-%' BEGIN SELECT RAISE(ABORT, 'boom'); END")
    with pytest.raises(Exception, match="boom"):
        store.append(SERVER_ID, [other.record(666)])
    store.append(SERVER_ID, [other.record(7)])
    recs = list(store.records(SERVER_ID))
    assert [r.seq for r in recs] == [1, 2]
    assert recs[1].signature_cert_der == other.cert_der      # stored, not lost
    assert verify_store(store, SERVER_ID) == []
    store.close()


def test_last_error_clears_when_writes_work_again(tmp_path, signer):
    log = open_message_log(MessageLogConf(backend="sqlite", path=tmp_path / "ml.sqlite3"),
                           tmp_path, SERVER_ID)
    log.log(signer.record())
    log.writer._store.conn.execute("PRAGMA query_only = ON")
    with pytest.raises(XRoadError):
        log.log(signer.record())
    assert "not logged" in log.status()["last_error"]
    log.log(signer.record())            # the writer reconnected: writes work again
    st = log.status()
    assert st["last_error"] is None and st["records"] == 2
    log.close()


# -------------------------------------------------- one record per replay key
def test_a_replay_key_is_written_once(store, signer, factory):
    """A provider accepts each signing act once: a second record with the same
    replay key is not written (None), in the same batch, a later one, or through
    another connection (another worker process or node); the chain stays whole."""
    from dataclasses import replace
    first = replace(signer.record(1), replay_key="a" * 64)
    assert store.append(SERVER_ID, [first, replace(signer.record(2), replay_key="b" * 64),
                                    replace(signer.record(3), replay_key="a" * 64)]) \
        == [1, 2, None]
    assert store.append(SERVER_ID, [replace(signer.record(4), replay_key="a" * 64),
                                    signer.record(5)]) == [None, 3]
    other = factory()
    try:
        assert other.append(SERVER_ID, [replace(signer.record(6), replay_key="b" * 64),
                                        replace(signer.record(7), replay_key="c" * 64)]) \
            == [None, 4]
    finally:
        other.close()
    assert store.append(SERVER_ID, [replace(signer.record(8), replay_key="c" * 64)]) \
        == [None]
    assert store.head(SERVER_ID).seq == 4
    assert verify_store(store, SERVER_ID) == []


def test_a_replay_key_is_claimed_once_across_chains(store, signer):
    """Two security servers (two chains, two head locks) sharing one log: a signing
    act accepted by one is refused by the other."""
    from dataclasses import replace
    key = "e" * 64
    assert store.append(SERVER_ID, [replace(signer.record(1), replay_key=key)]) == [1]
    assert store.append("KG/GOV/70000001/ss2",
                        [replace(signer.record(2), replay_key=key)]) == [None]


def test_concurrent_claims_of_one_replay_key_by_two_chains(ml_conf, factory, signer):
    """The race: server ss1's batch claimed a key and has not committed; ss2's batch
    with the same key (another head lock) must wait for it and then see it."""
    import threading
    from dataclasses import replace
    if ml_conf.backend != "postgresql":
        pytest.skip("SQLite takes one write lock for the whole file")
    key = "c" * 64
    first, second = factory(), factory()
    try:
        cur = first.conn.cursor()
        first._begin_and_lock_head(cur, SERVER_ID)
        assert first.claim_replay_keys(cur, [key]) == set()
        out = []
        t = threading.Thread(target=lambda: out.append(second.append(
            "KG/GOV/70000001/ss2", [replace(signer.record(1), replay_key=key)])))
        t.start()
        t.join(0.5)
        assert t.is_alive()            # waiting for the first claim to end
        first._commit()
        t.join(10)
        assert out == [[None]]
    finally:
        first.close()
        second.close()
