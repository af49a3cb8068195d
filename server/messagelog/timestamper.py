"""Background time-stamping: one RFC 3161 token every interval covers all new records.

The token's message imprint is the hash of the latest chain record (itself a SHA-256
over everything before it), so one token covers every record up to it.  Failures are
tracked: when time-stamping has failed for longer than the grace period,
:meth:`Timestamper.check_accepting` refuses new messages until a timestamp succeeds.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Optional

from ..core.errors import TIMESTAMPING_FAILED, XRoadError
from .tsa_client import TimestampError, TsaClient

log = logging.getLogger(__name__)


class Timestamper:
    """Runs :meth:`run_once` every ``interval`` seconds on its own thread and store."""

    def __init__(self, store_factory: Callable[[], object], server_id: str,
                 client: TsaClient, interval: float, batch: int, grace: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store_factory = store_factory
        self._store = None
        self.server_id = server_id
        self.client = client
        self.interval = max(0.05, float(interval))
        self.batch = max(1, int(batch))
        self.grace = float(grace)
        self.clock = clock
        self._lock = threading.Lock()
        self.failing_since: Optional[float] = None
        self.last_error: Optional[str] = None
        self.last_success: Optional[datetime] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # -- state -------------------------------------------------------------------------
    def check_accepting(self) -> None:
        with self._lock:
            since, err = self.failing_since, self.last_error
        if since is not None and self.clock() - since > self.grace:
            raise XRoadError(TIMESTAMPING_FAILED,
                             f"time-stamping has failed for {self.clock() - since:.0f} s "
                             f"(longer than the {self.grace:.0f} s grace period): {err}")

    def state(self) -> str:
        with self._lock:
            since = self.failing_since
        if since is None:
            return "ok"
        return "refusing" if self.clock() - since > self.grace else "failing"

    def _failed(self, message: str) -> None:
        with self._lock:
            if self.failing_since is None:
                self.failing_since = self.clock()
            self.last_error = message
        log.warning("message log time-stamping failed: %s", message)

    def _succeeded(self) -> None:
        with self._lock:
            self.failing_since = None
            self.last_error = None
            self.last_success = datetime.now(timezone.utc)

    # -- work --------------------------------------------------------------------------
    def _get_store(self):
        if self._store is None:
            self._store = self._store_factory()
        return self._store

    def _drop_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def run_once(self) -> bool:
        """Time-stamp what is not yet covered; True if a new token was stored."""
        try:
            store = self._get_store()
            todo = store.unstamped(self.server_id, self.batch)
        except Exception as exc:
            self._drop_store()
            self._failed(f"cannot read the message log: {exc}")
            return False
        if todo is None:
            # Another process may have stamped everything: that counts as success.
            if self.failing_since is not None:
                self._succeeded()
            return False
        first, last, chain_hash = todo
        try:
            token = self.client.timestamp(bytes.fromhex(chain_hash))
        except TimestampError as exc:
            self._failed(str(exc))
            return False
        try:
            stored = store.add_timestamp(self.server_id, first, last, chain_hash,
                                         token.token_der, token.gen_time)
        except Exception as exc:
            self._drop_store()
            self._failed(f"cannot store the time-stamp token: {exc}")
            return False
        self._succeeded()
        return stored

    def _loop(self) -> None:
        # A little jitter so worker processes do not all ask the TSA at once.
        if self._stop.wait(self.interval * random.uniform(0.1, 1.0)):
            return
        while not self._stop.is_set():
            try:
                # Catch up quickly when more than one batch is waiting.
                while self.run_once() and not self._stop.is_set():
                    pass
            except Exception:  # never let the thread die silently
                log.exception("message log time-stamper")
            self._stop.wait(self.interval)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="messagelog-timestamper",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._drop_store()
