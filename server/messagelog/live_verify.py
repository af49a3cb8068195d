"""Verify the live store's chain for one server: edits, deletions, insertions, reorders,
and the time-stamp tokens that make the chain's history more than the database's word."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import chain


def verify_store(store, server_id: str, progress=None,
                 hashes: Optional[dict[int, str]] = None) -> list[chain.ChainProblem]:
    """Problems in the live chain of ``server_id`` (empty list: the chain is intact).

    Starts from the last archived hash the store remembers and must end on the chain
    head, so records removed from the end are found too, unless the head was rewound
    with them: only time-stamp tokens (:func:`check_store`) catch that.  ``hashes``:
    seqs whose recomputed hash the caller wants, filled in on the way.
    """
    head = store.head(server_id)

    def entries():
        n = 0
        for e in chain.entries_of(store.records(server_id)):
            n += 1
            if progress and n % 1000 == 0:
                progress(n, head.seq - head.archived_seq)
            if hashes is not None and e.seq in hashes:
                hashes[e.seq] = e.computed_hash
            yield e

    return chain.verify_chain(entries(), head.archived_hash, head.archived_seq + 1,
                              (head.seq, head.hash))


@dataclass
class StoreCheck:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    first_seq: int = 0
    last_seq: int = 0
    stamped_to: int = 0           # last seq a valid token covers (archived_seq if none)
    timestamps: int = 0

    @property
    def unstamped(self) -> Optional[tuple[int, int]]:
        """The seqs after the last valid token, if any."""
        if self.stamped_to >= self.last_seq:
            return None
        return self.stamped_to + 1, self.last_seq


def check_store(store, server_id: str, tsa_cert_der: Optional[bytes] = None,
                progress=None) -> StoreCheck:
    """The chain as :func:`verify_store` checks it, and every stored time-stamp token
    verified against the recomputed hash of the record it covers (``tsa_cert_der``
    pins the TSA; otherwise each token's own certificate is trusted, with a warning)."""
    head = store.head(server_id)
    stamps = store.timestamps(server_id, head.archived_seq + 1)
    hashes: dict[int, str] = {t.last_seq: "" for t in stamps}
    out = StoreCheck(first_seq=head.archived_seq + 1, last_seq=head.seq,
                     stamped_to=head.archived_seq)
    out.problems = [str(p) for p in verify_store(store, server_id, progress, hashes)]
    for t in stamps:
        why = _token_problem(t, hashes[t.last_seq], tsa_cert_der)
        if why:
            out.problems.append(f"timestamp for seqs {t.first_seq}..{t.last_seq}: {why}")
            continue
        out.timestamps += 1
        out.stamped_to = max(out.stamped_to, t.last_seq)
    if out.timestamps and tsa_cert_der is None:
        out.warnings.append("time-stamp tokens were verified with the TSA certificate "
                            "inside each token, not a pinned one: give --tsa-cert (or set "
                            "messagelog.tsa_cert in the server configuration)")
    return out


def _token_problem(t, record_hash: str, tsa_cert_der: Optional[bytes]) -> Optional[str]:
    """Why token ``t`` does not vouch for the record it names (None: it does)."""
    from .tsa_client import TimestampError, verify_token

    if not record_hash:
        return (f"covers record seq {t.last_seq}, which is not in the live store "
                "(records deleted from the end of the chain?)")
    if t.chain_hash != record_hash:
        return (f"covers another chain hash than record seq {t.last_seq} has now "
                "(records up to it changed and rehashed?)")
    try:
        verify_token(t.token, digest=bytes.fromhex(record_hash), tsa_cert_der=tsa_cert_der)
    except (TimestampError, ValueError) as exc:
        return f"token does not verify ({exc})"
    return None
