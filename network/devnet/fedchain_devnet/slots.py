"""Caps on long-lived streams (block delivery, chaincode events).

Every gRPC call holds a worker thread for its whole life; without a cap, idle subscribers
could take every worker and starve transactions.
"""

from __future__ import annotations

import threading

MAX_STREAMS = 128  # long-lived event/block streams; the rest of the RPC pool stays free for transactions


class StreamSlots:
    """Caps concurrent streams so idle subscribers cannot take every RPC worker thread."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)
        self.n = n

    def acquire(self) -> bool:
        return self._sem.acquire(blocking=False)

    def release(self) -> None:
        self._sem.release()


STREAM_SLOTS = StreamSlots(MAX_STREAMS)
