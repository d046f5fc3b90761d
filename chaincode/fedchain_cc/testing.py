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

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from fabric_protos.msp import identities_pb2

from fedchain_cc.canonical import sha256_hex
from fedchain_cc.shim.identity import identity_from_pem
from fedchain_cc.shim.interface import (
    KV,
    Chaincode,
    ClientIdentity,
    KeyModification,
    Response,
    check_key,
)
from fedchain_cc.shim.proposal import TxContext
from fedchain_cc.shim.stub import ContextStub

Version = tuple[int, int]  # (block number, tx number): what Fabric's MVCC compares


def client_identity_from_pem(msp_id: str, cert_pem: bytes) -> ClientIdentity:
    """The ClientIdentity a shim derives from a creator certificate (the shim's own parse)."""
    return identity_from_pem(msp_id, cert_pem)


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
        tx_id = tx_id or sha256_hex(f"tx{next(self._counter)}".encode())
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


class MockStub(ContextStub):
    """The in-memory stub: the shim's transaction context, with reads/writes recorded for MVCC."""

    def __init__(self, ledger: MockLedger, args: list[bytes], creator: ClientIdentity, tx_id: str,
                 timestamp: float, transient: dict[str, bytes]) -> None:
        serialized = identities_pb2.SerializedIdentity(mspid=creator.msp_id, id_bytes=creator.cert_pem)
        super().__init__(TxContext(channel_id=ledger.channel, tx_id=tx_id, args=list(args), is_init=False,
                                   creator=serialized.SerializeToString(), timestamp_s=timestamp,
                                   transient=dict(transient)))
        self.ledger = ledger
        self._creator = creator
        self.simulation = Simulation(tx_id=tx_id, timestamp=timestamp, response=Response(status=0))

    def get_client_identity(self) -> ClientIdentity:
        return self._creator

    # --- world state -------------------------------------------------------------
    def get_state(self, key: str) -> bytes:
        check_key(key)
        current = self.ledger.state.get(key)
        self.simulation.reads.setdefault(key, current[1] if current else None)
        return current[0] if current else b""

    def put_state(self, key: str, value: bytes) -> None:
        check_key(key)
        if not isinstance(value, bytes | bytearray):
            raise TypeError("value must be bytes")
        self.simulation.writes[key] = bytes(value)

    def del_state(self, key: str) -> None:
        check_key(key)
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
