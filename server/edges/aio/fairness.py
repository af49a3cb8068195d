"""How many requests to one service a proxy carries at once.

Connections to a provider (or a backend) are shared by all its services, at most
``AsyncPool.max_connections`` at a time; a service that hangs must not hold them all.
Each service may use ``per_service`` of them; a request beyond that waits at most
``wait`` seconds for one of its service's requests to end, then gets ServiceBusy.
"""
from __future__ import annotations

import asyncio
from typing import Hashable

from ...core import errors
from ...core.errors import XRoadError

PER_SERVICE = 32     # of the 64 connections per upstream
WAIT = 5.0           # s a request waits for its service's turn


class ServiceSlots:
    def __init__(self, per_service: int = PER_SERVICE, wait: float = WAIT) -> None:
        self.per_service, self.wait = per_service, wait
        self._slots: dict[Hashable, asyncio.Semaphore] = {}
        self._held: dict[Hashable, int] = {}

    async def acquire(self, service: Hashable) -> "_Slot":
        """A slot of ``service`` (``release()`` it), or ServiceBusy."""
        sem = self._slots.get(service)
        if sem is None:
            sem = self._slots[service] = asyncio.Semaphore(self.per_service)
        await self._take(sem, service)
        self._held[service] = self._held.get(service, 0) + 1
        return _Slot(self, service, sem)

    def _released(self, service: Hashable) -> None:
        # services are named by callers: keep only those with requests in progress
        # (none held means none waits either: a request waits only while all are held)
        held = self._held[service] - 1
        if held:
            self._held[service] = held
        else:
            del self._held[service]
            del self._slots[service]

    async def _take(self, sem: asyncio.Semaphore, service: Hashable) -> asyncio.Semaphore:
        if not sem.locked():
            await sem.acquire()          # free: returns at once
            return sem
        try:
            await asyncio.wait_for(sem.acquire(), self.wait)
        except (asyncio.TimeoutError, TimeoutError):
            raise XRoadError(
                errors.SERVICE_BUSY,
                f"{self.per_service} requests to service {service} are in progress "
                f"and none ended within {self.wait:g} s: the service is slow or "
                "hanging; other services are not held up. Try again later") from None
        return sem

    def __len__(self) -> int:
        return len(self._slots)


class _Slot:
    __slots__ = ("slots", "service", "sem")

    def __init__(self, slots: ServiceSlots, service: Hashable,
                 sem: asyncio.Semaphore) -> None:
        self.slots, self.service, self.sem = slots, service, sem

    def release(self) -> None:
        self.sem.release()
        self.slots._released(self.service)
