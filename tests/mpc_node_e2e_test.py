"""End to end on the embedded network: three MPC node processes, real ledger, real MPyC over TLS.

`EmbeddedNetwork(with_mpc=True)` starts the chaincode server, the devnet and three
`python -m fedchain_mpc` nodes. Hospitals send shares over mutual TLS (fedchain.mpc_client)
and commit the hashes with SubmitUpdate; the operator closes the round; the nodes agree on
the inputs, run MPyC (three party processes, --ssl), attest through the gateway and publish.
Round 2 kills one node (SIGKILL) after the shares arrived and restarts it after the close;
round 3 kills it while its MPyC party is inside the protocol: both rounds still finalize
with every share kept and the result numpy predicts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import time

import numpy as np
import pytest
from fedchain.records import ModelRecord

NEEDED = ["fedchain_devnet.__main__", "fedchain_cc.__main__", "fedchain.netctl.embedded_configs"]
MISSING = [n for n in NEEDED if importlib.util.find_spec(n.rsplit(".", 1)[0]) is None
           or importlib.util.find_spec(n) is None]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600),
              pytest.mark.skipif(bool(MISSING), reason=f"embedded network not in the tree: {MISSING}")]

DIM = 400
HOSPITALS = ["e2eh0", "e2eh1", "e2eh2", "e2eh3"]




@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from conftest import running_network

    with running_network(tmp_path_factory.mktemp("e2e"), with_mpc=True) as network:
        yield network


def _model(dim: int) -> bytes:
    from safetensors.numpy import save

    return save({"w": np.linspace(-0.5, 0.5, dim, dtype=np.float32)})


def _flat(data: bytes) -> np.ndarray:
    from safetensors.numpy import load

    t = load(data)
    return np.concatenate([t[k].astype(np.float64).reshape(-1) for k in sorted(t)])


class Scenario:
    def __init__(self, net) -> None:
        from fedchain.fl_client import FLClient, participant_entry
        from fedchain.identity import Consortium, Wallet
        from fedchain.netconfig import load_network

        self.net = net
        self.cfg = load_network(net.layout.root)
        self.cons = Consortium.load(net.layout.crypto)
        self.wallet = Wallet(net.layout.wallet)
        self.gw = self.cfg.connect("operator")
        self.op = FLClient(self.cfg.contract(self.gw))
        registered = {p.id for p in self.op.list_participants()}
        for i, name in enumerate(HOSPITALS):
            if not self.wallet.exists(name):
                self.wallet.put(name, self.cons.enroll(self.cons.orgs[i % 3].msp_id, name, "hospital"))
            if name not in registered:
                self.op.register_participant(participant_entry(name, self.wallet.get(name), "hospital",
                                                               sample_cap=10_000))
        if self.op.head().model_hash is None:
            self.op.publish_genesis_model({"arch": "flat", "param_count": DIM}, _model(DIM))
        rng = np.random.default_rng(3)
        self.reference = rng.normal(0, 0.02, DIM).astype(np.float32).astype(np.float64)
        from fedchain.models import vector_hash

        self.ref_sha = vector_hash(self.reference)  # nodes fetch it from the ledger (GetReference)

    def open_round(self) -> int:
        from fedchain.demo.operator import retry_mvcc

        head = self.op.head()
        rid = head.last_round_id + 1
        policy = {"cosine_enabled": True, "cosine_min": 0.0, "norm_bound": 10.0, "outlier_enabled": False}
        # the previous round's last attestation may land after its quorum, concurrently with this
        # CreateRound (both touch the round records): retried as the operator does
        retry_mvcc(lambda: self.op.create_round({
            "round_id": rid, "base_model_hash": head.model_hash, "model_spec": {"arch": "flat", "param_count": DIM},
            "hyperparameters": {"reference_sha256": self.ref_sha}, "policy": policy,
            "deadline": time.time() + 600, "min_updates": 2}), done=lambda: self.op.head().last_round_id >= rid)
        self.op.publish_reference(rid, self.reference.astype("<f4").tobytes())
        return rid

    def updates(self, rid: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(rid)
        ups = {h: self.reference + rng.normal(0, 0.01, DIM) for h in HOSPITALS}
        ups[HOSPITALS[-1]] = -5 * self.reference  # poisoned: points away from the reference
        return ups

    def submit(self, rid: int, name: str, update: np.ndarray) -> list:
        from fedchain.fl_client import FLClient
        from fedchain.mpc_client import consortium_trust, endpoints_from_network
        from mpc_node_support import hospital_submit

        ident = self.wallet.get(name)
        trust = consortium_trust(self.op.get_consortium(), self.cons.msp_manager())
        with self.cfg.connect(ident) as gw:
            receipts, result = hospital_submit(FLClient(self.cfg.contract(gw)), rid, name, update,
                                               100 * (HOSPITALS.index(name) + 1), endpoints_from_network(self.cfg),
                                               ident, t=1, trust=trust)
        assert result.validation_code_name == "VALID"
        return receipts

    def wait_model(self, rid: int, timeout_s: float = 240) -> ModelRecord:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.op.get_model(rid)
            except Exception:
                if time.monotonic() > deadline:
                    rnd = self.op.get_round(rid)
                    logs = "\n".join(self.net.services()[2 + i].tail(lines=15) for i in range(3))
                    raise AssertionError(f"round {rid} has no model: state {rnd.state}, "
                                         f"attestations {dict(rnd.attestations)}\n{logs}") from None
                time.sleep(1)

    def check_honest_model_after_restart(self, rid: int, ups: dict[str, np.ndarray]) -> None:
        """Round `rid` finalized with the honest hospitals accepted and base + their weighted average as the
        model, and MPC node 1 (killed and restarted during the round) still holds every hospital's share."""
        model = self.wait_model(rid)
        rnd = self.op.get_round(rid)
        assert rnd.state == "FINALIZED" and list(rnd.finalized.accepted) == sorted(HOSPITALS[:-1])
        assert np.max(np.abs(_flat(model.model) - self.expected(rid, ups, HOSPITALS[:-1]))) < 1e-4
        held = self.net.layout.mpc / "mpc1" / "data" / "shares" / str(rid)
        assert sorted(p.stem for p in held.glob("*.share")) == sorted(HOSPITALS)  # nothing lost across the kill

    def expected(self, rid: int, ups: dict[str, np.ndarray], accepted: list[str]) -> np.ndarray:
        base = _flat(self.op.get_model(self.op.get_round(rid).base_round_id).model)
        w = {h: 100 * (HOSPITALS.index(h) + 1) for h in accepted}
        return base + sum(w[h] * ups[h] for h in accepted) / sum(w.values())


