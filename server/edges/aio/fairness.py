"""How many requests to one service a proxy carries at once.

Connections to a provider (or a backend) are shared by all its services, at most
``AsyncPool.max_connections`` at a time; a service that hangs must not hold them all.
Each service may use ``per_service`` of them; a request beyond that waits at most
``wait`` seconds for one of its service's requests to end, then gets ServiceBusy.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Hashable

from ...core import errors
from ...core.errors import XRoadError

PER_SERVICE = 32     # of the 64 connections per upstream
WAIT = 5.0           # s a request waits for its service's turn


class ServiceSlots:
    def __init__(self, per_service: int = PER_SERVICE, wait: float = WAIT) -> None:
        self.per_service, self.wait = per_service, wait
        self._slots: dict[Hashable, asyncio.Semaphore] = {}

    async def acquire(self, service: Hashable) -> asyncio.Semaphore:
        """A slot of ``service`` (release the semaphore returned), or ServiceBusy."""
        sem = self._slots.get(service)
        if sem is None:
            sem = self._slots[service] = asyncio.Semaphore(self.per_service)
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

    @contextlib.asynccontextmanager
    async def slot(self, service: Hashable) -> AsyncIterator[None]:
        sem = await self.acquire(service)
        try:
            yield
        finally:
            sem.release()
