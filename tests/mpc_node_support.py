"""Shared fixtures for the MPC node tests: a consortium, an in-process fake ledger, intake servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fedchain.identity import Consortium, SigningIdentity, generate_consortium
from fedchain.mpc_client import NodeEndpoint
from fedchain.records import Consortium as ConsortiumRecord
from fedchain.records import Participant, Round, Update
from fedchain.sharing import FixedPoint, ShareHeader, encode, share_bytes, split
from fedchain_mpc.intake import IntakeSettings, ShareIntake, serve
from fedchain_mpc.ledger_adapter import LedgerError, LedgerEvent
from fedchain_mpc.store import ShareStore

ORG = "Org1MSP"
FAR_FUTURE = 4e9  # a deadline no test reaches (2096)


@dataclass
class FakeLedger:
    """The FL chaincode's observable behaviour, in memory (only what the node uses). It keeps the records as the
    chaincode stores them (JSON objects: tests edit them) and answers with the SDK's typed records, parsed as
    `fedchain.fl_client.FLClient` parses them."""

    consortium: dict[str, Any]
    participants: list[dict[str, Any]] = field(default_factory=list)
    rounds: dict[int, dict[str, Any]] = field(default_factory=dict)
    updates: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    attestations: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)
    models: dict[int, bytes] = field(default_factory=dict)
    references: dict[int, bytes] = field(default_factory=dict)
    validation_batches: dict[int, bytes] = field(default_factory=dict)
    event_log: list[LedgerEvent] = field(default_factory=list)
    down: bool = False
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _check(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise LedgerError(f"{what}: gateway unreachable")

    def get_consortium(self) -> ConsortiumRecord:
        self._check("GetConsortium")
        return ConsortiumRecord.from_json(self.consortium)

    def get_round(self, round_id: int, fresh: bool = False) -> Round | None:
        self._check("GetRound")
        rnd = self.rounds.get(round_id)
        return None if rnd is None else Round.from_json(rnd)

    def list_rounds(self) -> list[Round]:
        self._check("ListRounds")
        return [Round.from_json(self.rounds[k]) for k in sorted(self.rounds)]

    def participant_for(self, msp_id: str, fabric_id: str) -> Participant | None:
        self._check("ListParticipants")
        return next((Participant.from_json(p) for p in self.participants
                     if (p["msp_id"], p["identity"]) == (msp_id, fabric_id)), None)

    def get_updates(self, round_id: int) -> list[Update]:
        self._check("GetUpdates")
        return [Update.from_json(u) for u in self.updates.get(round_id, [])]

    def attest(self, attestation: dict[str, Any]) -> None:
        self._check("AttestResult")
        with self.lock:
            rid = attestation["round_id"]
            rnd = self.rounds[rid]
            node = attestation["node"]
            got = self.attestations.setdefault(rid, {})
            if node in got:
                raise LedgerError(f"MPC node {node} already attested round {rid}", already=True)
            got[node] = attestation
            claims = {(a["model_hash"], tuple(sorted(a["accepted"]))) for a in got.values()}
            if len(claims) > 1:
                rnd["state"] = "DISPUTED"
            elif len(got) >= self.consortium["quorum"] and rnd["state"] == "CLOSED":
                rnd["state"] = "FINALIZED"
                rnd["finalized"] = {"model_hash": attestation["model_hash"], "accepted": attestation["accepted"]}
                self._emit("RoundFinalized", {"round_id": rid, "model_hash": attestation["model_hash"]})

    def publish(self, round_id: int, model: bytes) -> bool:
        self._check("PublishModel")
        with self.lock:
            if round_id in self.models:
                return False
            self.models[round_id] = model
            return True

    def get_model(self, round_id: int) -> bytes:
        self._check("GetModel")
        return self.models[round_id]

    def get_reference(self, round_id: int) -> bytes:
        self._check("GetReference")
        if round_id not in self.references:
            raise LedgerError(f"no reference published for round {round_id}", not_found=True)
        return self.references[round_id]

    def get_validation_batch(self, round_id: int) -> bytes:
        self._check("GetValidationBatch")
        if round_id not in self.validation_batches:
            raise LedgerError(f"no validation batch published for round {round_id}", not_found=True)
        return self.validation_batches[round_id]

    def events(self, checkpoint: Any) -> Iterator[LedgerEvent]:
        yield from list(self.event_log)

    # ------------------------------------------------------------------ test helpers
    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        self.event_log.append(LedgerEvent(name, payload, len(self.event_log), f"tx{len(self.event_log)}"))

    def open_round(self, round_id: int, dim: int, policy: dict[str, Any] | None = None, base_round: int = 0) -> None:
        self.rounds[round_id] = {"round_id": round_id, "state": "OPEN", "model_spec": {"param_count": dim},
                                 "policy": policy or {}, "base_round_id": base_round, "hyperparameters": {},
                                 "base_model_hash": "0" * 64, "min_updates": 1, "deadline": FAR_FUTURE}

    def close_round(self, round_id: int) -> None:
        self.rounds[round_id]["state"] = "CLOSED"
        self._emit("RoundClosed", {"round_id": round_id})

    def commit_update(self, round_id: int, hospital: str, hashes: list[str], n_samples: int) -> None:
        self.updates.setdefault(round_id, []).append(
            {"round_id": round_id, "hospital": hospital, "msp_id": ORG, "share_hashes": hashes,
             "n_samples": n_samples, "dim": self.rounds[round_id]["model_spec"]["param_count"]})


@dataclass
class World:
    consortium: Consortium
    ledger: FakeLedger
    hospitals: dict[str, SigningIdentity]
    nodes: list[SigningIdentity]
    outsider: SigningIdentity


def make_world(root: Path, n_hospitals: int = 3, m: int = 3, t: int = 1) -> World:
    cons = generate_consortium(root / "crypto", ("Org1", "Org2"))
    hospitals = {f"hosp{i}": cons.enroll(ORG if i % 2 == 0 else "Org2MSP", f"hosp{i}", "hospital")
                 for i in range(n_hospitals)}
    nodes = [cons.enroll(ORG, f"mpc{j}", "mpc_node") for j in range(m)]
    outsider = cons.enroll(ORG, "stranger", "hospital")  # valid cert, never registered
    participants = [{"id": hid, "role": "hospital", "msp_id": s.msp_id, "identity": s.identity.fabric_id,
                     "sample_cap": 1000} for hid, s in hospitals.items()]
    participants += [{"id": f"mpc{j}", "role": "mpc_node", "msp_id": s.msp_id, "identity": s.identity.fabric_id,
                      "node_index": j} for j, s in enumerate(nodes)]
    consortium = {"name": "test", "mpc_nodes": [{"id": f"mpc{j}", "node_index": j, "msp_id": s.msp_id,
                                                 "identity": s.identity.fabric_id} for j, s in enumerate(nodes)],
                  "threshold": t, "quorum": 2, "max_model_bytes": 64 << 20}
    return World(cons, FakeLedger(consortium, participants), hospitals, nodes, outsider)


def make_shares(update: np.ndarray, round_id: int, hospital: str, t: int = 1, m: int = 3,
                seed: int | None = 0) -> list[bytes]:
    """A hospital's share files for `update` (share j for node j); seed None: the OS CSPRNG, as hospitals do."""
    fp = FixedPoint()
    update = np.asarray(update, dtype=np.float64).reshape(-1)
    parts = split(encode(update, fp), t, m, fp, rng=None if seed is None else np.random.default_rng(seed))
    return [share_bytes(parts[j], ShareHeader(str(round_id), hospital, j, len(update), fp.l, fp.f, t, m))
            for j in range(m)]


