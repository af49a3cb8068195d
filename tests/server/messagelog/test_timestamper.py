"""Time-stamping the chain: one token covers all new records; failures past the grace
period make the log refuse (TIMESTAMPING_FAILED) until a timestamp succeeds."""
from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from tunduk.server.core.errors import TIMESTAMPING_FAILED, XRoadError
from tunduk.server.messagelog import open_message_log
from tunduk.server.messagelog.tsa_client import TsaClient, verify_token

from .conftest import SERVER_ID


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_timestamp_covers_all_new_records(with_tsa, tmp_path, signer, tsa, factory):
    log = open_message_log(with_tsa, tmp_path, SERVER_ID)
    for i in range(4):
        log.log(signer.record(i))
    assert log.timestamper.run_once() is True
    assert log.timestamper.run_once() is False        # nothing new: no token
    log.log(signer.record(9))
    assert log.timestamper.run_once() is True
    store = factory()
    ts = store.timestamps(SERVER_ID)
    assert [(t.first_seq, t.last_seq) for t in ts] == [(1, 4), (5, 5)]
    for t in ts:
        assert t.chain_hash == store.record_hash_at(SERVER_ID, t.last_seq)
        verify_token(t.token, digest=bytes.fromhex(t.chain_hash), tsa_cert_der=tsa.cert_der)
    st = log.status()
    assert st["timestamping"] == "ok" and st["last_timestamped_seq"] == 5
    store.close()
    log.close()


def test_batch_limit_splits_ranges(with_tsa, tmp_path, signer, factory):
    log = open_message_log(replace(with_tsa, timestamp_batch=2), tmp_path, SERVER_ID)
    for i in range(5):
        log.log(signer.record(i))
    while log.timestamper.run_once():
        pass
    store = factory()
    assert [(t.first_seq, t.last_seq) for t in store.timestamps(SERVER_ID)] == \
        [(1, 2), (3, 4), (5, 5)]
    store.close()
    log.close()


def test_tsa_down_longer_than_grace_refuses_then_recovers(with_tsa, tmp_path, signer, tsa):
    log = open_message_log(replace(with_tsa, timestamp_failure_grace=60), tmp_path,
                           SERVER_ID)
    clock = FakeClock()
    log.timestamper.clock = clock
    log.timestamper.client = TsaClient(_dead_url(), tsa.cert_der, timeout=5)
    log.log(signer.record())
    assert log.timestamper.run_once() is False
    log.check_accepting()                       # failing, but within the grace period
    assert log.status()["timestamping"] == "failing"
    clock.now += 61
    assert log.timestamper.run_once() is False
    with pytest.raises(XRoadError) as ei:
        log.check_accepting()
    assert ei.value.code == TIMESTAMPING_FAILED
    assert "cannot reach TSA" in ei.value.message
    st = log.status()
    assert st["timestamping"] == "refusing" and "cannot reach TSA" in st["last_error"]
    # The TSA is back: the next round covers the waiting records and the log accepts.
    log.timestamper.client = TsaClient(tsa.url, tsa.cert_der)
    assert log.timestamper.run_once() is True
    log.check_accepting()
    assert log.status()["timestamping"] == "ok"
    log.close()


def test_wrong_tsa_key_counts_as_failure(with_tsa, tmp_path, signer, test_ca):
    """A TSA answering with tokens that do not verify against the pinned certificate."""
    from tunduk.server.messagelog import tsa_pki
    _, other_cert = tsa_pki.make_tsa_cert(*test_ca)
    from cryptography.hazmat.primitives import serialization
    other_der = other_cert.public_bytes(serialization.Encoding.DER)
    log = open_message_log(replace(with_tsa, timestamp_failure_grace=0), tmp_path, SERVER_ID,
                           tsa_cert_der=other_der)
    clock = FakeClock()
    log.timestamper.clock = clock
    log.log(signer.record())
    assert log.timestamper.run_once() is False
    clock.now += 1
    with pytest.raises(XRoadError) as ei:
        log.check_accepting()
    assert ei.value.code == TIMESTAMPING_FAILED
    log.close()


def test_no_tsa_url_never_refuses(ml_conf, tmp_path, signer):
    log = open_message_log(ml_conf, tmp_path, SERVER_ID)
    log.log(signer.record())
    assert log.timestamper is None
    log.check_accepting()
    assert log.status()["timestamping"] == "off"
    log.close()


def test_background_thread_stamps(with_tsa, tmp_path, signer, factory):
    """The real thread, with a short interval: wait on the store, not on a timer."""
    import time
    log = open_message_log(replace(with_tsa, timestamp_interval=0.1), tmp_path, SERVER_ID)
    log.log(signer.record())
    store = factory()
    deadline = time.monotonic() + 60
    while not store.timestamps(SERVER_ID) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [(t.first_seq, t.last_seq) for t in store.timestamps(SERVER_ID)] == [(1, 1)]
    store.close()
    log.close()
