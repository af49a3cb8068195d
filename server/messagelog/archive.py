"""Archive closed periods of the message log to a zip, and verify such a zip offline.

Zip layout (format ``tunduk-messagelog-archive/1``)::

    manifest.json          server id, seq range, prev_hash before the first record,
                           last hash, counts, whether the records are time-stamped
    manifest.sig           the server's signature (its signing key) over manifest.json
    signer-cert.der        the certificate of that signing key
    records.jsonl          one line per record: every field, seq, prev_hash, hash,
                           envelope file, signer certificate file
    envelopes/<seq>.xml    each envelope exactly as sent/received
    certs/<sha256>.der     signer certificates
    timestamps.jsonl       first_seq, last_seq, chain_hash, stamped_at, token file
    timestamps/<last>.tst  RFC 3161 TimeStampTokens (DER)
    tsa/tsa-cert.der       the TSA certificate, when known

The signed manifest makes the archive prove its own completeness: its range, counts and
last hash (which covers every record before it) cannot be changed, cut or extended
without the server's key.  Records leave the live store only after the written archive
verifies and still matches the store; the store then remembers the last archived hash
so the chain stays checkable.  docs/messagelog.md says what each check proves.
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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

from ..core.detached import MAX_LIFETIME, MAX_SKEW
from . import chain
from .record import format_time, parse_time

FORMAT = "tunduk-messagelog-archive/1"
Progress = Optional[Callable[[int, int], None]]
PROGRESS_EVERY = 1000
TSA_CERT = "tsa/tsa-cert.der"


SIGNATURE = "manifest.sig"
SIGNER_CERT = "signer-cert.der"


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # trusted without a pin, unchecked
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


class ArchiveUnreadable(ArchiveError):
    """The archive's structure is not what tunduk writes: nothing can be verified."""


class ManifestSigner:
    """The server's signing key, which signs each archive's manifest."""

    def __init__(self, key, cert_der: bytes) -> None:
        self._key = key
        self.cert_der = cert_der

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> "ManifestSigner":
        """From the PEM files the server signs messages with (``[keys]`` in its conf)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        try:
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        except (OSError, ValueError, TypeError) as exc:
            raise ArchiveError(f"cannot load the signing key {key_path} or certificate "
                               f"{cert_path}: {exc}")
        if key.public_key() != cert.public_key():
            raise ArchiveError(f"{cert_path} is not the certificate of {key_path}")
        return cls(key, cert.public_bytes(serialization.Encoding.DER))

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        raise ArchiveError("the signing key must be RSA or ECDSA")


def signature_problem(data: bytes, signature: bytes, cert_der: bytes) -> Optional[str]:
    """None if ``signature`` over ``data`` verifies with ``cert_der``, else why not."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    try:
        key = x509.load_der_x509_certificate(cert_der).public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return "the signer certificate's key is neither RSA nor ECDSA"
    except InvalidSignature:
        return "the signature does not verify"
    except ValueError as exc:
        return f"the signer certificate is unreadable ({exc})"
    return None


