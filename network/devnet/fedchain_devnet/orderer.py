"""Solo ordering with Fabric's batch cutting, feeding the committer in the same thread.

A batch is cut when it holds max_message_count envelopes, when the next envelope would take
it past preferred_max_bytes (an envelope larger than that gets a block of its own), or when
batch_timeout has passed since its first envelope arrived: Fabric's block cutter rules. Blocks are then validated and
committed in order by this one thread, so block N+1 is validated against block N's state.

A transaction id is accepted once: broadcast refuses an id that is waiting to be ordered or is
already on the ledger (a captured envelope re-sent would otherwise take a DUPLICATE_TXID slot per
replay). Ids leave the in-flight set only after their block is committed, under the same lock as
the check, so every id is always in one of the two places.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from fabric_protos.peer import transaction_pb2

log = logging.getLogger(__name__)
_STOP = object()


class OrdererOverloaded(Exception):
    """Too many transactions waiting to be ordered; the client should retry later."""


class AlreadySubmitted(Exception):
    """The transaction id is waiting to be ordered or already on the ledger: a replay is never ordered."""


TxStatus = Callable[[str], tuple[int, int] | None]  # tx id -> (validation code, block) once committed


class Orderer:
    def __init__(self, commit: Callable[[list[bytes]], object], batch_timeout_s: float, max_count: int,
                 max_pending: int = 10000, preferred_max_bytes: int = 2 * 1024 * 1024,
                 tx_status: TxStatus = lambda tx_id: None) -> None:
        self._commit = commit
        self._tx_status = tx_status
        self._ids_lock = threading.Lock()
        self._in_flight: set[str] = set()
        self.preferred_max_bytes = preferred_max_bytes
        self._carry: tuple[str, bytes] | None = None
        self.batch_timeout = batch_timeout_s
        self.max_count = max_count
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="orderer-committer", daemon=True)
        self.failure: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def broadcast(self, envelope: bytes, tx_id: str = "") -> None:
        """Queue an envelope for ordering; with a tx id, refuse one already in flight or committed."""
        if self._stopped or self.failure is not None:
            raise OrdererOverloaded("the ordering service is shutting down")
        if tx_id:
            self._reserve(tx_id)
        try:
            self._queue.put_nowait((tx_id, envelope))
        except queue.Full:
            self._release([tx_id])
            raise OrdererOverloaded(f"{self._queue.maxsize} transactions are waiting to be ordered") from None

    def _reserve(self, tx_id: str) -> None:
        """Claim an id for ordering (same lock as _release, so a committing id is never missed by both checks)."""
        with self._ids_lock:
            if tx_id in self._in_flight:
                raise AlreadySubmitted(f"transaction {tx_id} was already submitted and is waiting to be ordered")
            status = self._tx_status(tx_id)
            if status is not None:
                code = transaction_pb2.TxValidationCode.Name(status[0])
                raise AlreadySubmitted(f"transaction {tx_id} is already on the ledger (block {status[1]}, {code}); "
                                       "a transaction id is ordered once")
            self._in_flight.add(tx_id)

    def _release(self, tx_ids: list[str]) -> None:
        with self._ids_lock:
            self._in_flight.difference_update(tx_ids)

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
            batch, size = [first], len(first[1])
            deadline = time.monotonic() + self.batch_timeout
            while len(batch) < self.max_count and size < self.preferred_max_bytes and not stopping:
                try:
                    item = self._next(deadline - time.monotonic())
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                if size + len(item[1]) > self.preferred_max_bytes:
                    self._carry = item  # opens the next block
                    break
                batch.append(item)
                size += len(item[1])
            try:
                self._commit([envelope for _, envelope in batch])
            except BaseException as exc:  # a commit failure (disk full, ...) must not be silent
                log.critical("commit failed, the ordering service stops: %s", exc)
                self.failure = exc
                return
            finally:
                self._release([tx_id for tx_id, _ in batch if tx_id])  # committed: the ledger answers for them now
