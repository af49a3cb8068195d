"""``tunduk log``: archive, verify, show and search the message log.

The store is named by the server configuration (``--conf SERVER.toml``) or directly by
``--db sqlite:PATH`` / ``--dsn DSN`` with ``--server-id INSTANCE/CLASS/CODE/SERVER``.
Exit status: 0 verified, 1 problems found, 2 the command could not do its work (one
line on stderr saying what to do).  docs/messagelog.md says what each check proves.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from datetime import datetime
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
    a = sub.add_parser(
        "archive", help="archive closed periods to a zip and remove them from the live "
                        "store",
        description="Archive the records logged before --until (up to the last "
                    "time-stamp) to a zip whose manifest the server signs with its "
                    "signing key, then remove them from the live store.")
    _store_args(a)
    a.add_argument("--until", required=True, help="archive records logged before this "
                                                  "time (ISO-8601, UTC if no zone)")
    a.add_argument("--out", required=True, type=Path, help="directory for the archive")
    a.add_argument("--tsa-cert", type=Path, help="TSA certificate to pin (PEM or DER; "
                                                 "default: messagelog.tsa_cert)")
    a.add_argument("--sign-key", type=Path, help="the server's signing key (PEM) to sign "
                                                 "the manifest with (default: [keys] "
                                                 "sign_key of --conf)")
    a.add_argument("--sign-cert", type=Path, help="its certificate (PEM; default: [keys] "
                                                  "sign_cert of --conf)")
    a.add_argument("--allow-unstamped", action="store_true",
                   help="archive and remove records although no TSA time-stamped them "
                        "(time-stamping off)")
    v = sub.add_parser(
        "verify", help="verify an archive offline",
        description="Verify an archive offline: the server's signature over its "
                    "manifest (range, counts, last hash), the hash chain, every "
                    "envelope, signature and time-stamp token.  Certificates not pinned "
                    "are taken from the archive, with a WARNING.")
    v.add_argument("archive", type=Path)
    v.add_argument("--tsa-cert", type=Path,
                   help="TSA certificate to pin (PEM or DER); records no token covers "
                        "then fail unless --allow-unstamped")
    v.add_argument("--sign-cert", type=Path,
                   help="the server's signing certificate the manifest must be signed "
                        "with (PEM or DER)")
    v.add_argument("--previous", type=Path, metavar="ARCHIVE",
                   help="the archive before this one: check that this one continues it")
    v.add_argument("--allow-unstamped", action="store_true",
                   help="accept records no time-stamp covers although --tsa-cert is given")
    v.add_argument("--no-signatures", action="store_true",
                   help="skip checking each envelope's XML signature")
    s = sub.add_parser("show", help="show the records of one message id")
    _store_args(s)
    s.add_argument("message_id")
    s.add_argument("--envelope", action="store_true", help="print the envelopes too")
    c = sub.add_parser(
        "check", help="verify the live store's hash chain and time-stamps",
        description="Verify the live store's hash chain and every time-stamp token "
                    "against the record it covers; records after the last token are "
                    "reported as not yet time-stamped.")
    _store_args(c)
    c.add_argument("--tsa-cert", type=Path, help="TSA certificate to pin (PEM or DER; "
                                                 "default: messagelog.tsa_cert)")
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


@dataclass
class _Source:
    store: object
    server_id: str
    stamped: bool                   # time-stamping on?
    tsa_cert_der: Optional[bytes]   # the configured TSA certificate, if any
    sign_key: Optional[Path] = None
    sign_cert: Optional[Path] = None


def _open(args) -> _Source:
    """The store and what the configuration says about it, from --conf or --db/--dsn."""
    if args.conf:
        from ..conf.load import load_server_conf
        from . import store_factory
        conf = load_server_conf(args.conf)
        ml = conf.messagelog
        if ml.backend == "off":
            raise _UsageError(f"{args.conf}: the message log is off (messagelog.backend)")
        server_id = f"{conf.owner}/{conf.server_code}"
        return _Source(store_factory(ml, conf.data_dir)(), server_id, bool(ml.tsa_url),
                       ml.tsa_cert_der, conf.keys.sign_key, conf.keys.sign_cert)
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
    return _Source(store, args.server_id, stamped, None)


def _time(option: str, text: Optional[str]) -> Optional[datetime]:
    """An operator's ISO-8601 time, or a usage error naming the option."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise _UsageError(f"{option} {text!r} is not an ISO-8601 time: write it like "
                          "2024-03-01T12:00:00Z")


def _cert(path: Optional[Path], option: str = "--tsa-cert") -> Optional[bytes]:
    """A certificate file (PEM or DER) as DER."""
    if path is None:
        return None
    from cryptography.hazmat.primitives import serialization
    from .tsa_pki import load_cert
    try:
        return load_cert(path).public_bytes(serialization.Encoding.DER)
    except (OSError, ValueError) as exc:
        raise _UsageError(f"{option} {path}: not a readable PEM or DER certificate ({exc})")


