"""In-memory ledger and stub for unit tests of contracts (never used by a deployed chaincode).

`MockStub` implements `ChaincodeStubAPI` with Fabric's semantics where contracts can observe
them: reads see committed state only (not the transaction's own writes), ranges are lexical
and half-open, history is newest first (Fabric 2.x). `MockLedger` adds what makes key-design
bugs visible in unit tests: transactions are simulated against a snapshot, then committed in
blocks with MVCC validation (read versions, phantom reads in range queries, duplicate tx ids),
reporting Fabric's validation code names. Several simulations against the same snapshot
before one commit model concurrent clients.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID, ObjectIdentifier

from fedchain_cc.shim.interface import (
    ATTRIBUTE_EXTENSION_OID,
    KV,
    Chaincode,
    ChaincodeStubAPI,
    ClientIdentity,
    KeyModification,
    Response,
)

Version = tuple[int, int]  # (block number, tx number): what Fabric's MVCC compares


def client_identity_from_pem(msp_id: str, cert_pem: bytes) -> ClientIdentity:
    """The ClientIdentity a shim derives from a creator certificate (subject/issuer in RFC 4514)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    attrs: dict[str, str] = {}
    try:
        ext = cert.extensions.get_extension_for_oid(ObjectIdentifier(ATTRIBUTE_EXTENSION_OID))
        raw = json.loads(ext.value.value)  # UnrecognizedExtension: raw JSON bytes
        attrs = {str(k): str(v) for k, v in raw.get("attrs", {}).items()}
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return ClientIdentity(
        msp_id=msp_id, cert_pem=cert_pem, subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(), common_name=str(cns[0].value) if cns else "", attributes=attrs,
    )


@dataclass
class Simulation:
    """The outcome of endorsing one proposal: response plus read/write set and event."""

    tx_id: str
    timestamp: float
    response: Response
    reads: dict[str, Version | None] = field(default_factory=dict)
    range_reads: list[tuple[str, str, list[tuple[str, Version]]]] = field(default_factory=list)
    writes: dict[str, bytes | None] = field(default_factory=dict)
    event: tuple[str, bytes] | None = None

    @property
    def ok(self) -> bool:
        return self.response.status < 400


class MockLedger:
    """World state + history + MVCC commit; one channel, one chaincode."""

    def __init__(self, chaincode: Chaincode, channel: str = "fedchain", start_time: float = 1_700_000_000.0):
        self.chaincode = chaincode
        self.channel = channel
        self.now = start_time  # the next transaction's timestamp; tests move it explicitly
        self.state: dict[str, tuple[bytes, Version]] = {}
        self.history: dict[str, list[KeyModification]] = {}
        self.block_number = 0
        self.tx_ids: set[str] = set()
        self.events: list[tuple[str, str, bytes]] = []  # (tx_id, name, payload) of VALID transactions
        self._counter = itertools.count()

    def snapshot(self) -> dict[str, bytes]:
        """Plain copy of the world state, to assert that a refused call changed nothing."""
        return {k: v for k, (v, _) in self.state.items()}

    def simulate(self, creator: ClientIdentity, fn: str, *args: str | bytes, timestamp: float | None = None,
                 tx_id: str | None = None, transient: dict[str, bytes] | None = None) -> Simulation:
        ts = self.now if timestamp is None else timestamp
        tx_id = tx_id or hashlib.sha256(f"tx{next(self._counter)}".encode()).hexdigest()
        raw_args = [fn.encode()] + [a if isinstance(a, bytes) else a.encode("utf-8", "surrogatepass") for a in args]
        stub = MockStub(self, raw_args, creator, tx_id, ts, transient or {})
        response = self.chaincode.invoke(stub)
        sim = stub.simulation
        sim.response = response
        return sim

    def commit(self, sims: list[Simulation]) -> list[str]:
        """Validate and commit one block in order; returns each transaction's validation code."""
        self.block_number += 1
        codes = []
        for tx_num, sim in enumerate(sims):
            code = self._validate(sim)
            codes.append(code)
            if code != "VALID":
                continue
            self.tx_ids.add(sim.tx_id)
            version = (self.block_number, tx_num)
            for key, value in sorted(sim.writes.items()):
                if value is None:
                    self.state.pop(key, None)
                else:
                    self.state[key] = (value, version)
                self.history.setdefault(key, []).append(
                    KeyModification(tx_id=sim.tx_id, value=value or b"", timestamp_s=sim.timestamp,
                                    is_delete=value is None)
                )
            if sim.event:
                self.events.append((sim.tx_id, *sim.event))
        return codes

    def _validate(self, sim: Simulation) -> str:
        if not sim.ok:
            return "ENDORSEMENT_POLICY_FAILURE"
        if sim.tx_id in self.tx_ids:
            return "DUPLICATE_TXID"
        for key, version in sim.reads.items():
            current = self.state.get(key)
            if (current[1] if current else None) != version:
                return "MVCC_READ_CONFLICT"
        for start, end, seen in sim.range_reads:
            if self._range(start, end) != seen:
                return "PHANTOM_READ_CONFLICT"
        return "VALID"

    def _range(self, start: str, end: str) -> list[tuple[str, Version]]:
        return [(k, self.state[k][1]) for k in sorted(self.state) if k >= start and (not end or k < end)]

    def invoke(self, creator: ClientIdentity, fn: str, *args: str | bytes, timestamp: float | None = None
               ) -> tuple[Response, str | None]:
        """Simulate and, if the chaincode succeeded, commit alone in a block (the common case)."""
        sim = self.simulate(creator, fn, *args, timestamp=timestamp)
        if not sim.ok:
            return sim.response, None
        return sim.response, self.commit([sim])[0]