def test_round_end_to_end_then_node_killed_and_restarted(net):
    sc = Scenario(net)
    try:
        # ---- round A: everything up
        rid = sc.open_round()
        ups = sc.updates(rid)
        for name in HOSPITALS:
            sc.submit(rid, name, ups[name])
        t0 = time.monotonic()
        sc.op.close_round(rid)
        model = sc.wait_model(rid)
        took = time.monotonic() - t0
        rnd = sc.op.get_round(rid)
        assert rnd.state == "FINALIZED"
        assert list(rnd.finalized.accepted) == sorted(HOSPITALS[:-1])
        assert dict(rnd.finalized.rejected) == {HOSPITALS[-1]: "cosine"}
        assert np.max(np.abs(_flat(model.model) - sc.expected(rid, ups, HOSPITALS[:-1]))) < 1e-4
        print(f"\nround {rid}: close -> model published in {took:.1f} s")

        # ---- round B: node 1 is killed after intake, restarted after the close
        rid = sc.open_round()
        ups = sc.updates(rid)
        for name in HOSPITALS:
            sc.submit(rid, name, ups[name])
        node1 = net.services()[3]
        assert node1.name == "mpc1"
        os.kill(node1.pid(), signal.SIGKILL)
        time.sleep(0.5)
        assert not node1.running()
        sc.op.close_round(rid)
        time.sleep(3)  # nodes 0 and 2 start their parties and wait for party 1
        node1.start(ready_timeout=60)
        sc.check_honest_model_after_restart(rid, ups)
        deadline = time.monotonic() + 60
        while len(sc.op.get_round(rid).attestations) < 3 and time.monotonic() < deadline:
            time.sleep(1)
        atts = sc.op.get_round(rid).attestations
        assert sorted(atts) == ["mpc0", "mpc1", "mpc2"]
        assert len({a.model_hash for a in atts.values()}) == 1

        # ---- round C: node 1 is killed while its MPyC party is inside the protocol, then restarted
        rid = sc.open_round()
        ups = sc.updates(rid)
        for name in HOSPITALS:
            sc.submit(rid, name, ups[name])
        out = net.layout.mpc / "mpc1" / "data" / "runs" / str(rid) / "party.out"
        sc.op.close_round(rid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if out.exists() and b"parties connected" in out.read_bytes():
                os.kill(node1.pid(), signal.SIGKILL)  # the party dies with it (PR_SET_PDEATHSIG)
                break
            time.sleep(0.005)
        else:
            raise AssertionError("node 1 never started its MPC party")
        time.sleep(1)
        node1.start(ready_timeout=60)
        sc.check_honest_model_after_restart(rid, ups)

        # ---- no plaintext update value in any node log or stored file
        needles = [f"{v:.6f}" for v in ups[HOSPITALS[0]][:50] if abs(v) > 1e-3]
        for path in [*net.layout.logs.glob("mpc*"), *(net.layout.mpc).rglob("*.share"),
                     *(net.layout.mpc).rglob("party.*"), *(net.layout.mpc).rglob("reports/*.json")]:
            text = path.read_bytes()
            hits = [n for n in needles if n.encode() in text]
            assert not hits, f"{path} contains plaintext values {hits[:3]}"
        sha = hashlib.sha256((net.layout.mpc / "mpc0" / "data" / "models" / f"{rid}.safetensors").read_bytes())
        assert sha.hexdigest() == sc.op.get_round(rid).finalized.model_hash
    finally:
        sc.gw.close()
