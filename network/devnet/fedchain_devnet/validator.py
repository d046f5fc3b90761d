"""Block validation with Fabric's TxValidationCode, in block order.

Per transaction, in Fabric's order: envelope and headers decode (BAD_PAYLOAD, ...), channel
(TARGET_CHAIN_NOT_FOUND), creator certificate and signature (BAD_CREATOR_SIGNATURE), tx id
= sha256(nonce+creator) (BAD_PROPOSAL_TXID), duplicate tx id on the ledger or earlier in the
block (DUPLICATE_TXID), endorsements: valid peer signatures of distinct orgs satisfying the
chaincode's policy (ENDORSEMENT_POLICY_FAILURE), writes only to the chaincode's namespace
(ILLEGAL_WRITESET), then MVCC: every read version equals the committed version and no
earlier valid transaction in the block wrote the key (MVCC_READ_CONFLICT); range queries
see the same keys and versions (PHANTOM_READ_CONFLICT).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import chaincode_event_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from fedchain.identity import IdentityError, MSPManager
from google.protobuf.message import DecodeError

from fedchain_devnet import policy as policies
from fedchain_devnet.statedb import StateDB, Write

C = transaction_pb2.TxValidationCode
VALID = C.Value("VALID")
ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
# Codes given after the signature and duplicate checks: such a transaction's id is taken on the ledger.
INDEXED_CODES = frozenset(C.Value(n) for n in (
    "VALID", "INVALID_ENDORSER_TRANSACTION", "NIL_TXACTION", "BAD_RESPONSE_PAYLOAD", "INVALID_CHAINCODE",
    "ENDORSEMENT_POLICY_FAILURE", "BAD_RWSET", "ILLEGAL_WRITESET", "MVCC_READ_CONFLICT", "PHANTOM_READ_CONFLICT"))


class Invalid(Exception):
    def __init__(self, code_name: str) -> None:
        super().__init__(code_name)
        self.code = C.Value(code_name)


@dataclass
class BlockResult:
    flags: list[int] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    txids: list[tuple[str, int, int]] = field(default_factory=list)
    events: list[tuple[int, chaincode_event_pb2.ChaincodeEvent]] = field(default_factory=list)


@dataclass
class _Tx:
    tx_id: str
    ts: tuple[int, int]
    chaincode: str
    rwsets: list[tuple[str, kv_rwset_pb2.KVRWSet]]
    event: bytes


def _dec(cls, data: bytes, code: str):
    try:
        return cls.FromString(data)
    except DecodeError:
        raise Invalid(code) from None


class Validator:
    def __init__(self, channel: str, msps: MSPManager, orgs: list[str], chaincode_policies: dict[str, policies.Policy],
                 state: StateDB) -> None:
        self.channel = channel
        self.msps = msps
        self.orgs = orgs
        self.policies = chaincode_policies
        self.state = state

    def validate_block(self, block_num: int, envelopes: list[bytes]) -> BlockResult:
        out = BlockResult()
        seen: set[str] = set()
        updated: dict[tuple[str, str], Write] = {}
        for txnum, raw in enumerate(envelopes):
            indexed: list[str] = []
            try:
                tx = self._check_tx(raw, seen, indexed)
                self._check_mvcc(tx, updated)
                code = VALID
            except Invalid as exc:
                code = exc.code
                tx = None
            out.flags.append(code)
            if indexed:  # passed the signature and duplicate checks: the id is now taken
                seen.add(indexed[0])
                out.txids.append((indexed[0], txnum, code))
            if code != VALID or tx is None:
                continue
            for ns, kv in tx.rwsets:
                for w in kv.writes:
                    write = Write(ns, w.key, None if w.is_delete else bytes(w.value), txnum, tx.tx_id, tx.ts)
                    updated[(ns, w.key)] = write
                    out.writes.append(write)
            if tx.event:
                out.events.append((txnum, chaincode_event_pb2.ChaincodeEvent.FromString(tx.event)))
        return out

    # --- structure, signatures, policy ---------------------------------------------------
    def _check_tx(self, raw: bytes, seen: set[str], indexed: list[str]) -> _Tx:
        if not raw:
            raise Invalid("NIL_ENVELOPE")
        env = _dec(common_pb2.Envelope, raw, "BAD_PAYLOAD")
        payload = _dec(common_pb2.Payload, env.payload, "BAD_PAYLOAD")
        if not payload.HasField("header"):
            raise Invalid("BAD_COMMON_HEADER")
        chdr = _dec(common_pb2.ChannelHeader, payload.header.channel_header, "BAD_CHANNEL_HEADER")
        shdr = _dec(common_pb2.SignatureHeader, payload.header.signature_header, "BAD_COMMON_HEADER")
        if chdr.type != ENDORSER_TRANSACTION:
            raise Invalid("UNKNOWN_TX_TYPE")
        if chdr.channel_id != self.channel:
            raise Invalid("TARGET_CHAIN_NOT_FOUND")
        try:
            self.msps.verify(bytes(shdr.creator), bytes(env.signature), bytes(env.payload))
        except IdentityError:
            raise Invalid("BAD_CREATOR_SIGNATURE") from None
        if chdr.tx_id != hashlib.sha256(bytes(shdr.nonce) + bytes(shdr.creator)).hexdigest():
            raise Invalid("BAD_PROPOSAL_TXID")
        if chdr.tx_id in seen or self.state.tx_status(chdr.tx_id) is not None:
            raise Invalid("DUPLICATE_TXID")
        indexed.append(chdr.tx_id)
        return self._check_endorsed(chdr, payload)

    def _check_endorsed(self, chdr: common_pb2.ChannelHeader, payload: common_pb2.Payload) -> _Tx:
        tx = _dec(transaction_pb2.Transaction, payload.data, "INVALID_ENDORSER_TRANSACTION")
        if len(tx.actions) != 1:
            raise Invalid("NIL_TXACTION" if not tx.actions else "INVALID_ENDORSER_TRANSACTION")
        cap = _dec(transaction_pb2.ChaincodeActionPayload, tx.actions[0].payload, "INVALID_ENDORSER_TRANSACTION")
        prp_bytes = bytes(cap.action.proposal_response_payload)
        prp = _dec(proposal_response_pb2.ProposalResponsePayload, prp_bytes, "BAD_RESPONSE_PAYLOAD")
        action = _dec(proposal_pb2.ChaincodeAction, prp.extension, "BAD_RESPONSE_PAYLOAD")
        chaincode = action.chaincode_id.name
        if chaincode not in self.policies:
            raise Invalid("INVALID_CHAINCODE")
        endorsing: set[str] = set()
        for e in cap.action.endorsements:
            try:
                ident = self.msps.verify(bytes(e.endorser), bytes(e.signature), prp_bytes + bytes(e.endorser))
            except IdentityError:
                continue
            if ident.msp_id in self.orgs and self.msps.node_ou(ident) == "peer":
                endorsing.add(ident.msp_id)
        if not policies.satisfied(self.policies[chaincode], endorsing, self.orgs):
            raise Invalid("ENDORSEMENT_POLICY_FAILURE")
        rwsets = []
        if action.results:
            txrw = _dec(rwset_pb2.TxReadWriteSet, action.results, "BAD_RWSET")
            for ns in txrw.ns_rwset:
                kv = _dec(kv_rwset_pb2.KVRWSet, ns.rwset, "BAD_RWSET")
                if kv.writes and ns.namespace != chaincode:
                    raise Invalid("ILLEGAL_WRITESET")
                rwsets.append((ns.namespace, kv))
        ts = (chdr.timestamp.seconds, chdr.timestamp.nanos)
        return _Tx(chdr.tx_id, ts, chaincode, rwsets, bytes(action.events))

    # --- MVCC --------------------------------------------------------------------------
    def _check_mvcc(self, tx: _Tx, updated: dict[tuple[str, str], Write]) -> None:
        for ns, kv in tx.rwsets:
            for r in kv.reads:
                if (ns, r.key) in updated:
                    raise Invalid("MVCC_READ_CONFLICT")
                committed = self.state.version(ns, r.key)
                expected = (r.version.block_num, r.version.tx_num) if r.HasField("version") else None
                if committed != expected:
                    raise Invalid("MVCC_READ_CONFLICT")
            for rq in kv.range_queries_info:
                if any(k_ns == ns and rq.start_key <= k < (rq.end_key or "\U0010ffff\U0010ffff") for k_ns, k in updated):
                    raise Invalid("PHANTOM_READ_CONFLICT")
                now = [(k, v) for k, _, v in self.state.range(ns, rq.start_key, rq.end_key, len(rq.raw_reads.kv_reads) + 1)]
                then = [(r.key, (r.version.block_num, r.version.tx_num)) for r in rq.raw_reads.kv_reads]
                if now != then:
                    raise Invalid("PHANTOM_READ_CONFLICT")
