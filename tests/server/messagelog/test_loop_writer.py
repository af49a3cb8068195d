"""The event loop's SQLite writer: one transaction per loop turn, a future resolved
only after its COMMIT, never a blocked loop while another connection holds the lock,
and failures that fail closed with the reason."""
from __future__ import annotations

import asyncio
import threading

import pytest

from tunduk.server.conf.model import MessageLogConf
from tunduk.server.core.errors import MLOG_FAILED, XRoadError
from tunduk.server.messagelog import open_message_log
from tunduk.server.messagelog.live_verify import verify_store
from tunduk.server.messagelog.loop_writer import LoopWriter
from tunduk.server.messagelog.sqlite import SqliteStore

SERVER_ID = "KG/GOV/70000001/ss1"


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "ml.sqlite3"


@pytest.fixture
def writer(loop, db):
    w = LoopWriter(loop, lambda: SqliteStore(db, busy_timeout=0), SERVER_ID)
    yield w
    w.close()


def stored(db) -> list:
    store = SqliteStore(db)
    try:
        assert verify_store(store, SERVER_ID) == []
        return list(store.records(SERVER_ID))
    finally:
        store.close()


def run(loop, futures, timeout=10.0):
    return loop.run_until_complete(asyncio.wait_for(asyncio.gather(*futures), timeout))


def test_records_of_one_loop_turn_share_one_transaction(loop, writer, db, signer):
    records = [signer.record(i) for i in range(20)]
    futures = [writer.submit(r) for r in records]
    assert not any(f.done() for f in futures)       # nothing before the loop turns
    assert run(loop, futures) == [None] * 20
    assert writer.batches == 1 and writer.committed == 20
    assert [r.message_id for r in stored(db)] == [r.message_id for r in records]


def test_future_resolves_after_the_commit_is_visible_to_others(loop, writer, db, signer):
    record = signer.record()

    async def one():
        error = await writer.submit(record)
        # resolved: another connection already reads the committed record
        return error, [r.message_id for r in stored(db)]
    assert loop.run_until_complete(one()) == (None, [record.message_id])


def test_lock_held_elsewhere_is_retried_without_blocking_the_loop(loop, writer, db, signer):
    first = signer.record(1)
    run(loop, [writer.submit(first)])               # the schema exists
    other = SqliteStore(db)
    other.conn.execute("BEGIN IMMEDIATE")            # another process writing

    async def scenario():
        future = writer.submit(signer.record(2))
        ticks = 0
        for _ in range(20):                          # the loop keeps turning meanwhile
            await asyncio.sleep(0.005)
            ticks += 1
        assert not future.done()
        other.conn.execute("ROLLBACK")
        return ticks, await asyncio.wait_for(future, 5)
    try:
        assert loop.run_until_complete(scenario()) == (20, None)
    finally:
        other.close()
    assert len(stored(db)) == 2


def test_lock_held_too_long_fails_closed_then_recovers(loop, db, signer):
    w = LoopWriter(loop, lambda: SqliteStore(db, busy_timeout=0), SERVER_ID,
                   commit_timeout=0.1)
    run(loop, [w.submit(signer.record(1))])
    other = SqliteStore(db)
    other.conn.execute("BEGIN IMMEDIATE")
    try:
        error = run(loop, [w.submit(signer.record(2))])[0]
    finally:
        other.conn.execute("ROLLBACK")
        other.close()
    assert error.startswith("message log write failed, message not logged")
    assert "database is locked" in error and w.last_error == error
    assert run(loop, [w.submit(signer.record(3))]) == [None]
    assert w.last_error is None
    w.close()
    assert len(stored(db)) == 2


def test_write_error_fails_the_batch_with_its_reason(loop, writer, db, signer):
    run(loop, [writer.submit(signer.record(1))])
    other = SqliteStore(db)
    other.conn.execute("CREATE TRIGGER full BEFORE INSERT ON records "
                       "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")
    errors = run(loop, [writer.submit(signer.record(i)) for i in (2, 3)])
    assert all("disk full (test)" in e and "not logged" in e for e in errors)
    other.conn.execute("DROP TRIGGER full")
    other.close()
    assert run(loop, [writer.submit(signer.record(4))]) == [None]
    assert len(stored(db)) == 2                      # chain intact, nothing half-written


def test_close_commits_what_is_queued(loop, writer, db, signer):
    futures = [writer.submit(signer.record(i)) for i in range(3)]
    writer.close()                                   # before the loop ever turned
    assert [f.result() for f in futures] == [None] * 3
    assert len(stored(db)) == 3
    with pytest.raises(XRoadError) as ei:
        writer.submit(signer.record(4))
    assert ei.value.code == MLOG_FAILED


def test_loop_and_writer_thread_share_one_chain(loop, db, tmp_path, signer):
    """Blocking callers (WSGI fallbacks on worker threads) still use the writer
    thread; both writers append to the same chain."""
    log = open_message_log(MessageLogConf(backend="sqlite", path=db), tmp_path, SERVER_ID)
    log.attach_loop(loop)
    try:
        stop = threading.Event()

        def blocking():
            i = 0
            while not stop.is_set():
                log.log(signer.record(1000 + i))
                i += 1
        t = threading.Thread(target=blocking)
        t.start()

        async def on_loop():
            for i in range(30):
                assert await log.submit_on_loop(signer.record(i), loop) is None
        try:
            loop.run_until_complete(on_loop())
        finally:
            stop.set()
            t.join()
        assert log.loop_writer.committed == 30 and log.writer.committed > 0
    finally:
        log.close()
    assert len(stored(db)) == 30 + log.writer.committed


def test_store_log_uses_the_loop_writer_only_on_its_loop(loop, db, tmp_path, signer):
    from dataclasses import replace
    log = open_message_log(MessageLogConf(backend="sqlite", path=db), tmp_path, SERVER_ID)
    try:
        assert log.submit_on_loop(signer.record(), loop) is None     # not attached
        log.attach_loop(loop)
        other = asyncio.new_event_loop()
        try:
            assert log.submit_on_loop(signer.record(), other) is None
        finally:
            other.close()
        with pytest.raises(XRoadError) as ei:
            log.submit_on_loop(replace(signer.record(), side="middle"), loop)
        assert ei.value.code == MLOG_FAILED and "side must be" in ei.value.message
        future = log.submit_on_loop(signer.record(), loop)
        assert run(loop, [future]) == [None]
        assert log.status()["committed_by_this_process"] == 1
        log.detach_loop()
        assert log.loop_writer is None
    finally:
        log.close()


def test_postgresql_keeps_its_writer_thread(loop, postgresql_db, tmp_path, signer):
    log = open_message_log(MessageLogConf(backend="postgresql", dsn=postgresql_db),
                           tmp_path, SERVER_ID)
    try:
        log.attach_loop(loop)
        assert log.loop_writer is None
        assert log.submit_on_loop(signer.record(), loop) is None
    finally:
        log.close()
