"""The real stub: a contract's ledger calls turned into chaincode-protocol requests to the peer.

Semantics follow Fabric's Go shim (shim/stub.go) so a contract behaves the same here and on a
real peer: plain range queries substitute "\\x01" for an empty start key and refuse composite
keys (keys starting with "\\x00"); partial-composite-key queries go straight to the peer;
history and range results arrive in batches (QUERY_STATE_NEXT) and an abandoned iterator is
closed with QUERY_STATE_CLOSE. Every ERROR reply raises `PeerError` (never returned as data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.peer import chaincode_event_pb2, chaincode_shim_pb2, proposal_pb2
from google.protobuf.message import DecodeError

from fedchain_cc.shim.errors import ShimError
from fedchain_cc.shim.identity import client_identity
from fedchain_cc.shim.interface import (
    KV,
    ChaincodeStubAPI,
    ClientIdentity,
    KeyModification,
    check_key,
)
from fedchain_cc.shim.proposal import TxContext

Msg = chaincode_shim_pb2.ChaincodeMessage
MAX_PAGE_SIZE = 2**31 - 1  # QueryMetadata.pageSize is int32


class Requester(Protocol):
    """Sends one request for this transaction and returns the RESPONSE payload (raises on ERROR)."""

    def __call__(self, msg_type: int, payload: bytes) -> bytes: ...


def _query_response(data: bytes) -> chaincode_shim_pb2.QueryResponse:
    try:
        return chaincode_shim_pb2.QueryResponse.FromString(data)
    except DecodeError as exc:
        raise ShimError(f"peer sent a malformed QueryResponse: {exc}") from None


def _decode_kv(data: bytes) -> KV:
    kv = kv_query_result_pb2.KV.FromString(data)
    return KV(key=kv.key, value=kv.value)


def _decode_modification(data: bytes) -> KeyModification:
    km = kv_query_result_pb2.KeyModification.FromString(data)
    return KeyModification(
        tx_id=km.tx_id,
        value=km.value,
        timestamp_s=km.timestamp.seconds + km.timestamp.nanos / 1e9,
        is_delete=km.is_delete,
    )


class QueryIterator(Iterator[Any]):
    """Results of a range/history query, fetched from the peer batch by batch.

    `close()` (or leaving a `with` block, or exhausting it) releases the peer-side iterator;
    Fabric also drops every iterator when the transaction ends.
    """

    def __init__(
        self, request: Requester, first: chaincode_shim_pb2.QueryResponse, decode: Callable[[bytes], Any]
    ) -> None:
        self._request = request
        self._decode = decode
        self._id = first.id
        self._has_more = first.has_more
        self._batch = list(first.results)
        self._pos = 0
        self.last_response = first

    def __iter__(self) -> QueryIterator:
        return self

    def __next__(self) -> Any:
        while self._pos >= len(self._batch):
            if not self._has_more:
                raise StopIteration
            resp = _query_response(
                self._request(
                    Msg.QUERY_STATE_NEXT, chaincode_shim_pb2.QueryStateNext(id=self._id).SerializeToString()
                )
            )
            self.last_response = resp
            self._has_more = resp.has_more
            self._batch = list(resp.results)
            self._pos = 0
        item = self._batch[self._pos]
        self._pos += 1
        try:
            return self._decode(item.resultBytes)
        except DecodeError as exc:
            raise ShimError(f"peer sent a malformed query result: {exc}") from None

    def close(self) -> None:
        if self._has_more:
            self._has_more = False
            self._batch, self._pos = [], 0
            self._request(
                Msg.QUERY_STATE_CLOSE, chaincode_shim_pb2.QueryStateClose(id=self._id).SerializeToString()
            )

    def __enter__(self) -> QueryIterator:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            self.close()
        except ShimError:
            if exc_type is None:  # never hide the exception that is already leaving the block
                raise


class ContextStub(ChaincodeStubAPI):
    """The transaction-context half of a stub, read from a `TxContext`: shared by the real stub and the
    in-memory test stub (fedchain_cc.testing), so both answer these calls the same way."""

    def __init__(self, ctx: TxContext) -> None:
        self._ctx = ctx

    def get_args(self) -> list[bytes]:
        return list(self._ctx.args)

    def get_tx_id(self) -> str:
        return self._ctx.tx_id

    def get_channel_id(self) -> str:
        return self._ctx.channel_id

    def get_tx_timestamp_s(self) -> float:
        return self._ctx.timestamp_s

    def get_creator(self) -> bytes:
        return self._ctx.creator

    def get_transient(self) -> dict[str, bytes]:
        return dict(self._ctx.transient)


class ChaincodeStub(ContextStub):
    """One transaction's view of the ledger; not shared between transactions or threads."""

    def __init__(self, ctx: TxContext, request: Requester, write_batch_size: int | None = None) -> None:
        """write_batch_size: when the peer supports WRITE_BATCH_STATE (it says so in REGISTERED), writes
        are buffered and sent at the end in batches of this many records (0 = one batch); None = send
        each PUT_STATE/DEL_STATE at once."""
        super().__init__(ctx)
        self._request = request
        self._identity: ClientIdentity | None = None
        self.event: chaincode_event_pb2.ChaincodeEvent | None = None
        self._batch_size = write_batch_size
        self._writes: dict[str, chaincode_shim_pb2.WriteRecord] = {}

    # --- transaction context -------------------------------------------------
    def get_client_identity(self) -> ClientIdentity:
        if self._identity is None:
            self._identity = client_identity(self._ctx.creator)
        return self._identity

    def get_signed_proposal(self) -> proposal_pb2.SignedProposal | None:
        return self._ctx.signed_proposal

    def is_init(self) -> bool:
        return self._ctx.is_init

    # --- world state ---------------------------------------------------------
    def get_state(self, key: str) -> bytes:
        check_key(key)
        return self._request(Msg.GET_STATE, chaincode_shim_pb2.GetState(key=key).SerializeToString())

    def put_state(self, key: str, value: bytes) -> None:
        check_key(key)
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"value must be bytes, got {type(value).__name__}")
        if self._batch_size is not None:
            self._writes.pop(key, None)  # re-insert: the batch keeps the order of the last write per key
            self._writes[key] = chaincode_shim_pb2.WriteRecord(
                key=key, value=bytes(value), type=chaincode_shim_pb2.WriteRecord.PUT_STATE
            )
            return
        self._request(
            Msg.PUT_STATE, chaincode_shim_pb2.PutState(key=key, value=bytes(value)).SerializeToString()
        )

    def del_state(self, key: str) -> None:
        check_key(key)
        if self._batch_size is not None:
            self._writes.pop(key, None)
            self._writes[key] = chaincode_shim_pb2.WriteRecord(
                key=key, type=chaincode_shim_pb2.WriteRecord.DEL_STATE
            )
            return
        self._request(Msg.DEL_STATE, chaincode_shim_pb2.DelState(key=key).SerializeToString())

    def flush_writes(self) -> None:
        """Send buffered writes (WRITE_BATCH_STATE); the shim calls this after a successful invoke."""
        records = list(self._writes.values())
        self._writes.clear()
        size = self._batch_size or len(records) or 1
        for i in range(0, len(records), size):
            batch = chaincode_shim_pb2.WriteBatchState(rec=records[i : i + size])
            self._request(Msg.WRITE_BATCH_STATE, batch.SerializeToString())

    def _range(self, start_key: str, end_key: str, metadata: bytes = b"") -> QueryIterator:
        req = chaincode_shim_pb2.GetStateByRange(startKey=start_key, endKey=end_key, metadata=metadata)
        first = _query_response(self._request(Msg.GET_STATE_BY_RANGE, req.SerializeToString()))
        return QueryIterator(self._request, first, _decode_kv)

    def _paged(self, start_key: str, end_key: str, page_size: int, bookmark: str) -> tuple[list[KV], str]:
        if not isinstance(page_size, int) or not 0 < page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be an integer in 1..{MAX_PAGE_SIZE}, got {page_size!r}")
        meta = chaincode_shim_pb2.QueryMetadata(pageSize=page_size, bookmark=bookmark).SerializeToString()
        it = self._range(start_key, end_key, meta)
        items = list(it)
        resp_meta = chaincode_shim_pb2.QueryResponseMetadata()
        try:  # Fabric attaches the metadata to the last batch of a paginated query
            resp_meta.ParseFromString(it.last_response.metadata)
        except DecodeError as exc:
            raise ShimError(f"peer sent malformed query metadata: {exc}") from None
        return items, resp_meta.bookmark

    def get_history_for_key(self, key: str) -> QueryIterator:
        check_key(key)
        first = _query_response(
            self._request(
                Msg.GET_HISTORY_FOR_KEY, chaincode_shim_pb2.GetHistoryForKey(key=key).SerializeToString()
            )
        )
        return QueryIterator(self._request, first, _decode_modification)

    # --- events --------------------------------------------------------------
    def set_event(self, name: str, payload: bytes) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("event name must be a non-empty string")
        self.event = chaincode_event_pb2.ChaincodeEvent(event_name=name, payload=bytes(payload))
