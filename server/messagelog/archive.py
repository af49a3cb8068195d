"""Archive closed periods of the message log to a zip, and verify such a zip offline.

Zip layout (format ``tunduk-messagelog-archive/1``)::

    manifest.json          server id, seq range, prev_hash before the first record,
                           last hash, counts, whether the records are time-stamped
    records.jsonl          one line per record: every field, seq, prev_hash, hash,
                           envelope file, signer certificate file
    envelopes/<seq>.xml    each envelope exactly as sent/received
    certs/<sha256>.der     signer certificates
    timestamps.jsonl       first_seq, last_seq, chain_hash, stamped_at, token file
    timestamps/<last>.tst  RFC 3161 TimeStampTokens (DER)
    tsa/tsa-cert.der       the TSA certificate, when known

Records leave the live store only after the written archive verifies and still matches
the store; the store then remembers the last archived hash so the chain stays checkable.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from . import chain
from .record import format_time, parse_time

FORMAT = "tunduk-messagelog-archive/1"
Progress = Optional[Callable[[int, int], None]]
PROGRESS_EVERY = 1000
TSA_CERT = "tsa/tsa-cert.der"


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    records: int = 0
    timestamps: int = 0
    server_id: str = ""
    first_seq: int = 0
    last_seq: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class ArchiveResult:
    path: Path
    first_seq: int
    last_seq: int
    records: int
    removed: int


class ArchiveError(Exception):
    pass


def _json_line(obj: dict) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def _tsa_cert_of(token_der: bytes) -> Optional[bytes]:
    from .tsa_client import TimestampError, verify_token
    try:
        return verify_token(token_der).tsa_cert_der
    except TimestampError:
        return None


def write_archive(path: Path, store, server_id: str, first_seq: int, last_seq: int,
                  prev_hash: str, timestamped: bool, tsa_cert_der: Optional[bytes] = None,
                  progress: Progress = None) -> int:
    """Write records first_seq..last_seq (and the timestamps covering them) to ``path``
    (via a temporary file, fsynced, then renamed).  Returns the number of records."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    n = 0
    last_hash = prev_hash
    certs_written: set[str] = set()
    total = last_seq - first_seq + 1
    with tempfile.TemporaryFile() as lines, \
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                            allowZip64=True) as zf:
        for r in store.records(server_id, first_seq, last_seq):
            env_name = f"envelopes/{r.seq}.xml"
            cert_sha = r.cert_sha256
            cert_name = f"certs/{cert_sha}.der"
            zf.writestr(env_name, r.envelope)
            if cert_sha not in certs_written:
                certs_written.add(cert_sha)
                zf.writestr(cert_name, r.signature_cert_der)
            lines.write(_json_line({
                "seq": r.seq, "server_id": r.server_id, "message_id": r.message_id,
                "client": r.client, "service": r.service, "direction": r.direction,
                "side": r.side, "created": format_time(r.created),
                "body_sha256": r.body_sha256, "envelope": env_name,
                "envelope_sha256": r.envelope_sha256, "signature_cert": cert_name,
                "signature_cert_sha256": cert_sha, "prev_hash": r.prev_hash,
                "hash": r.hash}))
            last_hash = r.hash
            n += 1
            if progress and n % PROGRESS_EVERY == 0:
                progress(n, total)
        lines.seek(0)
        with zf.open("records.jsonl", "w", force_zip64=True) as out:
            shutil.copyfileobj(lines, out)
        ts_lines = []
        for ts in store.timestamps(server_id, first_seq, last_seq):
            name = f"timestamps/{ts.last_seq}.tst"
            zf.writestr(name, ts.token)
            ts_lines.append(_json_line({
                "first_seq": ts.first_seq, "last_seq": ts.last_seq,
                "chain_hash": ts.chain_hash, "stamped_at": format_time(ts.stamped_at),
                "token": name}))
            if tsa_cert_der is None:
                tsa_cert_der = _tsa_cert_of(ts.token)
        zf.writestr("timestamps.jsonl", b"".join(ts_lines))
        if tsa_cert_der is not None:
            zf.writestr(TSA_CERT, tsa_cert_der)
        zf.writestr("manifest.json", json.dumps({
            "format": FORMAT, "server_id": server_id, "first_seq": first_seq,
            "last_seq": last_seq, "record_count": n, "prev_hash": prev_hash,
            "last_hash": last_hash, "timestamped": timestamped,
            "timestamp_count": len(ts_lines),
            "tsa_cert": TSA_CERT if tsa_cert_der is not None else None,
            "created": format_time(datetime.now(timezone.utc)),
        }, indent=2, sort_keys=True))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n