class MockStub(ChaincodeStubAPI):
    def __init__(self, ledger: MockLedger, args: list[bytes], creator: ClientIdentity, tx_id: str,
                 timestamp: float, transient: dict[str, bytes]) -> None:
        self.ledger = ledger
        self._args = args
        self._creator = creator
        self.simulation = Simulation(tx_id=tx_id, timestamp=timestamp, response=Response(status=0))
        self._transient = transient

    # --- transaction context ---------------------------------------------------
    def get_args(self) -> list[bytes]:
        return list(self._args)

    def get_tx_id(self) -> str:
        return self.simulation.tx_id

    def get_channel_id(self) -> str:
        return self.ledger.channel

    def get_tx_timestamp_s(self) -> float:
        return self.simulation.timestamp

    def get_creator(self) -> bytes:
        from fabric_protos.msp import identities_pb2

        return identities_pb2.SerializedIdentity(
            mspid=self._creator.msp_id, id_bytes=self._creator.cert_pem
        ).SerializeToString()

    def get_client_identity(self) -> ClientIdentity:
        return self._creator

    def get_transient(self) -> dict[str, bytes]:
        return dict(self._transient)

    # --- world state -------------------------------------------------------------
    @staticmethod
    def _check_key(key: str) -> None:
        if not isinstance(key, str) or not key:
            raise ValueError("key must be a non-empty string")

    def get_state(self, key: str) -> bytes:
        self._check_key(key)
        current = self.ledger.state.get(key)
        self.simulation.reads.setdefault(key, current[1] if current else None)
        return current[0] if current else b""

    def put_state(self, key: str, value: bytes) -> None:
        self._check_key(key)
        if not isinstance(value, bytes | bytearray):
            raise TypeError("value must be bytes")
        self.simulation.writes[key] = bytes(value)

    def del_state(self, key: str) -> None:
        self._check_key(key)
        self.simulation.writes[key] = None

    def _range(self, start_key: str, end_key: str) -> Iterator[KV]:
        seen = self.ledger._range(start_key, end_key)
        self.simulation.range_reads.append((start_key, end_key, seen))
        return iter([KV(k, self.ledger.state[k][0]) for k, _ in seen])

    def _paged(self, start_key: str, end_key: str, page_size: int, bookmark: str) -> tuple[list[KV], str]:
        items = list(self._range(bookmark or start_key, end_key))
        page, rest = items[:page_size], items[page_size:]
        return page, (rest[0].key if rest else "")

    def get_history_for_key(self, key: str) -> Iterator[KeyModification]:
        return iter(list(reversed(self.ledger.history.get(key, []))))

    # --- events --------------------------------------------------------------------
    def set_event(self, name: str, payload: bytes) -> None:
        if not name:
            raise ValueError("event name must not be empty")
        self.simulation.event = (name, bytes(payload))
