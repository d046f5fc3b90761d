"""A tiny chaincode that exercises every stub operation: for ledger tests and the benchmark.

Transactions (all arguments are strings; values are stored as their UTF-8 bytes):
  put(key, value)                   -> ""                      write
  get(key)                          -> the raw value (404 when absent)
  del(key)                          -> ""                      delete
  inc(key, delta="1")               -> new value as decimal     read-modify-write (MVCC read dependency)
  range(start, end, page_size="", bookmark="")
                                    -> {"items": [{"key", "value"}], "bookmark"}  (bookmark only when paged)
  history(key)                      -> [{"tx_id", "value", "timestamp", "is_delete"}]  newest first
  whoami                            -> {"msp_id", "role", "id", "common_name", "tx_id", "channel_id",
                                        "timestamp"}
  event(name, payload)              -> ""                      sets the chaincode event
  transient(key)                    -> the transient value (404 when absent)
  fail(msg)                         -> error Response (status 400) with msg
  boom                              -> raises RuntimeError (tests the shim's/contract's error path)
"""

from __future__ import annotations

from typing import Any

from fedchain_cc.shim.contract import Contract, ContractError, transaction
from fedchain_cc.shim.interface import ChaincodeStubAPI


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


class TestChaincode(Contract):
    """Entry point `fedchain_cc.testcc:TestChaincode` (`python -m fedchain_cc --chaincode testcc`)."""

    __test__ = False  # not a pytest test class

    @transaction
    def put(self, stub: ChaincodeStubAPI, key: str, value: str) -> None:
        stub.put_state(key, value.encode("utf-8"))

    @transaction
    def get(self, stub: ChaincodeStubAPI, key: str) -> bytes:
        value = stub.get_state(key)
        if not value:
            raise ContractError(f"key {key!r} not found", 404)
        return value

    @transaction("del")
    def delete(self, stub: ChaincodeStubAPI, key: str) -> None:
        stub.del_state(key)

    @transaction
    def inc(self, stub: ChaincodeStubAPI, key: str, delta: str = "1") -> str:
        try:
            current = int(stub.get_state(key) or b"0")
            step = int(delta)
        except ValueError as exc:
            raise ContractError(f"inc: not an integer: {exc}") from None
        value = str(current + step)
        stub.put_state(key, value.encode())
        return value

    @transaction("range")
    def range_(
        self, stub: ChaincodeStubAPI, start: str, end: str, page_size: str = "", bookmark: str = ""
    ) -> dict[str, Any]:
        if page_size:
            try:
                size = int(page_size)
            except ValueError:
                raise ContractError(f"range: page_size must be an integer, got {page_size!r}") from None
            if size < 1:
                raise ContractError("range: page_size must be >= 1")
            items, next_bookmark = stub.get_state_by_range_with_pagination(start, end, size, bookmark)
            return {
                "items": [{"key": kv.key, "value": _text(kv.value)} for kv in items],
                "bookmark": next_bookmark,
            }
        return {
            "items": [{"key": kv.key, "value": _text(kv.value)} for kv in stub.get_state_by_range(start, end)]
        }

    @transaction
    def history(self, stub: ChaincodeStubAPI, key: str) -> list[dict[str, Any]]:
        return [
            {"tx_id": m.tx_id, "value": _text(m.value), "timestamp": m.timestamp_s, "is_delete": m.is_delete}
            for m in stub.get_history_for_key(key)
        ]

    @transaction
    def whoami(self, stub: ChaincodeStubAPI) -> dict[str, Any]:
        client = stub.get_client_identity()
        return {
            "msp_id": client.msp_id,
            "role": client.role,
            "id": client.id,
            "common_name": client.common_name,
            "tx_id": stub.get_tx_id(),
            "channel_id": stub.get_channel_id(),
            "timestamp": stub.get_tx_timestamp_s(),
        }

    @transaction
    def event(self, stub: ChaincodeStubAPI, name: str, payload: str = "") -> None:
        stub.set_event(name, payload.encode("utf-8"))

    @transaction
    def transient(self, stub: ChaincodeStubAPI, key: str) -> bytes:
        value = stub.get_transient().get(key)
        if value is None:
            raise ContractError(f"no transient field {key!r}", 404)
        return value

    @transaction
    def fail(self, stub: ChaincodeStubAPI, msg: str) -> None:
        raise ContractError(msg, 400)

    @transaction
    def boom(self, stub: ChaincodeStubAPI) -> None:
        raise RuntimeError("boom requested")