def _summary(r) -> dict:
    return {"seq": r.seq, "message_id": r.message_id, "created": format_time(r.created),
            "client": r.client, "service": r.service, "direction": r.direction,
            "side": r.side, "body_sha256": r.body_sha256,
            "envelope_sha256": r.envelope_sha256, "hash": r.hash}


def _signer(args, src: _Source):
    from .archive import ManifestSigner
    key, cert = args.sign_key or src.sign_key, args.sign_cert or src.sign_cert
    if key is None or cert is None:
        raise _UsageError("the archive's manifest must be signed with the server's "
                          "signing key: give --conf SERVER.toml, or --sign-key and "
                          "--sign-cert")
    return ManifestSigner.load(key, cert)


def _archive(args) -> int:
    from .archive import archive_until, stderr_progress
    until = _time("--until", args.until)
    tsa_cert = _cert(args.tsa_cert)
    src = _open(args)
    try:
        signer = _signer(args, src)
        result = archive_until(src.store, src.server_id, until, args.out, src.stamped,
                               signer, tsa_cert or src.tsa_cert_der,
                               progress=stderr_progress,
                               allow_unstamped=args.allow_unstamped)
    finally:
        src.store.close()
    if result is None:
        what = " time-stamped" if src.stamped else ""
        print(f"nothing to archive: no{what} records before {format_time(until)}")
        return 0
    if not src.stamped:
        print(f"WARNING: records seq {result.first_seq}..{result.last_seq} were archived "
              "and removed without a time-stamp (--allow-unstamped)", file=sys.stderr)
    print(f"archived records seq {result.first_seq}..{result.last_seq} "
          f"({result.records} records) to {result.path}; removed {result.removed} from "
          "the live store")
    return 0


def _verify(args) -> int:
    from .archive import ArchiveUnreadable, stderr_progress, verify_archive
    tsa_cert, sign_cert = _cert(args.tsa_cert), _cert(args.sign_cert, "--sign-cert")
    try:
        report = verify_archive(args.archive, tsa_cert,
                                check_signatures=not args.no_signatures,
                                progress=stderr_progress, signer_cert_der=sign_cert,
                                allow_unstamped=args.allow_unstamped,
                                previous=args.previous)
    except ArchiveUnreadable as exc:
        raise _UsageError(f"{args.archive}: cannot be verified: {exc}; restore the "
                          "archive from a copy")
    for w in report.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    for p in report.problems:
        print(p)
    if report.ok:
        print(f"OK: {args.archive}: {report.records} records (seq {report.first_seq}.."
              f"{report.last_seq}) of {report.server_id}, {report.timestamps} timestamps, "
              "all verified" + (f" ({len(report.warnings)} warning(s) on stderr)"
                                if report.warnings else ""))
        return 0
    print(f"FAILED: {args.archive}: {len(report.problems)} problem(s)")
    return 1


def _show(args) -> int:
    src = _open(args)
    try:
        recs = src.store.search(src.server_id, message_id=args.message_id)
    finally:
        src.store.close()
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
    from .live_verify import check_store
    tsa_cert = _cert(args.tsa_cert)
    src = _open(args)
    try:
        result = check_store(src.store, src.server_id, tsa_cert or src.tsa_cert_der)
    finally:
        src.store.close()
    for w in result.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    for p in result.problems:
        print(p)
    if result.problems:
        print(f"FAILED: {len(result.problems)} problem(s) in the live chain of "
              f"{src.server_id}")
        return 1
    print(f"OK: live chain of {src.server_id} intact (seq {result.first_seq}.."
          f"{result.last_seq}), {result.timestamps} time-stamp token(s) verified")
    if result.unstamped:
        first, last = result.unstamped
        print(f"NOT YET STAMPED: records seq {first}..{last}: no time-stamp covers them "
              "yet, so only the database vouches for them")
    return 0


def _search(args) -> int:
    since, until = _time("--since", args.since), _time("--until", args.until)
    src = _open(args)
    try:
        recs = src.store.search(src.server_id, client=args.client, service=args.service,
                                since=since, until=until, limit=args.limit)
    finally:
        src.store.close()
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
    from .archive import ArchiveError
    actions = {"archive": _archive, "verify": _verify, "show": _show, "search": _search,
               "check": _check}
    try:
        return actions[args.log_command](args)
    except (_UsageError, ArchiveError) as exc:
        print(f"tunduk log {args.log_command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if type(exc).__name__ != "ConfError":
            raise
        print(f"tunduk log {args.log_command}: configuration problems:\n{exc}",
              file=sys.stderr)
        return 2
