"""``tunduk log``: archive, verify, show and search the message log.

The store is named by the server configuration (``--conf SERVER.toml``) or directly by
``--db sqlite:PATH`` / ``--dsn DSN`` with ``--server-id INSTANCE/CLASS/CODE/SERVER``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

from .record import format_time, parse_time


def _store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conf", type=Path, help="the security server's configuration file")
    p.add_argument("--db", help="sqlite:PATH of a message log database (instead of --conf)")
    p.add_argument("--dsn", help="PostgreSQL DSN of a message log (instead of --conf)")
    p.add_argument("--server-id", help="INSTANCE/CLASS/CODE/SERVER (with --db/--dsn)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="log_command", metavar="ACTION")
    sub.required = True
    a = sub.add_parser("archive", help="archive closed periods to a zip and remove them "
                                       "from the live store")
    _store_args(a)
    a.add_argument("--until", required=True, help="archive records logged before this "
                                                  "time (ISO-8601, UTC if no zone)")
    a.add_argument("--out", required=True, type=Path, help="directory for the archive")
    a.add_argument("--tsa-cert", type=Path, help="TSA certificate to pin (PEM or DER)")
    v = sub.add_parser("verify", help="verify an archive offline")
    v.add_argument("archive", type=Path)
    v.add_argument("--tsa-cert", type=Path, help="TSA certificate to pin (PEM or DER)")
    v.add_argument("--no-signatures", action="store_true",
                   help="skip checking each envelope's XML signature")
    s = sub.add_parser("show", help="show the records of one message id")
    _store_args(s)
    s.add_argument("message_id")
    s.add_argument("--envelope", action="store_true", help="print the envelopes too")
    c = sub.add_parser("check", help="verify the live store's hash chain")
    _store_args(c)
    q = sub.add_parser("search", help="list records by client, service and time")
    _store_args(q)
    q.add_argument("--client")
    q.add_argument("--service")
    q.add_argument("--since", help="ISO-8601 time (inclusive)")
    q.add_argument("--until", help="ISO-8601 time (exclusive)")
    q.add_argument("--limit", type=int, default=1000)
    q.add_argument("--json", action="store_true", help="one JSON object per line")


class _UsageError(Exception):
    pass


def _open(args) -> tuple[object, str, bool]:
    """(store, server_id, time-stamping on?) from --conf or --db/--dsn."""
    if args.conf:
        from ..conf.load import load_server_conf
        from . import store_factory
        conf = load_server_conf(args.conf)
        ml = conf.messagelog
        if ml.backend == "off":
            raise _UsageError(f"{args.conf}: the message log is off (messagelog.backend)")
        server_id = f"{conf.owner}/{conf.server_code}"
        return store_factory(ml, conf.data_dir)(), server_id, bool(ml.tsa_url)
    if not args.server_id:
        raise _UsageError("give --conf SERVER.toml, or --db/--dsn with --server-id")
    if args.db:
        if not args.db.startswith("sqlite:"):
            raise _UsageError("--db must be sqlite:PATH")
        from .sqlite import SqliteStore
        path = Path(args.db[len("sqlite:"):])
        if not path.exists():
            raise _UsageError(f"{path}: no such message log database")
        store = SqliteStore(path)
    elif args.dsn:
        from .postgres import PostgresStore
        store = PostgresStore(args.dsn)
    else:
        raise _UsageError("give --conf SERVER.toml, or --db/--dsn with --server-id")
    # Without a configuration, time-stamping is judged from the store itself.
    stamped = store.last_timestamp(args.server_id) is not None
    return store, args.server_id, stamped


def _cert(path: Optional[Path]) -> Optional[bytes]:
    if path is None:
        return None
    from cryptography.hazmat.primitives import serialization
    from .tsa_pki import load_cert
    return load_cert(path).public_bytes(serialization.Encoding.DER)


def _summary(r) -> dict:
    return {"seq": r.seq, "message_id": r.message_id, "created": format_time(r.created),
            "client": r.client, "service": r.service, "direction": r.direction,
            "side": r.side, "body_sha256": r.body_sha256,
            "envelope_sha256": r.envelope_sha256, "hash": r.hash}


def _archive(args) -> int:
    from .archive import ArchiveError, archive_until, stderr_progress
    store, server_id, stamped = _open(args)
    try:
        until = parse_time(args.until)
        result = archive_until(store, server_id, until, args.out, stamped,
                               _cert(args.tsa_cert), progress=stderr_progress)
    except ArchiveError as exc:
        print(f"tunduk log archive: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if result is None:
        what = " time-stamped" if stamped else ""
        print(f"nothing to archive: no{what} records before {format_time(until)}")
        return 0
    print(f"archived records seq {result.first_seq}..{result.last_seq} "
          f"({result.records} records) to {result.path}; removed {result.removed} from "
          "the live store")
    return 0


def _verify(args) -> int:
    from .archive import stderr_progress, verify_archive
    report = verify_archive(args.archive, _cert(args.tsa_cert),
                            check_signatures=not args.no_signatures,
                            progress=stderr_progress)
    for p in report.problems:
        print(p)
    if report.ok:
        print(f"OK: {args.archive}: {report.records} records (seq {report.first_seq}.."
              f"{report.last_seq}) of {report.server_id}, {report.timestamps} timestamps, "
              "all verified")
        return 0
    print(f"FAILED: {args.archive}: {len(report.problems)} problem(s)")
    return 1


def _show(args) -> int:
    store, server_id, _ = _open(args)
    try:
        recs = store.search(server_id, message_id=args.message_id)
    finally:
        store.close()
    if not recs:
        print(f"no records with message id {args.message_id} in the live store "
              "(archived?)", file=sys.stderr)
        return 1
    for r in recs:
        for k, v in _summary(r).items():
            print(f"{k:16} {v}")
        print(f"{'prev_hash':16} {r.prev_hash}")
        print(f"{'signer_cert':16} sha256:{r.cert_sha256}")
        if args.envelope:
            print(r.envelope.decode("utf-8", "replace"))
        print()
    return 0


def _check(args) -> int:
    from .live_verify import verify_store
    store, server_id, _ = _open(args)
    try:
        head = store.head(server_id)
        problems = verify_store(store, server_id)
    finally:
        store.close()
    for p in problems:
        print(p)
    if problems:
        print(f"FAILED: {len(problems)} problem(s) in the live chain of {server_id}")
        return 1
    print(f"OK: live chain of {server_id} intact (seq {head.archived_seq + 1}..{head.seq})")
    return 0


def _search(args) -> int:
    store, server_id, _ = _open(args)
    try:
        recs = store.search(server_id, client=args.client, service=args.service,
                            since=parse_time(args.since) if args.since else None,
                            until=parse_time(args.until) if args.until else None,
                            limit=args.limit)
    finally:
        store.close()
    for r in recs:
        if args.json:
            print(json.dumps(_summary(r), sort_keys=True))
        else:
            print(f"{r.seq:>8}  {format_time(r.created)}  {r.direction:8} {r.side:6} "
                  f"{r.message_id}  {r.client} -> {r.service}")
    if not args.json:
        print(f"{len(recs)} record(s)", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"archive": _archive, "verify": _verify, "show": _show, "search": _search,
               "check": _check}
    try:
        return actions[args.log_command](args)
    except _UsageError as exc:
        print(f"tunduk log {args.log_command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "ConfError":
            raise
        print(f"tunduk log {args.log_command}: configuration problems:\n{exc}",
              file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"tunduk log {args.log_command}: {exc}", file=sys.stderr)
        return 2
