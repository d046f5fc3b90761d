"""A peer's transaction simulator: answers the chaincode's state requests, records the rwset.

Reads come from committed state (like Fabric, a transaction does not read its own writes);
the first read of a key records its committed version for MVCC validation, range queries
record what they saw for phantom-read validation.
"""

from __future__ import annotations

import logging

from fabric_protos.ledger.queryresult import kv_query_result_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import chaincode_shim_pb2
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from fedchain_devnet.statedb import StateDB, Version

log = logging.getLogger(__name__)
CM = chaincode_shim_pb2.ChaincodeMessage
PAGE_SIZE = 100
TOTAL_QUERY_LIMIT = 100_000
HISTORY_LIMIT = 100_000
MAX_ITERATORS = 64


class SimulationError(Exception):
    """The chaincode asked for something the devnet refuses; the text goes back to it as ERROR."""


def _check_key(key: str) -> None:
    if not key:
        raise SimulationError("key must not be an empty string")


class TxSimulator:
    def __init__(self, state: StateDB, namespace: str, tx_id: str) -> None:
        self.state = state
        self.ns = namespace
        self.tx_id = tx_id
        self.reads: dict[str, Version | None] = {}
        self.writes: dict[str, bytes | None] = {}
        self.range_infos: list[kv_rwset_pb2.RangeQueryInfo] = []
        self._iterators: dict[str, tuple[list[bytes], int]] = {}
        self._next_iter = 0
        self.paginated = False  # Fabric allows paginated queries only in read-only (evaluated) transactions

    # --- dispatch -------------------------------------------------------------------
    def handle(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> chaincode_shim_pb2.ChaincodeMessage:
        """The peer's answer (RESPONSE or ERROR) to one chaincode request."""
        try:
            payload = self._dispatch(msg)
            return CM(type=CM.RESPONSE, payload=payload, txid=msg.txid, channel_id=msg.channel_id)
        except (SimulationError, DecodeError, UnicodeDecodeError) as exc:
            return CM(type=CM.ERROR, payload=str(exc).encode(), txid=msg.txid, channel_id=msg.channel_id)
        except Exception as exc:  # noqa: BLE001 - e.g. a state database error: fail this transaction, not the peer
            log.exception("simulation of %s failed", msg.txid)
            return CM(type=CM.ERROR, payload=f"peer internal error: {type(exc).__name__}".encode(), txid=msg.txid,
                      channel_id=msg.channel_id)

    def _dispatch(self, msg: chaincode_shim_pb2.ChaincodeMessage) -> bytes:
        t = msg.type
        if t == CM.GET_STATE:
            req = chaincode_shim_pb2.GetState.FromString(msg.payload)
            self._no_private(req.collection)
            return self.get_state(req.key)
        if t == CM.PUT_STATE:
            req = chaincode_shim_pb2.PutState.FromString(msg.payload)
            self._no_private(req.collection)
            self.put_state(req.key, bytes(req.value))
            return b""
        if t == CM.DEL_STATE:
            req = chaincode_shim_pb2.DelState.FromString(msg.payload)
            self._no_private(req.collection)
            self.put_state(req.key, b"")
            return b""
        if t == CM.GET_STATE_BY_RANGE:
            req = chaincode_shim_pb2.GetStateByRange.FromString(msg.payload)
            self._no_private(req.collection)
            if req.metadata:
                meta = chaincode_shim_pb2.QueryMetadata.FromString(req.metadata)
                return self.paged_range_query(req.startKey, req.endKey, meta.pageSize, meta.bookmark)
            return self.range_query(req.startKey, req.endKey)
        if t == CM.QUERY_STATE_NEXT:
            return self.next_page(chaincode_shim_pb2.QueryStateNext.FromString(msg.payload).id)
        if t == CM.QUERY_STATE_CLOSE:
            qid = chaincode_shim_pb2.QueryStateClose.FromString(msg.payload).id
            self._iterators.pop(qid, None)
            return chaincode_shim_pb2.QueryResponse(has_more=False, id=qid).SerializeToString()
        if t == CM.GET_HISTORY_FOR_KEY:
            return self.history(chaincode_shim_pb2.GetHistoryForKey.FromString(msg.payload).key)
        if t == CM.GET_STATE_METADATA:
            return chaincode_shim_pb2.StateMetadataResult().SerializeToString()
        if t == CM.GET_QUERY_RESULT:
            raise SimulationError("rich (CouchDB) queries are not supported: the devnet's state database is key-value")
        if t in (CM.GET_PRIVATE_DATA_HASH, CM.PURGE_PRIVATE_DATA):
            raise SimulationError("private data collections are not supported by the devnet")
        if t == CM.INVOKE_CHAINCODE:
            raise SimulationError("chaincode-to-chaincode invocation is not supported by the devnet")
        raise SimulationError(f"unsupported chaincode request {CM.Type.Name(t) if t in CM.Type.values() else t}")

    @staticmethod
    def _no_private(collection: str) -> None:
        if collection:
            raise SimulationError(f"private data collection {collection!r} is not supported by the devnet")

    # --- operations --------------------------------------------------------------------
    def get_state(self, key: str) -> bytes:
        _check_key(key)
        found = self.state.get(self.ns, key)
        if key not in self.reads:
            self.reads[key] = None if found is None else found[1]
        return b"" if found is None else found[0]

    def put_state(self, key: str, value: bytes) -> None:
        _check_key(key)
        self.writes[key] = value or None  # Fabric: an empty value is a delete

    def range_query(self, start: str, end: str) -> bytes:
        if len(self._iterators) >= MAX_ITERATORS:
            raise SimulationError(f"more than {MAX_ITERATORS} open iterators")
        rows = self.state.range(self.ns, start, end, TOTAL_QUERY_LIMIT + 1)
        if len(rows) > TOTAL_QUERY_LIMIT:
            raise SimulationError(f"range query [{start!r}, {end!r}) exceeds the limit of {TOTAL_QUERY_LIMIT} results")
        self.range_infos.append(kv_rwset_pb2.RangeQueryInfo(
            start_key=start, end_key=end, itr_exhausted=True,
            raw_reads=kv_rwset_pb2.QueryReads(kv_reads=[
                kv_rwset_pb2.KVRead(key=k, version=kv_rwset_pb2.Version(block_num=v[0], tx_num=v[1]))
                for k, _, v in rows]),
        ))
        items = [kv_query_result_pb2.KV(namespace=self.ns, key=k, value=val).SerializeToString() for k, val, _ in rows]
        qid = f"q{self._next_iter}"
        self._next_iter += 1
        self._iterators[qid] = (items, 0)
        return self.next_page(qid)

    def paged_range_query(self, start: str, end: str, page_size: int, bookmark: str) -> bytes:
        """One page of a range; the bookmark is the next key to fetch. Read-only transactions only."""
        if page_size <= 0:
            raise SimulationError("page size must be positive")
        if bookmark and (bookmark < start or (end and bookmark >= end)):
            raise SimulationError(f"bookmark {bookmark!r} is outside the range [{start!r}, {end!r})")
        self.paginated = True
        rows = self.state.range(self.ns, bookmark or start, end, min(page_size, TOTAL_QUERY_LIMIT) + 1)
        next_bookmark = rows[page_size][0] if len(rows) > page_size else ""
        rows = rows[:page_size]
        meta = chaincode_shim_pb2.QueryResponseMetadata(fetched_records_count=len(rows), bookmark=next_bookmark)
        return chaincode_shim_pb2.QueryResponse(
            results=[chaincode_shim_pb2.QueryResultBytes(resultBytes=kv_query_result_pb2.KV(
                namespace=self.ns, key=k, value=v).SerializeToString()) for k, v, _ in rows],
            has_more=False, id=f"q{self._next_iter}", metadata=meta.SerializeToString(),
        ).SerializeToString()

    def history(self, key: str) -> bytes:
        _check_key(key)
        items = []
        for tx_id, value, is_delete, seconds, nanos in self.state.history(self.ns, key, HISTORY_LIMIT):
            items.append(kv_query_result_pb2.KeyModification(
                tx_id=tx_id, value=value, is_delete=is_delete, timestamp=Timestamp(seconds=seconds, nanos=nanos),
            ).SerializeToString())
        qid = f"q{self._next_iter}"
        self._next_iter += 1
        self._iterators[qid] = (items, 0)
        return self.next_page(qid)

    def next_page(self, qid: str) -> bytes:
        if qid not in self._iterators:
            raise SimulationError(f"query iterator {qid!r} does not exist or is closed")
        items, pos = self._iterators[qid]
        page = items[pos:pos + PAGE_SIZE]
        pos += len(page)
        has_more = pos < len(items)
        if has_more:
            self._iterators[qid] = (items, pos)
        else:
            del self._iterators[qid]
        return chaincode_shim_pb2.QueryResponse(
            results=[chaincode_shim_pb2.QueryResultBytes(resultBytes=b) for b in page], has_more=has_more, id=qid,
        ).SerializeToString()

    # --- result -----------------------------------------------------------------------
    def rwset_bytes(self) -> bytes:
        """TxReadWriteSet with reads and writes sorted by key, as Fabric's rwset builder emits them."""
        if not self.reads and not self.writes and not self.range_infos:
            return rwset_pb2.TxReadWriteSet(data_model=rwset_pb2.TxReadWriteSet.KV).SerializeToString()
        kv = kv_rwset_pb2.KVRWSet(
            reads=[kv_rwset_pb2.KVRead(key=k, version=None if v is None else kv_rwset_pb2.Version(
                block_num=v[0], tx_num=v[1])) for k, v in sorted(self.reads.items())],
            range_queries_info=self.range_infos,
            writes=[kv_rwset_pb2.KVWrite(key=k, is_delete=v is None, value=v or b"")
                    for k, v in sorted(self.writes.items())],
        )
        return rwset_pb2.TxReadWriteSet(
            data_model=rwset_pb2.TxReadWriteSet.KV,
            ns_rwset=[rwset_pb2.NsReadWriteSet(namespace=self.ns, rwset=kv.SerializeToString())],
        ).SerializeToString()
