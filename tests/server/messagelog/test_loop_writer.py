"""The event loop's message-log writers (SQLite on the loop, PostgreSQL over an
asynchronous connection), one contract: one transaction per loop turn, a future
resolved only after its COMMIT, a loop that keeps turning while another connection
holds the lock, and failures that fail closed with their reason, then recover."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import replace

import pytest

from tunduk.server.conf.model import MessageLogConf
from tunduk.server.core.errors import MLOG_FAILED, XRoadError
from tunduk.server.messagelog import open_message_log, store_factory
from tunduk.server.messagelog.live_verify import verify_store
from tunduk.server.messagelog.postgres import LOCK_HEAD_SQL

SERVER_ID = "KG/GOV/70000001/ss1"


class Backend:
    """One store of either kind, with what the tests do to it from outside."""

    def __init__(self, conf: MessageLogConf, data_dir) -> None:
        self.conf, self.data_dir = conf, data_dir
        self.sqlite = conf.backend == "sqlite"
        self._other = None

    def open_log(self):
        return open_message_log(self.conf, self.data_dir, SERVER_ID)

    def writer(self, loop, **kw):
        from tunduk.server.messagelog import loop_writer_factory
        return loop_writer_factory(self.conf, self.data_dir)(loop, SERVER_ID, **kw)

    def store(self):
        return store_factory(self.conf, self.data_dir)()

    def stored(self) -> list:
        store = self.store()
        try:
            assert verify_store(store, SERVER_ID) == []
            return list(store.records(SERVER_ID))
        finally:
            store.close()

    def hold_lock(self) -> None:
        """As another process in the middle of its write would."""
        self._other = self.store()
        cur = self._other.conn.cursor()
        if self.sqlite:
            cur.execute("BEGIN IMMEDIATE")
        else:
            cur.execute("BEGIN; " + LOCK_HEAD_SQL, (SERVER_ID,))

    def release_lock(self) -> None:
        self._other.conn.cursor().execute("ROLLBACK")
        self._other.close()

    def _ddl(self, *statements: str) -> None:
        store = self.store()
        try:
            cur = store.conn.cursor()
            for sql in statements:
                cur.execute(sql)
            if self.sqlite:
                store.conn.commit()
        finally:
            store.close()

    def break_writes(self) -> None:
        if self.sqlite:
            self._ddl("CREATE TRIGGER full_disk BEFORE INSERT ON records "
                      "BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END")
        else:
            self._ddl("CREATE FUNCTION full_disk() RETURNS trigger AS $$ BEGIN "
                      "RAISE EXCEPTION 'disk full (test)'; END $$ LANGUAGE plpgsql",
                      "CREATE TRIGGER full_disk BEFORE INSERT ON records FOR EACH ROW "
                      "EXECUTE FUNCTION full_disk()")

    def repair_writes(self) -> None:
        self._ddl("DROP TRIGGER full_disk" if self.sqlite else "DROP TRIGGER full_disk ON records")


@pytest.fixture
def backend(ml_conf, tmp_path) -> Backend:
    b = Backend(ml_conf, tmp_path)
    b.store().close()          # schema in place, as the server's start-up leaves it
    return b


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def writer(loop, backend):
    w = backend.writer(loop)
    yield w
    loop.run_until_complete(w.aclose())


def run(loop, futures, timeout=10.0):
    return loop.run_until_complete(asyncio.wait_for(asyncio.gather(*futures), timeout))


def test_records_of_one_loop_turn_share_one_transaction(loop, writer, backend, signer):
    records = [signer.record(i) for i in range(20)]
    futures = [writer.submit(r) for r in records]
    assert not any(f.done() for f in futures)       # nothing before the loop turns
    assert run(loop, futures) == [None] * 20
    assert writer.batches == 1 and writer.committed == 20
    assert [r.message_id for r in backend.stored()] == [r.message_id for r in records]


def test_records_queued_during_a_batch_go_in_the_next(loop, writer, backend, signer):
    async def two_turns():
        first = [writer.submit(signer.record(i)) for i in range(3)]
        await asyncio.sleep(0)                      # the first batch is on its way
        second = [writer.submit(signer.record(i)) for i in range(3, 8)]
        return await asyncio.gather(*first, *second)
    assert loop.run_until_complete(two_turns()) == [None] * 8
    assert writer.batches == 2
    assert [int(r.message_id.split("-")[1]) for r in backend.stored()] == list(range(8))


def test_future_resolves_after_the_commit_is_visible_to_others(loop, writer, backend,
                                                               signer):
    record = signer.record()

    async def one():
        error = await writer.submit(record)
        # resolved: another connection already reads the committed record
        return error, [r.message_id for r in backend.stored()]
    assert loop.run_until_complete(one()) == (None, [record.message_id])


async def _turning(until: "asyncio.Future | float") -> float:
    """Keep the loop turning until ``until`` is done (or for that many seconds);
    return the longest gap between two turns (a blocked loop shows as a long one)."""
    worst, last = 0.0, time.monotonic()
    end = None if isinstance(until, asyncio.Future) else last + until
    while (not until.done()) if end is None else time.monotonic() < end:
        await asyncio.sleep(0.005)
        now = time.monotonic()
        worst, last = max(worst, now - last), now
    return worst


def _through_a_held_lock(loop, writer, backend, record, hold: float) -> tuple:
    """Submit ``record`` while another connection holds the lock for ``hold`` s (the
    loop turning meanwhile), then release it: (longest loop gap, the record's result)."""
    backend.hold_lock()

    async def scenario():
        future = writer.submit(record)
        gap = await _turning(hold)
        assert not future.done()
        backend.release_lock()
        return gap, await asyncio.wait_for(future, 5)
    return loop.run_until_complete(scenario())


def test_lock_held_elsewhere_does_not_block_the_loop(loop, writer, backend, signer):
    run(loop, [writer.submit(signer.record(1))])    # the chain head exists
    gap, error = _through_a_held_lock(loop, writer, backend, signer.record(2), 0.2)
    assert error is None and gap < 0.1
    assert len(backend.stored()) == 2


def test_reconnecting_while_the_lock_is_held_does_not_block_the_loop(loop, writer,
                                                                     backend, signer):
    """After a failure the writer reconnects; opening while another writer holds the
    lock must not wait for it on the loop (SQLite's default is a 30 s busy wait)."""
    run(loop, [writer.submit(signer.record(1))])
    backend.break_writes()
    assert "disk full" in run(loop, [writer.submit(signer.record(2))])[0]   # dropped
    backend.repair_writes()
    gap, error = _through_a_held_lock(loop, writer, backend, signer.record(3), 0.3)
    assert error is None and gap < 0.1
    assert [int(r.message_id.split("-")[1]) for r in backend.stored()] == [1, 3]


def test_every_record_has_its_own_deadline(loop, backend, signer):
    """Ten records queued behind a held lock, two per batch: all fail once the
    commit timeout has passed since they were submitted, not one batch after
    another (5 × the timeout)."""
    w = backend.writer(loop, commit_timeout=0.4, max_batch=2)
    run(loop, [w.submit(signer.record(0))])
    backend.hold_lock()
    try:
        started = time.monotonic()
        errors = run(loop, [w.submit(signer.record(i)) for i in range(1, 11)])
        took = time.monotonic() - started
    finally:
        backend.release_lock()
    assert all("not committed within 0.4 s" in e for e in errors)
    assert 0.35 < took < 1.2
    loop.run_until_complete(w.aclose())
    assert len(backend.stored()) == 1


def test_a_certificate_of_a_failed_batch_is_stored_with_the_next(loop, writer, backend,
                                                                 signer, test_ca):
    """The certificate cache fills only on commit: a batch that failed with a new
    signer's certificate must not leave it marked as stored."""
    from tests.server.messagelog.conftest import Signer
    other = Signer(*test_ca)
    run(loop, [writer.submit(signer.record(1))])
    backend.break_writes()
    assert "disk full" in run(loop, [writer.submit(other.record(2))])[0]
    backend.repair_writes()
    assert run(loop, [writer.submit(other.record(3))]) == [None]
    last = backend.stored()[-1]
    assert last.signature_cert_der == other.cert_der


def test_lock_held_too_long_fails_closed_then_recovers(loop, backend, signer):
    w = backend.writer(loop, commit_timeout=0.3)
    run(loop, [w.submit(signer.record(1))])
    backend.hold_lock()
    try:
        error = run(loop, [w.submit(signer.record(2))])[0]
    finally:
        backend.release_lock()
    assert error.startswith("message log write failed, message not logged")
    assert "TimeoutError: not committed within 0.3 s" in error
    assert w.last_error == error
    assert run(loop, [w.submit(signer.record(3))]) == [None]
    assert w.last_error is None
    loop.run_until_complete(w.aclose())
    assert [int(r.message_id.split("-")[1]) for r in backend.stored()] == [1, 3]


def test_write_error_fails_the_batch_with_its_reason(loop, writer, backend, signer):
    run(loop, [writer.submit(signer.record(1))])
    backend.break_writes()
    errors = run(loop, [writer.submit(signer.record(i)) for i in (2, 3)])
    assert all("disk full (test)" in e and "not logged" in e for e in errors)
    backend.repair_writes()
    assert run(loop, [writer.submit(signer.record(4))]) == [None]
    assert len(backend.stored()) == 2                # chain intact, nothing half-written


def test_aclose_commits_what_is_queued(loop, writer, backend, signer):
    futures = [writer.submit(signer.record(i)) for i in range(3)]
    loop.run_until_complete(writer.aclose())
    assert [f.result() for f in futures] == [None] * 3
    assert len(backend.stored()) == 3
    with pytest.raises(XRoadError) as ei:
        writer.submit(signer.record(4))
    assert ei.value.code == MLOG_FAILED


def test_loop_and_writer_thread_share_one_chain(loop, backend, signer):
    """Blocking callers (WSGI fallbacks on worker threads) still use the writer
    thread; both writers append to the same chain."""
    log = backend.open_log()
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
        loop.run_until_complete(log.detach_loop())
    finally:
        log.close()
    assert len(backend.stored()) == 30 + log.writer.committed


def test_store_log_uses_the_loop_writer_only_on_its_loop(loop, backend, signer):
    log = backend.open_log()
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
        loop.run_until_complete(log.detach_loop())
        assert log.loop_writer is None
    finally:
        log.close()


# -- PostgreSQL only ---------------------------------------------------------------------

@pytest.fixture
def pg_backend(postgresql_db, tmp_path) -> Backend:
    b = Backend(MessageLogConf(backend="postgresql", dsn=postgresql_db), tmp_path)
    b.store().close()
    return b


def test_postgres_restart_between_batches_is_retried_once(postgresql_cluster, pg_backend,
                                                           loop, signer):
    w = pg_backend.writer(loop)
    try:
        run(loop, [w.submit(signer.record(1))])
        postgresql_cluster.stop()
        try:
            down = run(loop, [w.submit(signer.record(2))])[0]
        finally:
            postgresql_cluster.restart()
        assert "not logged" in down and "OperationalError" in down
        run(loop, [w.submit(signer.record(3))])
        # the connection dies under the writer: the next batch goes on a new one
        postgresql_cluster.stop()
        postgresql_cluster.restart()
        assert run(loop, [w.submit(signer.record(4))]) == [None]
    finally:
        loop.run_until_complete(w.aclose())
    assert [int(r.message_id.split("-")[1]) for r in pg_backend.stored()] == [1, 3, 4]


def test_postgres_session_without_synchronous_commit_is_switched_on(pg_backend, loop,
                                                                    signer):
    conf = replace(pg_backend.conf, dsn=pg_backend.conf.dsn
                   + " options='-c synchronous_commit=off'")
    w = Backend(conf, pg_backend.data_dir).writer(loop)
    try:
        run(loop, [w.submit(signer.record())])

        async def mode():
            return (await w._query(await w._connection(), "SHOW synchronous_commit"))[0]
        assert loop.run_until_complete(mode()) == "on"
    finally:
        loop.run_until_complete(w.aclose())


def test_postgres_connect_is_bounded(loop, tmp_path, signer):
    """A server that accepts the TCP connection and never answers (libpq does not
    time out a non-blocking connect by itself): the batch fails after connect_timeout,
    and the loop keeps turning meanwhile."""
    from tunduk.server.messagelog.loop_postgres import PostgresLoopWriter
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    w = PostgresLoopWriter(loop, f"host=127.0.0.1 port={port} user=x dbname=y",
                           SERVER_ID, connect_timeout=0.3)

    async def scenario():
        future = w.submit(signer.record())
        gap = await _turning(future)
        return gap, future.result()
    try:
        started = time.monotonic()
        gap, error = loop.run_until_complete(scenario())
        took = time.monotonic() - started
    finally:
        loop.run_until_complete(w.aclose())
        silent.close()
    assert "could not connect to the database within 0.3 s" in error
    assert "not logged" in error and took < 3 and gap < 0.1


def test_postgres_aclose_lets_the_batch_in_flight_commit(pg_backend, loop, signer):
    w = pg_backend.writer(loop)
    run(loop, [w.submit(signer.record(1))])
    pg_backend.hold_lock()
    threading.Timer(0.3, pg_backend.release_lock).start()

    async def scenario():
        future = w.submit(signer.record(2))
        await asyncio.sleep(0.05)             # the batch is waiting for the row lock
        await w.aclose()
        return future.result()
    assert loop.run_until_complete(scenario()) is None
    assert len(pg_backend.stored()) == 2


def test_a_record_with_a_stored_replay_key_is_answered_as_a_duplicate(loop, writer,
                                                                      backend, signer):
    from dataclasses import replace

    from tunduk.server.messagelog.record import DuplicateRecord
    key = "d" * 64
    first, again, other = run(loop, [
        writer.submit(replace(signer.record(1), replay_key=key)),
        writer.submit(replace(signer.record(2), replay_key=key)),
        writer.submit(signer.record(3))])
    assert first is None and other is None
    assert isinstance(again, DuplicateRecord) and "accepted before" in again
    (later,) = run(loop, [writer.submit(replace(signer.record(4), replay_key=key))])
    assert isinstance(later, DuplicateRecord)
    assert len(backend.stored()) == 2
