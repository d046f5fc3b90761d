"""Solo ordering with Fabric's batch cutting, feeding the committer in the same thread.

A batch is cut when it holds max_message_count envelopes, when the next envelope would take
it past preferred_max_bytes (an envelope larger than that gets a block of its own), or when
batch_timeout has passed since its first envelope arrived: Fabric's block cutter rules. Blocks are then validated and
committed in order by this one thread, so block N+1 is validated against block N's state.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)
_STOP = object()


class OrdererOverloaded(Exception):
    """Too many transactions waiting to be ordered; the client should retry later."""


class Orderer:
    def __init__(self, commit: Callable[[list[bytes]], object], batch_timeout_s: float, max_count: int,
                 max_pending: int = 10000, preferred_max_bytes: int = 2 * 1024 * 1024) -> None:
        self._commit = commit
        self.preferred_max_bytes = preferred_max_bytes
        self._carry: bytes | None = None
        self.batch_timeout = batch_timeout_s
        self.max_count = max_count
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="orderer-committer", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def broadcast(self, envelope: bytes) -> None:
        if self._stopped or self.failure is not None:
            raise OrdererOverloaded("the ordering service is shutting down")
        try:
            self._queue.put_nowait(envelope)
        except queue.Full:
            raise OrdererOverloaded(f"{self._queue.maxsize} transactions are waiting to be ordered") from None

    def stop(self, timeout: float = 10.0) -> None:
        """Order and commit what was accepted, then stop."""
        self._stopped = True
        if not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _next(self, timeout: float | None):
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return self._queue.get()
        return self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()

    def _run(self) -> None:
        stopping = False
        while not stopping or self._carry is not None:
            first = self._next(None) if not stopping else self._next(0)
            if first is _STOP:
                stopping = True
                continue
            batch, size = [first], len(first)
            deadline = time.monotonic() + self.batch_timeout
            while len(batch) < self.max_count and size < self.preferred_max_bytes and not stopping:
                try:
                    item = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if size + len(item) > self.preferred_max_bytes:
                    self._carry = item  # opens the next block
                    break
                batch.append(item)
                size += len(item)
            try:
                self._commit(batch)
            except BaseException as exc:  # a commit failure (disk full, ...) must not be silent
                log.critical("commit failed, the ordering service stops: %s", exc)
                self.failure = exc
                return
