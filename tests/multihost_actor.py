"""One actor's step of the multi-host round (tests/multihost_test.py), run inside its host.

    python tests/multihost_actor.py NETWORK_DIR setup            # operator: hospitals, genesis, round 1
    python tests/multihost_actor.py NETWORK_DIR submit NAME      # hospital NAME: shares over mTLS + SubmitUpdate
    python tests/multihost_actor.py NETWORK_DIR close            # operator: CloseRound(1)
    python tests/multihost_actor.py NETWORK_DIR wait             # operator: until round 1 is FINALIZED
    python tests/multihost_actor.py NETWORK_DIR fetch NAME       # hospital NAME: model of round 1, hash checked
    python tests/multihost_actor.py NETWORK_DIR fabric-up SPEC   # real Fabric, components in their hosts
    python tests/multihost_actor.py NETWORK_DIR fabric-down

Each step prints one JSON line. Everything is deterministic (fixed seeds, fixed weights), so
the same steps on a loopback network give the same model bytes: the MPC opens the exact
fixed-point weighted sum of the accepted updates (public integer weights), whatever the
random Shamir shares were.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

DIM = 400
HOSPITALS = ["mh0", "mh1", "mh2"]
SAMPLES = {"mh0": 100, "mh1": 200, "mh2": 300}
ROUND = 1


def _model() -> bytes:
    from safetensors.numpy import save

    return save({"w": np.linspace(-0.5, 0.5, DIM, dtype=np.float32)})


def _reference() -> np.ndarray:
    return np.random.default_rng(3).normal(0, 0.02, DIM).astype(np.float32).astype(np.float64)


def _update(name: str) -> np.ndarray:
    ref = _reference()
    if name == HOSPITALS[-1]:
        return -5 * ref  # poisoned: points away from the reference, rejected by the cosine check
    return ref + np.random.default_rng(10 + HOSPITALS.index(name)).normal(0, 0.01, DIM)


def fabric_up(directory: str, spec: dict) -> int:
    """Real Fabric with the orderer, each peer (+ its org's chaincode server) and each MPC node in its own host:
    spec = {"settings": FabricSettings fields, "orderer": PREFIX, "peers": [PREFIX...], "mpc": [PREFIX...]}."""
    from fedchain.fabricnet.native import FabricNetwork, chaincode_service
    from fedchain.fabricnet.settings import FabricSettings

    settings = FabricSettings(**spec["settings"])
    orgs = FabricNetwork(directory, settings).consortium().orgs  # generated now: node names come from it
    launch = {"orderer": spec["orderer"]}
    for i, org in enumerate(orgs):
        launch[org.node_name] = launch[chaincode_service(org)] = spec["peers"][i]
    for i, prefix in enumerate(spec["mpc"]):
        launch[f"mpc{i}"] = prefix
    settings.launch = launch
    FabricNetwork(directory, settings).up(progress=lambda m: print("  -", m, file=sys.stderr, flush=True),
                                          ready_timeout=120)
    print(json.dumps({"action": "fabric-up"}), flush=True)
    return 0


def main(argv: list[str]) -> int:
    from fedchain.fl_client import FLClient
    from fedchain.netconfig import load_network

    directory, action, *rest = argv
    if action == "fabric-up":
        return fabric_up(directory, json.loads(rest[0]))
    if action == "fabric-down":
        from fedchain.fabricnet.native import FabricNetwork

        print(json.dumps({"action": action, "stopped": FabricNetwork(directory).down()}), flush=True)
        return 0
    cfg = load_network(directory)
    out: dict = {"action": action}
    if action == "setup":
        from fedchain.fl_client import participant_entry
        from fedchain.identity import Consortium, Wallet
        from fedchain.models import vector_hash

        cons = Consortium.load(f"{directory}/crypto")
        wallet = Wallet(f"{directory}/wallet")
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            for i, name in enumerate(HOSPITALS):
                if not wallet.exists(name):
                    wallet.put(name, cons.enroll(cons.orgs[i % len(cons.orgs)].msp_id, name, "hospital"))
                op.register_participant(participant_entry(name, wallet.get(name), "hospital", sample_cap=10_000))
            op.publish_genesis_model({"arch": "flat", "param_count": DIM}, _model())
            head = op.head()
            policy = {"cosine_enabled": True, "cosine_min": 0.0, "norm_bound": 10.0, "outlier_enabled": False}
            op.create_round({
                "round_id": ROUND, "base_model_hash": head.model_hash,
                "model_spec": {"arch": "flat", "param_count": DIM},
                "hyperparameters": {"reference_sha256": vector_hash(_reference())}, "policy": policy,
                "deadline": time.time() + 600, "min_updates": 2})
            op.publish_reference(ROUND, _reference().astype("<f4").tobytes())
        out["round"] = ROUND
    elif action == "submit":
        from fedchain.identity import Consortium, Wallet
        from fedchain.mpc_client import consortium_trust, endpoints_from_network
        from mpc_node_support import hospital_submit

        name = rest[0]
        ident = Wallet(f"{directory}/wallet").get(name)
        cons = Consortium.load(f"{directory}/crypto")
        with cfg.connect(ident) as gw:
            client = FLClient(cfg.contract(gw))
            trust = consortium_trust(client.get_consortium(), cons.msp_manager())
            endpoints = endpoints_from_network(cfg)
            _, result = hospital_submit(client, ROUND, name, _update(name), SAMPLES[name], endpoints, ident,
                                        t=1, trust=trust)
        out.update(code=result.validation_code_name, endpoints=[e.endpoint for e in endpoints])
    elif action == "close":
        with cfg.connect("operator") as gw:
            FLClient(cfg.contract(gw)).close_round(ROUND)
    elif action == "wait":
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            deadline = time.monotonic() + float(rest[0] if rest else 90)
            while True:
                rnd = op.get_round(ROUND)
                if rnd.state == "FINALIZED":
                    break
                if rnd.state in ("FAILED", "DISPUTED") or time.monotonic() > deadline:
                    print(json.dumps({"action": action, "error": f"round {ROUND} is {rnd.state}",
                                      "attestations": {n: c.to_json() for n, c in rnd.attestations.items()}}))
                    return 1
                time.sleep(0.5)
        out.update(model_hash=rnd.finalized.model_hash, accepted=list(rnd.finalized.accepted),
                   rejected=dict(rnd.finalized.rejected))
    elif action == "fetch":
        name = rest[0]
        from fedchain.identity import Wallet

        with cfg.connect(Wallet(f"{directory}/wallet").get(name)) as gw:
            client = FLClient(cfg.contract(gw))
            deadline = time.monotonic() + 60
            while True:
                try:
                    model = client.get_model(ROUND)
                    break
                except Exception:
                    if client.get_round(ROUND).state in ("FAILED", "DISPUTED") or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
        out.update(sha256=hashlib.sha256(model.model).hexdigest())
    else:
        print(f"unknown action {action}", file=sys.stderr)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
