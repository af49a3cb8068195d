"""Verify the live store's chain for one server: edits, deletions, insertions, reorders."""
from __future__ import annotations


from . import chain


def verify_store(store, server_id: str, progress=None) -> list[chain.ChainProblem]:
    """Problems in the live chain of ``server_id`` (empty list: the chain is intact).

    Starts from the last archived hash the store remembers and must end on the chain
    head, so records removed from the end are found too.
    """
    head = store.head(server_id)

    def entries():
        n = 0
        for e in chain.entries_of(store.records(server_id)):
            n += 1
            if progress and n % 1000 == 0:
                progress(n, head.seq - head.archived_seq)
            yield e

    return chain.verify_chain(entries(), head.archived_hash, head.archived_seq + 1,
                              (head.seq, head.hash))
