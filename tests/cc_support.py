"""Shared helpers for the FL chaincode unit tests: identities with role certificates and a ledger.

Not a test module (no test_ functions): imported by tests/cc_*_test.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate
from fedchain_cc.fl import FLContract
from fedchain_cc.shim.interface import ClientIdentity
from fedchain_cc.testing import MockLedger, client_identity_from_pem

T0 = 1_700_000_000.0
GENESIS = b"genesis-model-bytes" * 10
PARAM_COUNT = 1000
SPEC = {"arch": "tiny_cnn", "param_count": PARAM_COUNT, "in_channels": 1}
REFERENCE = b"".join(i.to_bytes(4, "little") for i in range(PARAM_COUNT))  # any 4*PARAM_COUNT bytes

_CAS: dict[str, tuple] = {}


def _ca(msp_id: str):
    if msp_id not in _CAS:
        _CAS[msp_id] = create_ca(f"ca.{msp_id.lower()}", msp_id)
    return _CAS[msp_id]


def make_identity(name: str, role: str | None, msp_id: str = "Org1MSP") -> ClientIdentity:
    ca_key, ca_cert = _ca(msp_id)
    ou = "admin" if role == "operator" else "client"
    _, cert = issue_certificate(ca_key, ca_cert, f"{name}@{msp_id.lower()}", ou=ou, role=role)
    return client_identity_from_pem(msp_id, cert_to_pem(cert))


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class World:
    """A ledger with an initialized consortium: 1 operator, 3 MPC nodes (t=1, q=2), hospitals, auditor."""

    ledger: MockLedger
    operator: ClientIdentity
    mpc: list[ClientIdentity]
    hospitals: dict[str, ClientIdentity]
    auditor: ClientIdentity
    extra: dict[str, ClientIdentity] = field(default_factory=dict)

    def call(self, who: ClientIdentity, fn: str, *args, timestamp: float | None = None):
        """Invoke and commit; returns (response, validation code or None when refused)."""
        return self.ledger.invoke(who, fn, *[a if isinstance(a, str | bytes) else json.dumps(a) for a in args],
                                  timestamp=timestamp)

    def ok(self, who: ClientIdentity, fn: str, *args, timestamp: float | None = None):
        resp, code = self.call(who, fn, *args, timestamp=timestamp)
        assert resp.status == 200, f"{fn} refused: {resp.message}"
        assert code == "VALID", f"{fn} committed as {code}"
        return json.loads(resp.payload) if resp.payload else None

    def refused(self, who: ClientIdentity, fn: str, *args, status: int | None = None, contains: str = "",
                timestamp: float | None = None) -> str:
        before = self.ledger.snapshot()
        resp, code = self.call(who, fn, *args, timestamp=timestamp)
        assert resp.status >= 400, f"{fn} was allowed: {resp.payload[:200]!r}"
        assert code is None
        assert resp.message.startswith(f"{fn}: ") or fn not in FLContract.transactions, resp.message
        if status is not None:
            assert resp.status == status, (resp.status, resp.message)
        assert contains in resp.message, resp.message
        assert self.ledger.snapshot() == before, "a refused call changed the state"
        return resp.message

    # --- round helpers ---------------------------------------------------------
    def create_round(self, round_id: int, *, deadline: float | None = None, min_updates: int = 2) -> dict:
        head = self.ok(self.operator, "GetConsortium")["head"]
        return self.ok(self.operator, "CreateRound", {
            "round_id": round_id, "base_model_hash": head["model_hash"], "model_spec": SPEC,
            "hyperparameters": {"lr": 0.01, "epochs": 1, "reference_sha256": hashlib.sha256(REFERENCE).hexdigest()},
            "deadline": deadline or self.ledger.now + 3600,
            "min_updates": min_updates,
        })

    def update(self, round_id: int, hospital: str, n_samples: int = 100) -> dict:
        return {"round_id": round_id, "share_hashes": [h(f"{round_id}/{hospital}/{j}") for j in range(3)],
                "n_samples": n_samples, "dim": PARAM_COUNT}

    def attestation(self, round_id: int, model: bytes, accepted: list[str], rejected: dict | None = None) -> dict:
        return {"round_id": round_id, "model_hash": hashlib.sha256(model).hexdigest(), "accepted": accepted,
                "rejected": rejected or {}, "report_hash": h(f"report{round_id}")}

    def submit_all_and_close(self, round_id: int = 1) -> None:
        """Every hospital submits an update to the OPEN round, then the operator closes it."""
        for name, ident in self.hospitals.items():
            self.ok(ident, "SubmitUpdate", self.update(round_id, name))
        self.ok(self.operator, "CloseRound", str(round_id))

    def attest_none_accepted(self, round_id: int, reason: str) -> None:
        """mpc0 attests the CLOSED round too_few_accepted, every update rejected for `reason` (one node: not decided)."""
        att = {**self.attestation(round_id, GENESIS, [], {name: reason for name in self.hospitals}),
               "outcome": "too_few_accepted"}
        self.ok(self.mpc[0], "AttestResult", att)


def init_config(mpc: list[ClientIdentity]) -> dict:
    return {
        "mpc_nodes": [{"id": f"mpc{j}", "msp_id": c.msp_id, "identity": c.id} for j, c in enumerate(mpc)],
        "threshold": 1, "quorum": 2, "default_policy": {"norm_bound": 10.0, "cosine_min": 0.0},
        "max_model_bytes": 64 * 1024,
        "min_accepted": 1,  # the small test worlds aggregate 1-2 updates; the default floor (3): cc_outcome_test
    }


def make_world(n_hospitals: int = 3, *, init: bool = True, genesis: bool = True) -> World:
    """Identities always; the consortium initialized when `init`; round 0's model when `genesis`.

    extra["unregistered"]: a hospital certificate nobody registered; extra["mismatch"]: registered as
    hospital "liar" but its certificate says auditor.
    """
    ledger = MockLedger(FLContract(), start_time=T0)
    operator = make_identity("operator", "operator", "Org1MSP")
    mpc = [make_identity(f"mpc{j}", "mpc_node", f"Org{j + 1}MSP") for j in range(3)]
    hospitals = {f"hospital{i}": make_identity(f"hospital{i}", "hospital", f"Org{i % 3 + 1}MSP")
                 for i in range(1, n_hospitals + 1)}
    auditor = make_identity("auditor", "auditor", "Org3MSP")
    w = World(ledger, operator, mpc, hospitals, auditor)
    w.extra["unregistered"] = make_identity("stranger", "hospital", "Org2MSP")
    w.extra["mismatch"] = make_identity("liar", "auditor", "Org2MSP")
    if not init:
        return w
    w.ok(operator, "InitConsortium", init_config(mpc))
    for name, ident in hospitals.items():
        w.ok(operator, "RegisterParticipant", {"id": name, "role": "hospital", "msp_id": ident.msp_id,
                                               "identity": ident.id, "sample_cap": 1000})
    w.ok(operator, "RegisterParticipant", {"id": "auditor", "role": "auditor", "msp_id": auditor.msp_id,
                                           "identity": auditor.id})
    liar = w.extra["mismatch"]
    w.ok(operator, "RegisterParticipant", {"id": "liar", "role": "hospital", "msp_id": liar.msp_id,
                                           "identity": liar.id, "sample_cap": 1000})
    if genesis:
        w.ok(operator, "PublishGenesisModel", SPEC, b64(GENESIS))
    return w


NEW_MODEL = b"model-after-round-1" * 7


def open_world(n_hospitals: int = 3, *, publish_reference: bool = True) -> World:
    """Round 1 OPEN (deadline in an hour), its reference published unless told not to, nobody submitted yet."""
    w = make_world(n_hospitals)
    w.create_round(1)
    if publish_reference:
        w.ok(w.operator, "PublishReference", "1", b64(REFERENCE))
    return w


def validation_batch() -> bytes:
    """A canonical 8-image validation batch (fedchain.validation_batch), the same bytes every call."""
    import numpy as np
    from fedchain.validation_batch import encode

    images = (np.arange(8 * 28 * 28) % 251).astype(np.uint8).reshape(8, 28, 28)
    return encode(images, np.arange(8, dtype=np.int64) % 4)


def inference_world(*, publish: bool) -> World:
    """Round 1 OPEN with the encrypted-inference check on (batch of 8) and its validation batch declared;
    published when `publish` (the reference is always published)."""
    w = make_world()
    head = w.ok(w.operator, "GetConsortium")["head"]
    batch = validation_batch()
    w.ok(w.operator, "CreateRound", {
        "round_id": 1, "base_model_hash": head["model_hash"], "model_spec": SPEC,
        "hyperparameters": {"reference_sha256": hashlib.sha256(REFERENCE).hexdigest(),
                            "validation_sha256": hashlib.sha256(batch).hexdigest()},
        "policy": {"inference_enabled": True, "inference_batch": 8, "norm_bound": 10.0},
        "deadline": w.ledger.now + 3600, "min_updates": 1})
    w.ok(w.operator, "PublishReference", "1", b64(REFERENCE))
    if publish:
        w.ok(w.operator, "PublishValidationBatch", "1", b64(batch))
    return w


def closed_world(n_hospitals: int = 3) -> World:
    """Round 1 CLOSED with an update from every hospital."""
    w = open_world(n_hospitals)
    w.submit_all_and_close(1)
    return w


def finalized_world(n_hospitals: int = 3) -> World:
    """Round 1 FINALIZED by mpc0+mpc1 (all accepted, NEW_MODEL), model not yet published."""
    w = closed_world(n_hospitals)
    att = w.attestation(1, NEW_MODEL, sorted(w.hospitals))
    w.ok(w.mpc[0], "AttestResult", att)
    w.ok(w.mpc[1], "AttestResult", att)
    return w
