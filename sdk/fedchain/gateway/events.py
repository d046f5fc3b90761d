"""Chaincode event streams that resume exactly where a consumer stopped.

A checkpoint records the block in which the next event is expected and the last
transaction already processed in it (Fabric's checkpointer semantics). Reconnecting with
SeekPosition.specified(block) + after_transaction_id delivers neither a gap nor a repeat.
The consumer checkpoints after it has processed an event, so a crash in between replays
that one event rather than losing it (at-least-once at the crash point, exactly-once otherwise).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import grpc
from fabric_protos.gateway import gateway_pb2

from fedchain.durable import write_durably
from fedchain.gateway.errors import EventsError, from_rpc_error


@dataclass(frozen=True)
class ChaincodeEvent:
    block_number: int
    tx_id: str
    chaincode_name: str
    event_name: str
    payload: bytes


class Checkpoint(Protocol):
    @property
    def block_number(self) -> int | None: ...

    @property
    def transaction_id(self) -> str | None: ...

    def checkpoint_block(self, block_number: int) -> None: ...

    def checkpoint_transaction(self, block_number: int, transaction_id: str) -> None: ...

    def checkpoint_event(self, event: ChaincodeEvent) -> None: ...


class InMemoryCheckpoint:
    """Checkpoint kept in memory: resumes across reconnects within one process."""

    def __init__(self, block_number: int | None = None, transaction_id: str | None = None) -> None:
        self._block = block_number
        self._tx = transaction_id or None
        self._lock = threading.Lock()

    @property
    def block_number(self) -> int | None:
        return self._block

    @property
    def transaction_id(self) -> str | None:
        return self._tx

    def _set(self, block_number: int, transaction_id: str | None) -> None:
        with self._lock:
            self._block, self._tx = block_number, transaction_id or None

    def checkpoint_block(self, block_number: int) -> None:
        """Block fully processed: resume at the next one."""
        self._set(block_number + 1, None)

    def checkpoint_transaction(self, block_number: int, transaction_id: str) -> None:
        self._set(block_number, transaction_id)

    def checkpoint_event(self, event: ChaincodeEvent) -> None:
        self.checkpoint_transaction(event.block_number, event.tx_id)


class FileCheckpoint(InMemoryCheckpoint):
    """Checkpoint persisted as JSON (Fabric's blockNumber/transactionId keys), replaced atomically.

    Each update is written to a temporary file in the same folder, fsynced and renamed over
    the old one, so a crash leaves either the old or the new checkpoint, never a torn one.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        block, tx = None, None
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
                block = raw.get("blockNumber")
                tx = raw.get("transactionId") or None
                if block is not None and (not isinstance(block, int) or block < 0):
                    raise ValueError(f"blockNumber {block!r} is not a non-negative integer")
            except (json.JSONDecodeError, AttributeError, ValueError) as exc:
                raise ValueError(f"checkpoint file {self.path} is corrupt: {exc}") from exc
        super().__init__(block, tx)

    def _set(self, block_number: int, transaction_id: str | None) -> None:
        with self._lock:
            data = json.dumps({"blockNumber": block_number, "transactionId": transaction_id or ""})
            write_durably(self.path, data.encode())
            self._block, self._tx = block_number, transaction_id or None


class ServerStream:
    """A server-streaming call as an iterator of responses: ends quietly when cancelled by close(),
    turns any other gRPC failure into EventsError. Subclasses turn responses into items."""

    def __init__(self, call: grpc.Call) -> None:
        self._call = call
        self._closed = False

    def _next_response(self):
        """The next response; StopIteration at the end of the stream or after close()."""
        if self._closed:
            raise StopIteration
        try:
            return next(self._call)
        except StopIteration:
            self._closed = True
            raise
        except grpc.RpcError as exc:
            if self._closed or exc.code() == grpc.StatusCode.CANCELLED:
                self._closed = True
                raise StopIteration from None
            raise from_rpc_error(EventsError, exc) from exc

    def __iter__(self):
        return self

    def close(self) -> None:
        self._closed = True
        self._call.cancel()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChaincodeEventStream(ServerStream, Iterator[ChaincodeEvent]):
    """Iterator over a ChaincodeEvents call; `close()` (or leaving a `with` block) cancels it."""

    def __init__(self, open_call: Callable[[], grpc.Call], chaincode_name: str) -> None:
        super().__init__(open_call())
        self._chaincode = chaincode_name
        self._pending: list[ChaincodeEvent] = []

    def __next__(self) -> ChaincodeEvent:
        while not self._pending:
            response: gateway_pb2.ChaincodeEventsResponse = self._next_response()
            self._pending = [
                ChaincodeEvent(response.block_number, e.tx_id, e.chaincode_id or self._chaincode, e.event_name,
                               bytes(e.payload))
                for e in response.events
            ]
            self._pending.reverse()
        return self._pending.pop()
