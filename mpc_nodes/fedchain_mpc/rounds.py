"""Count MPyC's sequential communication rounds: the causal depth of the message exchange.

Why: at a WAN round-trip time every message exchange on the critical path costs one one-way
delay, so the number of sequential rounds (not messages, not bytes) decides how a run scales with
latency. Counting them by hand from the MPyC program is error-prone (MPyC's comparisons, random
bits and openings each hide several exchanges), so the benchmark measures them.

How: a Lamport clock over the messages. Every message a party sends carries a 4-byte trailer with
its depth = 1 + the largest depth among the messages this party has consumed so far (consumed:
handed to the program, not just arrived at the socket). The party's depth after a piece of work is
the longest chain of messages, each sent after the previous one was received, that led to it.
k sequential openings count k; k openings started together (asyncio.gather) count 1. A payload
raises the depth one event-loop turn after it is handed over: work started together in one turn
sends before any of it can depend on what arrived.

The clock follows the party's real order of events, so independent work that happens to run after
a receive is counted behind it: on loopback (no delay) the count can exceed the data-dependency
depth slightly; with a delay, independent sends leave before the replies arrive and the count is
the critical path that the run actually paid. The benchmark cross-checks it against
(T(rtt) - T(0)) / one-way delay.

Only for benchmarks and tests: every party of a run must install it (the trailer changes MPyC's
payloads); install() before mpc.start(). The trailer bytes are not counted in trailer-free figures
(`payload_bytes_sent`).
"""

from __future__ import annotations

import asyncio
from typing import Any

_TRAILER = 4


class _State:
    installed = False
    depth = 0  # largest depth consumed (or sent) so far by this party
    messages_sent = 0
    trailer_bytes = 0
    bytes_sent = 0  # as MPyC counts them (12-byte header + payload), without the trailers


STATE = _State()


def depth() -> int:
    """This party's current causal depth (0 if the counter is not installed)."""
    return STATE.depth


def sent() -> int:
    """Bytes this party sent so far (MPyC's count without the trailers; 0 if not installed)."""
    return STATE.bytes_sent


def installed() -> bool:
    return STATE.installed


def _raise(tag: int) -> None:
    if tag > STATE.depth:
        STATE.depth = tag


def _consume(payload: bytes, loop: asyncio.AbstractEventLoop) -> bytes:
    """Strip the trailer; the depth rises on the loop's next turn, so sends that work started together
    makes in this turn (before any of it could have used the payload) are not counted behind it."""
    loop.call_soon(_raise, int.from_bytes(payload[-_TRAILER:], "little"))
    return payload[:-_TRAILER]


def install() -> None:
    """Patch MPyC's MessageExchanger so every payload carries its depth (idempotent)."""
    if STATE.installed:
        return
    from mpyc.asyncoro import MessageExchanger

    orig_send = MessageExchanger.send
    orig_receive = MessageExchanger.receive

    def send(self: Any, pc: int, payload: bytes) -> None:
        tag = STATE.depth + 1
        STATE.messages_sent += 1
        STATE.trailer_bytes += _TRAILER
        STATE.bytes_sent += 12 + len(payload)
        orig_send(self, pc, bytes(payload) + tag.to_bytes(_TRAILER, "little"))

    def receive(self: Any, pc: int) -> Any:
        got = orig_receive(self, pc)
        loop = self.runtime._loop
        if not isinstance(got, asyncio.Future):
            return _consume(got, loop)
        out: asyncio.Future = asyncio.Future(loop=loop)

        def done(f: asyncio.Future) -> None:
            if f.cancelled():
                out.cancel()
            elif f.exception() is not None:
                out.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                out.set_result(_consume(f.result(), loop))

        got.add_done_callback(done)
        return out

    MessageExchanger.send = send  # type: ignore[method-assign]
    MessageExchanger.receive = receive  # type: ignore[method-assign]
    STATE.installed = True


def payload_bytes_sent(nbytes_sent: int) -> int:
    """MPyC's bytes-sent figure without the counter's trailers (what an uninstrumented run sends)."""
    return nbytes_sent - STATE.trailer_bytes
