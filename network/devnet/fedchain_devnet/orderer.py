"""Solo ordering with Fabric's batch cutting, feeding the committer in the same thread.

A batch is cut when it holds max_message_count envelopes or batch_timeout has passed since
its first envelope arrived (Fabric's BatchTimeout semantics). Blocks are then validated and
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
                 max_pending: int = 10000) -> None:
        self._commit = commit
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

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            deadline = time.monotonic() + self.batch_timeout
            while len(batch) < self.max_count:
                remaining = deadline - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._commit(batch)
            except BaseException as exc:  # a commit failure (disk full, ...) must not be silent
                log.critical("commit failed, the ordering service stops: %s", exc)
                self.failure = exc
                return
