"""Signing acts a provider has accepted, remembered while a replay would still verify.

The message log keeps one record per replay key in its database, across worker
processes and nodes (messagelog/store.py); this in-memory cache does the same for a
server whose log is off, within one worker process.  No I/O.
"""
from __future__ import annotations

import heapq
from datetime import datetime

from . import errors
from .errors import XRoadError


def duplicate(key: str) -> XRoadError:
    return XRoadError(errors.DUPLICATE_MESSAGE,
                      f"this signed request (signing act {key[:16]}…) was already "
                      "accepted; a request is served once: to retry, send it again "
                      "through the consumer's security server, which signs it afresh")


class ReplayCache:
    """Replay keys with the time until which each must be remembered."""

    def __init__(self) -> None:
        self._until: dict[str, datetime] = {}
        self._expiry: list[tuple[datetime, str]] = []

    def claim(self, key: str, until: datetime, now: datetime) -> None:
        """Remember ``key`` until ``until``; DuplicateMessage if it is remembered."""
        self._forget(now)
        if key in self._until:
            raise duplicate(key)
        self._until[key] = until
        heapq.heappush(self._expiry, (until, key))

    def _forget(self, now: datetime) -> None:
        expiry = self._expiry
        while expiry and expiry[0][0] < now:
            _, key = heapq.heappop(expiry)
            self._until.pop(key, None)

    def __len__(self) -> int:
        return len(self._until)