def _read(zf: zipfile.ZipFile, name: str) -> bytes:
    """A member's bytes; raises _Damaged naming the file if it cannot be read intact."""
    try:
        return zf.read(name)
    except KeyError:
        raise _Damaged(f"file {name}: missing from the archive")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise _Damaged(f"file {name}: damaged ({exc})")


class _Damaged(Exception):
    pass


def _read_lines(zf: zipfile.ZipFile, name: str, report: VerifyReport) -> list[dict]:
    """JSON lines of ``name``; reads what it can of a damaged file and reports it."""
    out: list[dict] = []
    try:
        with zf.open(name) as f:
            lineno = 0
            for raw in f:
                lineno += 1
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    report.problems.append(f"file {name} line {lineno}: not valid JSON "
                                           "(changed?)")
    except KeyError:
        report.problems.append(f"file {name}: missing from the archive")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        report.problems.append(f"file {name}: damaged ({exc})")
    return out


def _rec_label(line: dict) -> str:
    return f"record seq {line.get('seq')} (message id {line.get('message_id')})"


def verify_archive(path: Path, tsa_cert_der: Optional[bytes] = None,
                   check_signatures: bool = True, progress: Progress = None) -> VerifyReport:
    """Check an archive offline; every problem found is one line in the report.

    ``tsa_cert_der`` pins the TSA certificate; otherwise the archived one is used.
    """
    from . import envelope_check

    report = VerifyReport()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.problems.append(f"{path}: not a readable zip archive ({exc})")
        return report
    with zf:
        try:
            manifest = json.loads(_read(zf, "manifest.json"))
        except _Damaged as exc:
            report.problems.append(str(exc))
            return report
        except ValueError:
            report.problems.append("file manifest.json: not valid JSON (changed?)")
            return report
        if manifest.get("format") != FORMAT:
            report.problems.append(f"unknown archive format {manifest.get('format')!r}")
            return report
        report.server_id = manifest["server_id"]
        report.first_seq, report.last_seq = manifest["first_seq"], manifest["last_seq"]
        lines = _read_lines(zf, "records.jsonl", report)
        total = len(lines)
        entries: list[chain.ChainEntry] = []
        hash_by_seq: dict[int, str] = {}
        cert_cache: dict[str, Optional[bytes]] = {}
        for i, line in enumerate(lines, 1):
            label = _rec_label(line)
            try:
                seq = int(line["seq"])
                envelope = _read(zf, line["envelope"])
            except _Damaged as exc:
                report.problems.append(f"{label}: envelope {exc}")
                envelope = None
            except (KeyError, TypeError, ValueError):
                report.problems.append(f"{label}: manifest line incomplete (changed?)")
                continue
            cert_name = line.get("signature_cert", "")
            if cert_name not in cert_cache:
                try:
                    cert_cache[cert_name] = _read(zf, cert_name)
                except _Damaged as exc:
                    report.problems.append(f"{label}: signer certificate {exc}")
                    cert_cache[cert_name] = None
            cert = cert_cache[cert_name]
            env_sha = (hashlib.sha256(envelope).hexdigest() if envelope is not None
                       else line.get("envelope_sha256", ""))
            cert_sha = (hashlib.sha256(cert).hexdigest() if cert is not None
                        else line.get("signature_cert_sha256", ""))
            try:
                enc = chain.canonical_encoding(
                    line["server_id"], seq, line["message_id"], line["client"],
                    line["service"], line["direction"], line["side"], env_sha, cert_sha,
                    line["body_sha256"], format_time(parse_time(line["created"])))
                computed = chain.record_hash(line["prev_hash"], enc)
            except (KeyError, TypeError, ValueError):
                report.problems.append(f"{label}: manifest line incomplete (changed?)")
                continue
            if line["server_id"] != report.server_id:
                report.problems.append(f"{label}: belongs to another server's chain")
            if computed != line["hash"]:
                if envelope is not None and env_sha != line.get("envelope_sha256"):
                    report.problems.append(f"{label}: envelope changed (hash mismatch)")
                elif cert is not None and cert_sha != line.get("signature_cert_sha256"):
                    report.problems.append(f"{label}: signer certificate changed "
                                           "(hash mismatch)")
                elif envelope is not None and cert is not None:
                    report.problems.append(f"{label}: record fields changed (hash "
                                           "mismatch)")
            # Report the chain link separately below; mark this one as already judged.
            entries.append(chain.ChainEntry(seq, line["prev_hash"], line["hash"],
                                            line["hash"], line["message_id"]))
            hash_by_seq[seq] = line["hash"]
            if envelope is not None:
                try:
                    if line["body_sha256"].lower() not in envelope_check.body_hashes(envelope):
                        report.problems.append(f"{label}: body hash does not match the "
                                               "envelope's SOAP Body")
                except Exception as exc:
                    report.problems.append(f"{label}: envelope unreadable ({exc})")
                if check_signatures and cert is not None:
                    try:
                        why = envelope_check.check_signature(envelope, cert)
                    except Exception as exc:   # a tampered record must not stop the run
                        why = f"signature cannot be checked ({type(exc).__name__}: {exc})"
                    if why:
                        report.problems.append(f"{label}: {why}")
            report.records += 1
            if progress and i % PROGRESS_EVERY == 0:
                progress(i, total)
        for p in chain.verify_chain(entries, manifest["prev_hash"], manifest["first_seq"],
                                    (manifest["last_seq"], manifest["last_hash"])):
            if p.kind != "changed":
                report.problems.append(str(p))
        if report.records != manifest.get("record_count"):
            report.problems.append(f"archive holds {report.records} readable records, the "
                                   f"manifest says {manifest.get('record_count')}")
        _verify_timestamps(zf, manifest, hash_by_seq, tsa_cert_der, report)
    return report