def _json_line(obj: dict) -> bytes:
    return (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def _tsa_cert_of(token_der: bytes) -> Optional[bytes]:
    from .tsa_client import TimestampError, verify_token
    try:
        return verify_token(token_der).tsa_cert_der
    except TimestampError:
        return None


def write_archive(path: Path, store, server_id: str, first_seq: int, last_seq: int,
                  prev_hash: str, timestamped: bool, signer: ManifestSigner,
                  tsa_cert_der: Optional[bytes] = None, progress: Progress = None) -> int:
    """Write records first_seq..last_seq (and the timestamps covering them) to ``path``
    (via a temporary file, fsynced, then renamed), the manifest signed by ``signer``.
    Returns the number of records."""
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
        manifest = json.dumps({
            "format": FORMAT, "server_id": server_id, "first_seq": first_seq,
            "last_seq": last_seq, "record_count": n, "prev_hash": prev_hash,
            "last_hash": last_hash, "timestamped": timestamped,
            "timestamp_count": len(ts_lines),
            "tsa_cert": TSA_CERT if tsa_cert_der is not None else None,
            "created": format_time(datetime.now(timezone.utc)),
        }, indent=2, sort_keys=True).encode("utf-8")
        zf.writestr("manifest.json", manifest)
        zf.writestr(SIGNATURE, signer.sign(manifest))
        zf.writestr(SIGNER_CERT, signer.cert_der)
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
    """JSON lines of ``name``; reads what it can of a damaged file and reports it.
    A line that is JSON but not an object is not tunduk's: ArchiveUnreadable."""
    out: list[dict] = []
    try:
        with zf.open(name) as f:
            lineno = 0
            for raw in f:
                lineno += 1
                try:
                    obj = json.loads(raw)
                except ValueError:
                    report.problems.append(f"file {name} line {lineno}: not valid JSON "
                                           "(changed?)")
                    continue
                if not isinstance(obj, dict):
                    raise ArchiveUnreadable(f"file {name} line {lineno} is not a JSON "
                                            "object: not an archive tunduk wrote")
                out.append(obj)
    except KeyError:
        report.problems.append(f"file {name}: missing from the archive")
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        report.problems.append(f"file {name}: damaged ({exc})")
    return out


def _rec_label(line: dict) -> str:
    return f"record seq {line.get('seq')} (message id {line.get('message_id')})"


_MANIFEST_TYPES: dict[str, tuple[type, ...]] = {
    "format": (str,), "server_id": (str,), "first_seq": (int,), "last_seq": (int,),
    "record_count": (int,), "prev_hash": (str,), "last_hash": (str,),
    "timestamped": (bool,), "timestamp_count": (int,), "tsa_cert": (str, type(None))}
_LINE_TYPES: dict[str, tuple[type, ...]] = {
    "seq": (int,), "server_id": (str,), "message_id": (str,), "client": (str,),
    "service": (str,), "direction": (str,), "side": (str,), "created": (str,),
    "body_sha256": (str,), "envelope": (str,), "envelope_sha256": (str,),
    "signature_cert": (str,), "signature_cert_sha256": (str,), "prev_hash": (str,),
    "hash": (str,)}


def _wrong_field(obj: dict, types: dict[str, tuple[type, ...]]) -> Optional[str]:
    """The first field of ``obj`` missing or of the wrong JSON type, else None."""
    for key, allowed in types.items():
        value = obj.get(key, KeyError)
        if value is KeyError:
            return f"{key} is missing"
        if not isinstance(value, allowed) or (isinstance(value, bool)
                                              and bool not in allowed):
            return f"{key} must be {' or '.join(_JSON_NAMES[t] for t in allowed)}"
    return None


_JSON_NAMES = {str: "a string", int: "an integer", bool: "true or false",
               type(None): "null"}


def _load_manifest(zf: zipfile.ZipFile) -> tuple[dict, bytes]:
    """The manifest and its exact bytes; ArchiveUnreadable if it is not tunduk's."""
    try:
        data = _read(zf, "manifest.json")
        manifest = json.loads(data)
    except _Damaged as exc:
        raise ArchiveUnreadable(str(exc))
    except ValueError:
        raise ArchiveUnreadable("file manifest.json: not valid JSON (changed?)")
    if not isinstance(manifest, dict):
        raise ArchiveUnreadable("file manifest.json is not a JSON object: not an archive "
                                "tunduk wrote")
    if manifest.get("format") != FORMAT:
        raise ArchiveUnreadable(f"unknown archive format {manifest.get('format')!r}")
    wrong = _wrong_field(manifest, _MANIFEST_TYPES)
    if wrong:
        raise ArchiveUnreadable(f"file manifest.json: {wrong}: not an archive tunduk "
                                "wrote, or damaged")
    return manifest, data


def _check_manifest_signature(zf: zipfile.ZipFile, data: bytes,
                              signer_cert_der: Optional[bytes],
                              report: VerifyReport) -> None:
    """The server's signature over the manifest: what proves range and counts."""
    try:
        signature, cert = _read(zf, SIGNATURE), _read(zf, SIGNER_CERT)
    except _Damaged as exc:
        report.problems.append(f"manifest signature: {exc}: the archive cannot prove "
                               "it is complete")
        return
    if signer_cert_der is not None and cert != signer_cert_der:
        report.problems.append("manifest signed with another certificate than the "
                               "pinned --sign-cert")
        return
    why = signature_problem(data, signature, cert)
    if why:
        report.problems.append(f"manifest signature: {why} (manifest.json changed: its "
                               "range, counts and hashes cannot be trusted)")
    elif signer_cert_der is None:
        report.warnings.append(f"the manifest signature was verified with the "
                               f"certificate inside the archive ({_subject(cert)}), not a "
                               "pinned one: give --sign-cert to pin the server's signing "
                               "certificate")


def _subject(cert_der: bytes) -> str:
    from cryptography import x509
    try:
        return x509.load_der_x509_certificate(cert_der).subject.rfc4514_string()
    except ValueError:
        return "unreadable"


def verify_archive(path: Path, tsa_cert_der: Optional[bytes] = None,
                   check_signatures: bool = True, progress: Progress = None, *,
                   signer_cert_der: Optional[bytes] = None, allow_unstamped: bool = False,
                   previous: Optional[Path] = None) -> VerifyReport:
    """Check an archive offline; every problem found is one line in the report.

    ``tsa_cert_der`` pins the TSA certificate (otherwise the archived one is trusted,
    and said so in the warnings); with it pinned, records no valid token covers are a
    problem unless ``allow_unstamped``.  ``signer_cert_der`` pins the certificate the
    manifest must be signed with.  ``previous``: the archive just before this one,
    whose end this one must continue.  Raises ArchiveUnreadable when the archive's
    structure is not tunduk's.
    """
    report = VerifyReport()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveUnreadable(f"{path}: not a readable zip archive ({exc})")
    with zf:
        manifest, data = _load_manifest(zf)
        report.server_id = manifest["server_id"]
        report.first_seq, report.last_seq = manifest["first_seq"], manifest["last_seq"]
        _check_manifest_signature(zf, data, signer_cert_der, report)
        _check_continuity(manifest, previous, signer_cert_der, report)
        hash_by_seq = _check_records(zf, manifest, check_signatures, progress, report)
        covered_to = _verify_timestamps(zf, manifest, hash_by_seq, tsa_cert_der, report)
        _check_coverage(manifest, covered_to, tsa_cert_der is not None, allow_unstamped,
                        report)
    return report


def _check_continuity(manifest: dict, previous: Optional[Path],
                      signer_cert_der: Optional[bytes], report: VerifyReport) -> None:
    """This archive starts where ``previous`` ended (or the chain starts here)."""
    first = manifest["first_seq"]
    if previous is None:
        if first == 1 and manifest["prev_hash"] != chain.GENESIS:
            report.problems.append("archive starts the chain (seq 1) but its prev_hash is "
                                   "not the chain's start")
        elif first != 1:
            report.warnings.append(f"continuity with the archive before this one (ending "
                                   f"at seq {first - 1}) was not checked: give --previous "
                                   "ARCHIVE")
        return
    try:
        with zipfile.ZipFile(previous) as pz:
            prev, prev_data = _load_manifest(pz)
            prev_report = VerifyReport()
            _check_manifest_signature(pz, prev_data, signer_cert_der, prev_report)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveUnreadable(f"{previous}: not a readable zip archive ({exc})")
    for p in prev_report.problems:
        report.problems.append(f"previous archive {previous}: {p}")
    if prev["server_id"] != manifest["server_id"]:
        report.problems.append(f"previous archive {previous} is of another server's chain "
                               f"({prev['server_id']})")
    elif prev["last_seq"] + 1 != first or prev["last_hash"] != manifest["prev_hash"]:
        report.problems.append(
            f"does not continue the previous archive {previous} (it ends at seq "
            f"{prev['last_seq']}, this one starts at seq {first}"
            + ("" if prev["last_hash"] == manifest["prev_hash"] else
               " and its prev_hash is not that archive's last hash") + ")")


def _check_records(zf: zipfile.ZipFile, manifest: dict, check_signatures: bool,
                   progress: Progress, report: VerifyReport) -> dict[int, str]:
    """Every record, the chain over them and the counts; hash by seq."""
    lines = _read_lines(zf, "records.jsonl", report)
    entries: list[chain.ChainEntry] = []
    hash_by_seq: dict[int, str] = {}
    cert_cache: dict[str, Optional[bytes]] = {}
    for i, line in enumerate(lines, 1):
        entry = _check_record(zf, line, check_signatures, cert_cache, report)
        if entry is not None:
            entries.append(entry)
            hash_by_seq[entry.seq] = entry.hash
            report.records += 1
        if progress and i % PROGRESS_EVERY == 0:
            progress(i, len(lines))
    for p in chain.verify_chain(entries, manifest["prev_hash"], manifest["first_seq"],
                                (manifest["last_seq"], manifest["last_hash"])):
        if p.kind != "changed":
            report.problems.append(str(p))
    if report.records != manifest["record_count"]:
        report.problems.append(f"archive holds {report.records} readable records, the "
                               f"manifest says {manifest['record_count']}")
    return hash_by_seq


def _check_record(zf: zipfile.ZipFile, line: dict, check_signatures: bool,
                  cert_cache: dict[str, Optional[bytes]],
                  report: VerifyReport) -> Optional[chain.ChainEntry]:
    """Check one records.jsonl line; its chain entry (None if it is incomplete)."""
    from . import envelope_check

    label = _rec_label(line)
    if _wrong_field(line, _LINE_TYPES):
        report.problems.append(f"{label}: manifest line incomplete (changed?)")
        return None
    try:
        envelope: Optional[bytes] = _read(zf, line["envelope"])
    except _Damaged as exc:
        report.problems.append(f"{label}: envelope {exc}")
        envelope = None
    cert_name = line["signature_cert"]
    if cert_name not in cert_cache:
        try:
            cert_cache[cert_name] = _read(zf, cert_name)
        except _Damaged as exc:
            report.problems.append(f"{label}: signer certificate {exc}")
            cert_cache[cert_name] = None
    cert = cert_cache[cert_name]
    env_sha = (hashlib.sha256(envelope).hexdigest() if envelope is not None
               else line["envelope_sha256"])
    cert_sha = (hashlib.sha256(cert).hexdigest() if cert is not None
                else line["signature_cert_sha256"])
    try:
        enc = chain.canonical_encoding(
            line["server_id"], line["seq"], line["message_id"], line["client"],
            line["service"], line["direction"], line["side"], env_sha, cert_sha,
            line["body_sha256"], format_time(parse_time(line["created"])))
        computed = chain.record_hash(line["prev_hash"], enc)
    except ValueError:
        report.problems.append(f"{label}: manifest line incomplete (changed?)")
        return None
    if line["server_id"] != report.server_id:
        report.problems.append(f"{label}: belongs to another server's chain")
    if computed != line["hash"]:
        if envelope is not None and env_sha != line["envelope_sha256"]:
            report.problems.append(f"{label}: envelope changed (hash mismatch)")
        elif cert is not None and cert_sha != line["signature_cert_sha256"]:
            report.problems.append(f"{label}: signer certificate changed (hash mismatch)")
        elif envelope is not None and cert is not None:
            report.problems.append(f"{label}: record fields changed (hash mismatch)")
    if envelope is not None:
        try:
            if line["body_sha256"].lower() not in envelope_check.body_hashes(envelope):
                report.problems.append(f"{label}: body hash does not match the "
                                       "envelope's SOAP Body")
        except Exception as exc:      # a tampered record must not stop the run
            report.problems.append(f"{label}: envelope unreadable ({exc})")
        if check_signatures and cert is not None:
            try:
                why = envelope_check.check_signature(envelope, cert)
            except Exception as exc:
                why = f"signature cannot be checked ({type(exc).__name__}: {exc})"
            if why:
                report.problems.append(f"{label}: {why}")
    # The chain link is reported by verify_chain; this entry counts as already judged.
    return chain.ChainEntry(line["seq"], line["prev_hash"], line["hash"], line["hash"],
                            line["message_id"])


def _verify_timestamps(zf, manifest: dict, hash_by_seq: dict[int, str],
                       tsa_cert_der: Optional[bytes], report: VerifyReport) -> int:
    """Check every token against the chain hash it covers; the last seq covered."""
    from .tsa_client import TimestampError, verify_token

    pinned = tsa_cert_der is not None
    if not pinned and manifest["tsa_cert"]:
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
            digest = bytes.fromhex(t["chain_hash"])
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
            continue
        if rec_hash != t["chain_hash"]:
            report.problems.append(f"{label}: covers a different chain hash than record "
                                   f"seq {last} has (record or timestamp changed)")
            continue
        try:
            verify_token(token, digest=digest, tsa_cert_der=tsa_cert_der)
        except TimestampError as exc:
            report.problems.append(f"{label}: token {t['token']} does not verify ({exc})")
            continue
        report.timestamps += 1
        covered_to = max(covered_to, last)
    if report.timestamps != manifest["timestamp_count"]:
        report.problems.append(f"archive holds {report.timestamps} valid timestamps, the "
                               f"manifest says {manifest['timestamp_count']}")
    if report.timestamps and not pinned:
        report.warnings.append("time-stamp tokens were verified with the TSA certificate "
                               "inside the archive, not a pinned one: give --tsa-cert to "
                               "pin the TSA's certificate")
    return covered_to


def _check_coverage(manifest: dict, covered_to: int, pinned: bool, allow_unstamped: bool,
                    report: VerifyReport) -> None:
    """Records after the last valid token: a problem when time-stamping was promised."""
    last = manifest["last_seq"]
    if covered_to >= last:
        return
    span = f"records seq {covered_to + 1}..{last}"
    if manifest["timestamped"]:
        report.problems.append(f"{span} are not covered by a valid timestamp")
    elif pinned and not allow_unstamped:
        report.problems.append(f"{span} are not time-stamped although a TSA certificate "
                               "is pinned (give --allow-unstamped if this server did not "
                               "time-stamp them)")
    else:
        report.warnings.append(f"{span} are not time-stamped: only the server's "
                               "signature vouches for them")


#: How long a record must stay in the live store: a signature is accepted from
#: MAX_SKEW before its Created to MAX_SKEW after its Expires (core/detached.py).
REPLAY_WINDOW = timedelta(seconds=MAX_LIFETIME + 2 * MAX_SKEW)


def archive_until(store, server_id: str, until: datetime, out_dir: Path,
                  timestamped: bool, signer: ManifestSigner,
                  tsa_cert_der: Optional[bytes] = None, progress: Progress = None, *,
                  allow_unstamped: bool = False) -> Optional[ArchiveResult]:
    """Archive the closed period before ``until`` and remove it from the live store.

    Closed means: logged before ``until`` and, when time-stamping is on (``timestamped``),
    covered by a stored timestamp (the archive ends on a timestamp boundary).  Without
    time-stamping, records are removed only with ``allow_unstamped`` (ArchiveError
    otherwise).  Returns None when there is nothing to archive.
    """
    head = store.head(server_id)
    first = head.archived_seq + 1
    # A request record holds its replay key: removing it while the signature could
    # still verify would let that request be served again.
    until = min(until, datetime.now(timezone.utc) - REPLAY_WINDOW)
    last = store.last_seq_before(server_id, until)
    if timestamped:
        ends = [t.last_seq for t in store.timestamps(server_id, first, last)
                if t.last_seq <= last]
        last = max(ends) if ends else 0
    if last < first:
        return None
    if not timestamped and not allow_unstamped:
        raise ArchiveError(f"records seq {first}..{last} are not time-stamped (no TSA "
                           "configured): nothing but this archive would vouch for them "
                           "once removed; configure messagelog.tsa_url, or give "
                           "--allow-unstamped to archive them anyway")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe = server_id.replace("/", "_")
    path = out_dir / f"messagelog-{safe}-{first:010d}-{last:010d}.zip"
    if path.exists():
        raise ArchiveError(f"{path} already exists: move it away or archive to another "
                           "--out directory")
    n = write_archive(path, store, server_id, first, last, head.archived_hash,
                      timestamped, signer, tsa_cert_der, progress)
    report = verify_archive(path, tsa_cert_der, check_signatures=False,
                            signer_cert_der=signer.cert_der,
                            allow_unstamped=allow_unstamped)
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
