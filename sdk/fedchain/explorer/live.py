"""Chaincode events from the gateway, fanned out to browsers as server-sent events.

One background thread follows the FL chaincode's events (RoundCreated, UpdateSubmitted, RoundClosed,
RoundFinalized, RoundFailed, RoundDisputed) with a checkpoint, so a dropped stream resumes without a
gap or a repeat; each event gets a sequence number, which browsers send back as Last-Event-ID when
their EventSource reconnects. The payloads are the contract's public event payloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
RECENT = 50


@dataclass(frozen=True)
class LiveEvent:
    seq: int
    name: str
    block: int
    tx_id: str
    round_id: int | None
    received: float
    detail: dict[str, Any]

    def sse(self) -> str:
        data = {"seq": self.seq, "name": self.name, "block": self.block, "tx_id": self.tx_id,
                "round_id": self.round_id}
        return f"id: {self.seq}\nevent: ledger\ndata: {json.dumps(data)}\n\n"


class EventHub:
    """Follows the chaincode's events in a thread; async subscribers get every event after their start."""

    def __init__(self, network: Any, chaincode: str, start_block: int | None = None,
                 live_from: int | None = None) -> None:
        """`start_block`: replay events from there into `recent` (the page's history); only events of blocks
        from `live_from` on (the height at start) are pushed to browsers, so a fresh page is not refreshed
        by history."""
        self.network = network
        self.chaincode = chaincode
        self.start_block = start_block
        self.live_from = live_from
        self.recent: deque[LiveEvent] = deque(maxlen=RECENT)
        self.connected = False
        self._seq = 0
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._follow, name="explorer-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _follow(self) -> None:
        from fedchain.gateway import InMemoryCheckpoint

        checkpoint = InMemoryCheckpoint(self.start_block)
        delay = 0.5
        quiet = False  # say once that the stream dropped, not every retry while the gateway is down
        while not self._stop.is_set():
            try:
                self._stream = self.network.chaincode_events(self.chaincode, checkpoint=checkpoint,
                                                             start_block=self.start_block)
                self.connected = True
                for event in self._stream:
                    self._publish(event)
                    checkpoint.checkpoint_event(event)
                    delay, quiet = 0.5, False
            except Exception as exc:  # noqa: BLE001 - a gateway restart must not end the live view
                if not quiet:
                    log.warning("chaincode event stream ended (%s); reconnecting until the gateway answers",
                                type(exc).__name__)
                quiet = True
            finally:
                self.connected = False
            if self._stop.wait(delay):
                return
            delay = min(delay * 2, 5.0)

    def _publish(self, event: Any) -> None:
        try:
            detail = json.loads(event.payload) if event.payload else {}
        except ValueError:
            detail = {}
        rid = detail.get("round_id") if isinstance(detail, dict) else None
        with self._lock:
            self._seq += 1
            ev = LiveEvent(self._seq, event.event_name, event.block_number, event.tx_id,
                           rid if isinstance(rid, int) else None, time.time(), detail if isinstance(detail, dict) else {})
            self.recent.append(ev)
            history = self.live_from is not None and event.block_number < self.live_from
            subscribers = [] if history else list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, ev)
            except RuntimeError:  # that subscriber's loop is gone
                pass

    def publish_for_test(self, event: Any) -> None:
        """Feed an event as if it came from the gateway (unit tests without a network)."""
        self._publish(event)

    async def subscribe(self, after: int = 0) -> AsyncIterator[str]:
        """SSE text: events after sequence `after` still in memory, then new ones; a comment every
        KEEPALIVE_S keeps proxies and the browser from timing the stream out."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(maxsize=1000)
        entry = (loop, queue)
        with self._lock:
            backlog = [e for e in self.recent if e.seq > after] if after else []
            self._subscribers.add(entry)
        try:
            yield "retry: 2000\n\n"
            for ev in backlog:
                yield ev.sse()
            while True:
                try:
                    ev = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield ev.sse()
        finally:
            with self._lock:
                self._subscribers.discard(entry)