def _verify_timestamps(zf, manifest: dict, hash_by_seq: dict[int, str],
                       tsa_cert_der: Optional[bytes], report: VerifyReport) -> None:
    from .tsa_client import TimestampError, verify_token

    if tsa_cert_der is None and manifest.get("tsa_cert"):
        try:
            tsa_cert_der = _read(zf, manifest["tsa_cert"])
        except _Damaged as exc:
            report.problems.append(f"TSA certificate {exc}")
    ts_lines = _read_lines(zf, "timestamps.jsonl", report)
    covered_to = manifest["first_seq"] - 1
    for t in ts_lines:
        label = f"timestamp for seqs {t.get('first_seq')}..{t.get('last_seq')}"
        try:
            token = _read(zf, t["token"])
            last = int(t["last_seq"])
        except _Damaged as exc:
            report.problems.append(f"{label}: token {exc}")
            continue
        except (KeyError, TypeError, ValueError):
            report.problems.append(f"{label}: timestamps.jsonl line incomplete (changed?)")
            continue
        rec_hash = hash_by_seq.get(last)
        if rec_hash is None:
            report.problems.append(f"{label}: covers record seq {last}, which is not in "
                                   "the archive")
        elif rec_hash != t.get("chain_hash"):
            report.problems.append(f"{label}: covers a different chain hash than record "
                                   f"seq {last} has (record or timestamp changed)")
        try:
            verify_token(token, digest=bytes.fromhex(t.get("chain_hash", "")),
                         tsa_cert_der=tsa_cert_der)
        except (TimestampError, ValueError) as exc:
            report.problems.append(f"{label}: token {t['token']} does not verify ({exc})")
            continue
        report.timestamps += 1
        covered_to = max(covered_to, last)
    if manifest.get("timestamped") and covered_to < manifest["last_seq"]:
        report.problems.append(f"records seq {covered_to + 1}..{manifest['last_seq']} are "
                               "not covered by a valid timestamp")


def archive_until(store, server_id: str, until: datetime, out_dir: Path,
                  timestamped: bool, tsa_cert_der: Optional[bytes] = None,
                  progress: Progress = None) -> Optional[ArchiveResult]:
    """Archive the closed period before ``until`` and remove it from the live store.

    Closed means: logged before ``until`` and, when time-stamping is on (``timestamped``),
    covered by a stored timestamp (the archive ends on a timestamp boundary).  Returns
    None when there is nothing to archive.
    """
    head = store.head(server_id)
    first = head.archived_seq + 1
    last = store.last_seq_before(server_id, until)
    if timestamped:
        ends = [t.last_seq for t in store.timestamps(server_id, first, last)
                if t.last_seq <= last]
        last = max(ends) if ends else 0
    if last < first:
        return None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = server_id.replace("/", "_")
    path = out_dir / f"messagelog-{safe}-{first:010d}-{last:010d}.zip"
    if path.exists():
        raise ArchiveError(f"{path} already exists")
    n = write_archive(path, store, server_id, first, last, head.archived_hash,
                      timestamped, tsa_cert_der, progress)
    report = verify_archive(path, tsa_cert_der, check_signatures=False)
    if not report.ok:
        raise ArchiveError(f"archive {path} does not verify, live records kept: "
                           + "; ".join(report.problems[:5]))
    last_hash = store.record_hash_at(server_id, last)
    with zipfile.ZipFile(path) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    if n != last - first + 1 or manifest["last_hash"] != last_hash:
        raise ArchiveError(f"archive {path} does not match the live store, live records "
                           "kept")
    removed = store.remove_archived(server_id, last, last_hash)
    return ArchiveResult(path, first, last, n, removed)


def stderr_progress(done: int, total: int) -> None:
    """A simple progress line on stderr."""
    print(f"\r{done}/{total} records", end="" if done < total else "\n", file=sys.stderr,
          flush=True)
