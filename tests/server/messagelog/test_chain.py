"""The hash chain alone: encoding is unambiguous; verification names the wrong seq."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

from tunduk.server.messagelog import chain
from tunduk.server.messagelog.record import StoredRecord

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def _make_chain(n: int) -> list[StoredRecord]:
    out, prev = [], chain.GENESIS
    for seq in range(1, n + 1):
        r = StoredRecord("KG/GOV/1/ss", seq, f"m{seq}", "KG/GOV/2/c", "KG/GOV/1/s/op/v1",
                         "request", "client", f"<e>{seq}</e>".encode(), b"cert", "ab" * 32,
                         T0 + dt.timedelta(seconds=seq), prev, "")
        r = replace(r, hash=chain.hash_stored(r))
        out.append(r)
        prev = r.hash
    return out


def _verify(records, **kw):
    return chain.verify_chain(chain.entries_of(records), chain.GENESIS, 1, **kw)


def test_intact_chain_verifies():
    recs = _make_chain(5)
    assert _verify(recs, end=(5, recs[-1].hash)) == []


def test_encoding_is_length_prefixed():
    a = chain.canonical_encoding("s", 1, "ab", "c", "d", "request", "client", "0", "0", "0", "t")
    b = chain.canonical_encoding("s", 1, "a", "bc", "d", "request", "client", "0", "0", "0", "t")
    assert a != b


def test_seq_is_part_of_the_hash():
    r = _make_chain(1)[0]
    assert chain.hash_stored(replace(r, seq=2)) != r.hash


def test_edit_detected_at_its_seq():
    recs = _make_chain(6)
    recs[2] = replace(recs[2], envelope=b"<e>forged</e>")
    problems = _verify(recs)
    assert [(p.seq, p.kind) for p in problems] == [(3, "changed")]
    assert "record seq 3 (message id m3): contents changed" in str(problems[0])


def test_edit_with_recomputed_hash_breaks_next_link():
    recs = _make_chain(6)
    forged = replace(recs[2], client="KG/GOV/9/evil")
    recs[2] = replace(forged, hash=chain.hash_stored(forged))
    problems = _verify(recs)
    assert [(p.seq, p.kind) for p in problems] == [(4, "broken-link")]


def test_delete_detected():
    recs = _make_chain(6)
    del recs[3]
    problems = _verify(recs)
    assert (4, "missing") in [(p.seq, p.kind) for p in problems]
    assert any("seq 4 deleted" in str(p) for p in problems)


def test_delete_at_end_detected_with_head():
    recs = _make_chain(6)
    head = (6, recs[-1].hash)
    problems = _verify(recs[:-2], end=head)
    assert [(p.seq, p.kind) for p in problems] == [(5, "missing")]


def test_insert_detected():
    recs = _make_chain(5)
    extra = replace(recs[2], message_id="inserted")
    recs.insert(3, extra)
    kinds = [(p.seq, p.kind) for p in _verify(recs)]
    assert (3, "inserted") in kinds


def test_reorder_detected():
    recs = _make_chain(5)
    recs[1], recs[2] = recs[2], recs[1]
    problems = _verify(recs)
    assert (2, "order") in [(p.seq, p.kind) for p in problems]
    assert any("out of order after seq 3" in str(p) for p in problems)


def test_renumbered_insert_detected():
    """A record slipped in at seq 3 with later ones renumbered: hashes no longer fit."""
    recs = _make_chain(5)
    new = replace(recs[2], message_id="evil")
    shifted = [replace(r, seq=r.seq + 1) for r in recs[2:]]
    problems = _verify(recs[:2] + [new] + shifted)
    assert problems[0].seq == 3 and problems[0].kind == "changed"


def test_fast_encoding_keeps_the_v1_hash():
    """The hash definition is frozen (archives rely on it): a vector from the original
    field-by-field encoder, and the fast path equal to the reference encoder."""
    args = ("KG/GOV/70000001/ss1", 42, "msg-ü-1", "KG/GOV/70000002/centre",
            "KG/GOV/70000001/registry/getBirthRecord/v1", "response", "server", "AB" * 32,
            "cd" * 32, "Ef" * 32, "2026-11-25T13:00:00.123456Z")
    enc = chain.canonical_encoding(*args)
    assert enc == chain._canonical_encoding_reference(*args)
    assert chain.record_hash("11" * 32, enc) == \
        "8d5c72f04075b8529c5929af699f726e1b0d4ca26944c38388d6cd6c9d6b7075"
    assert chain.link_hash("11" * 32, chain.encoding_prefix(args[0]), 42,
                           chain.encoding_tail(*args[2:])) == chain.record_hash("11" * 32, enc)


def test_time_text_is_the_v1_form_for_any_offset():
    """Record times enter the chain hash as text: the direct formatting must write
    exactly what strftime("%Y-%m-%dT%H:%M:%S.%fZ") of the UTC time wrote."""
    from tunduk.server.messagelog.record import format_time, parse_time
    times = [dt.datetime(2026, 12, 7, 18, 5, 9, 7, dt.timezone.utc),
             dt.datetime(1999, 1, 1, 0, 0, 0, 0, dt.timezone.utc),
             dt.datetime(2026, 1, 1, 3, 4, 5, 999999, dt.timezone(dt.timedelta(hours=6))),
             dt.datetime(2026, 3, 1, 1, 0, 0, 1, dt.timezone(dt.timedelta(hours=-5)))]
    for t in times:
        text = format_time(t)
        assert text == t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert parse_time(text) == t
    assert format_time(times[2]) == "2025-12-31T21:04:05.999999Z"