def hospital_submit(fl: Any, round_id: int, hospital: str, update: np.ndarray, n_samples: int,
                    nodes: list[NodeEndpoint], identity: SigningIdentity, *, t: int = 1,
                    trust: Any = None) -> tuple[list[Any], Any]:
    """A hospital's step 3 as `fedchain.hospital.HospitalClient.deliver` does it, for a given update: share j
    to node j with verified receipts (`send_shares`), and only then SubmitUpdate with the receipts' hashes, so
    nothing reaches the ledger unless every node acknowledged its share. Returns (receipts, submit result)."""
    from fedchain.mpc_client import send_shares

    shares = make_shares(update, round_id, hospital, t, len(nodes), seed=None)
    receipts = send_shares(round_id, shares, nodes, identity, hospital=hospital, trust=trust)
    result = fl.submit_update({"round_id": int(round_id), "share_hashes": [r.sha256 for r in receipts],
                               "n_samples": int(n_samples), "dim": int(np.asarray(update).size)})
    return receipts, result


def endpoint(cons: Consortium, index: int, port: int) -> NodeEndpoint:
    return NodeEndpoint(index=index, endpoint=f"127.0.0.1:{port}",
                        tls_root_cert=cons.org(ORG).tls_ca_cert_path.read_bytes(), id=f"mpc{index}")


class IntakeNode:
    """A node's share intake on a real port (mutual TLS), its store in data_dir."""

    def __init__(self, world, index: int, data_dir: Path, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.world = world
        self.index = index
        self.data_dir = data_dir
        self.max_message_bytes = max_message_bytes
        self.start()

    def start(self) -> None:
        cons = self.world.consortium
        cert, key = cons.issue_tls(ORG, f"mpc{self.index}")
        settings = IntakeSettings(node_id=f"mpc{self.index}", node_index=self.index, m=3, t=1,
                                  max_message_bytes=self.max_message_bytes)
        self.store = ShareStore(self.data_dir)
        self.intake = ShareIntake(settings, self.store, self.world.ledger, cons.msp_manager(),
                                  self.world.nodes[self.index])
        self.server, self.port = serve(self.intake, "127.0.0.1:0", cert.read_bytes(), key.read_bytes())
        self.endpoint = endpoint(cons, self.index, self.port)

    def stop(self) -> None:
        self.server.stop(grace=None).wait()


class NodeLedgerView:
    """The fake ledger as seen by one MPC node: the chaincode stamps attestations with the caller."""

    def __init__(self, ledger: FakeLedger, node_id: str) -> None:
        self._ledger = ledger
        self._node_id = node_id

    def attest(self, attestation: dict[str, Any]) -> None:
        self._ledger.attest({**attestation, "node": self._node_id})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)
