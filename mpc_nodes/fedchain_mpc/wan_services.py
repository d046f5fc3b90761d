"""Processes of the WAN benchmark's upload phase, each run inside its namespace host.

    python -m fedchain_mpc.wan_services intake CONFIG_JSON   # on an MPC host: the real share intake
    python -m fedchain_mpc.wan_services upload CONFIG_JSON   # on the hospital host: every hospital uploads
    python -m fedchain_mpc.wan_services ledger-tx CONFIG_JSON  # on an MPC host: one ledger transaction

The intake is fedchain_mpc.intake (gRPC, mutual TLS with the consortium's certificates, the node's
signed receipts, durable store) unchanged; only its ledger view is a snapshot (every hospital
registered, every round OPEN) written by the benchmark, so the upload phase measures the hospital →
node path (TLS handshakes, HTTP/2 streams of 1 MiB pieces, receipt) and not the node → ledger
lookups (a real node caches participants and asks the ledger once per share for the round: one
more node↔ledger round trip per share, in parallel across hospitals).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fedchain.records import Participant, Round, RoundId, parse_round_id

ORG = "Org1MSP"


class SnapshotLedger:
    """The ledger as the intake reads it, from a file: participants and the round's dimension."""

    def __init__(self, participants: list[dict[str, Any]], dim: int) -> None:
        records = [Participant.from_json(p) for p in participants]
        self._by_ident = {(p.msp_id, p.identity): p for p in records}
        self._dim = dim

    def participant_for(self, msp_id: str, fabric_id: str) -> Participant | None:
        return self._by_ident.get((msp_id, fabric_id))

    def get_round(self, round_id: RoundId, fresh: bool = False) -> Round | None:
        """Every round is OPEN (no deadline to speak of) with the benchmark's dimension."""
        return Round.from_json({"round_id": round_id, "state": "OPEN", "model_spec": {"param_count": self._dim},
                                "base_model_hash": "0" * 64, "base_round_id": 0, "deadline": 4e9,
                                "min_updates": 1})


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def intake(config: dict[str, Any]) -> int:
    """Serve until stdin closes; prints READY, then "CPU <seconds>" per line read from stdin."""
    from fedchain.identity import Consortium

    from fedchain_mpc.intake import IntakeSettings, ShareIntake, serve
    from fedchain_mpc.store import ShareStore

    cons = Consortium.load(config["crypto"])
    j = int(config["index"])
    signer = cons.enroll(ORG, f"mpc{j}", "mpc_node")
    cert, key = cons.issue_tls(ORG, f"mpc{j}", hosts=("localhost", "127.0.0.1", config["address"]))
    settings = IntakeSettings(node_id=f"mpc{j}", node_index=j, m=3, t=1)
    ledger = SnapshotLedger(config["participants"], int(config["dim"]))
    node = ShareIntake(settings, ShareStore(config["store"]), ledger, cons.msp_manager(), signer)  # type: ignore[arg-type]
    server, _ = serve(node, f"{config['address']}:{config['port']}", cert.read_bytes(), key.read_bytes())
    print("READY", flush=True)
    try:
        for _ in sys.stdin:
            print(f"CPU {_cpu()}", flush=True)
    finally:
        server.stop(grace=None).wait()
    return 0


def upload(config: dict[str, Any]) -> int:
    """Every hospital sends share j to node j (hospitals in parallel, like real ones); prints a JSON summary."""
    from fedchain.identity import Consortium
    from fedchain.mpc_client import NodeEndpoint, send_shares

    cons = Consortium.load(config["crypto"])
    root = cons.org(ORG).tls_ca_cert_path.read_bytes()
    nodes = [NodeEndpoint(index=j, endpoint=ep, tls_root_cert=root, id=f"mpc{j}")
             for j, ep in enumerate(config["endpoints"])]
    round_id = parse_round_id(config["round_id"])
    uploads = config["uploads"]  # [{"hospital": h, "paths": [share file per node]}]
    idents = {u["hospital"]: cons.enroll(ORG, u["hospital"], "hospital") for u in uploads}
    shares = {u["hospital"]: [Path(p).read_bytes() for p in u["paths"]] for u in uploads}
    cpu0, t0 = _cpu(), time.perf_counter()

    def one(u: dict[str, Any]) -> int:
        h = u["hospital"]
        return len(send_shares(round_id, shares[h], nodes, idents[h], hospital=h, timeout_s=600.0))

    with ThreadPoolExecutor(max_workers=len(uploads)) as pool:
        receipts = sum(pool.map(one, uploads))
    print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - cpu0, "receipts": receipts,
                      "share_bytes": sum(len(s) for v in shares.values() for s in v)}), flush=True)
    return 0


def ledger_tx(config: dict[str, Any]) -> int:
    """One transaction through the Fabric Gateway of the ledger host (endorse, submit, wait for the commit):
    RegisterParticipant of a fresh hospital identity by the operator. AttestResult takes the same path
    (one Submit under the same endorsement policy) but needs a closed round, which this benchmark does
    not run. Prints {"connect_s", "wall_s", "cpu_s", "code"}."""
    from fedchain.fl_client import FLClient, participant_entry
    from fedchain.identity import Consortium
    from fedchain.netconfig import load_network

    directory = config["network"]
    cfg = load_network(directory)
    cons = Consortium.load(f"{directory}/crypto")
    ident = cons.enroll(cons.orgs[0].msp_id, config["name"], "hospital")
    cpu0, t0 = _cpu(), time.perf_counter()
    with cfg.connect("operator") as gw:
        client = FLClient(cfg.contract(gw))
        t1 = time.perf_counter()
        result = client.register_participant(participant_entry(config["name"], ident, "hospital", sample_cap=100))
        t2 = time.perf_counter()
    code = getattr(result, "validation_code_name", None) or str(result)[:40]
    print(json.dumps({"connect_s": t1 - t0, "wall_s": t2 - t1, "cpu_s": _cpu() - cpu0, "code": code}), flush=True)
    return 0


def main(argv: list[str]) -> int:
    actions = {"intake": intake, "upload": upload, "ledger-tx": ledger_tx}
    if len(argv) != 2 or argv[0] not in actions:
        print(__doc__, file=sys.stderr)
        return 2
    return actions[argv[0]](json.loads(Path(argv[1]).read_text()))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
