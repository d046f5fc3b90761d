"""Config files and ledger bootstrap for the embedded network (launcher layer of the CLI).

Kept apart from embedded.py because it is where the three services' own config formats
meet: the devnet's (fedchain_devnet.config), the MPC nodes' (fedchain_mpc.config) and the
FL contract's InitConsortium.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fedchain.identity import Consortium, Wallet

if TYPE_CHECKING:
    from fedchain.netctl.embedded import EmbeddedNetwork

log = logging.getLogger(__name__)

THRESHOLD = 1  # Shamir degree t: any 2 of 3 nodes reconstruct, 1 alone learns nothing
MAX_MODEL_BYTES = 4 * 1024 * 1024


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def write_all(net: EmbeddedNetwork, consortium: Consortium) -> None:
    from fedchain_devnet.config import ChaincodeDef, make_devnet_config

    s, lay = net.settings, net.layout
    org1 = consortium.orgs[0]
    cc_cert, cc_key = consortium.issue_tls(org1.msp_id, "chaincode")
    tls_dir = lay.root / "chaincode-tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    for src, name in ((cc_cert, "server.crt"), (cc_key, "server.key")):
        target = tls_dir / name
        if not target.exists():
            target.symlink_to(src)
    policy: str | list[str] = s.endorsement_policy
    if policy.upper() not in ("MAJORITY", "ANY", "ALL"):
        policy = [p.strip() for p in policy.split(",") if p.strip()]
    chaincodes = [ChaincodeDef(
        name="fedchain", address=f"127.0.0.1:{s.chaincode_port}", policy=policy,
        tls_root_cert=str(org1.tls_ca_cert_path),
    )]
    cfg = make_devnet_config(
        consortium, lay.ledger, f"127.0.0.1:{s.gateway_port}", chaincodes,
        batch_timeout_ms=s.batch_timeout_ms, max_message_count=s.max_message_count,
    )
    _write_json(lay.root / "devnet.json", cfg)
    mpc_nodes = write_mpc_configs(net, consortium) if s.with_mpc else []
    net.write_network_json(consortium, mpc_nodes)


def write_mpc_configs(net: EmbeddedNetwork, consortium: Consortium) -> list[dict]:
    """One node.json per MPC node (fedchain_mpc.config format); returns the network.json entries."""
    from fedchain_mpc.runner import issue_party_tls

    s, lay = net.settings, net.layout
    bundle = lay.mpc / "tls-ca-bundle.pem"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_bytes(b"".join(consortium.tls_root_pems()))
    entries = []
    for i in range(s.mpc_nodes):
        org = consortium.orgs[i % len(consortium.orgs)]
        cert, _ = consortium.issue_tls(org.msp_id, f"mpc{i}")
        entries.append({
            "index": i, "id": f"mpc{i}", "endpoint": f"127.0.0.1:{s.mpc_intake_port(i)}",
            "tls_root_cert": lay.rel(org.tls_ca_cert_path), "msp_id": org.msp_id,
        })
    for i in range(s.mpc_nodes):
        org = consortium.orgs[i % len(consortium.orgs)]
        name = f"mpc{i}"
        cert, key = consortium.issue_tls(org.msp_id, name)
        party_dir = lay.mpc / name / "party-tls"
        if not (party_dir / f"party_{i}.crt").exists():
            issue_party_tls(consortium, org.msp_id, i, party_dir)
        party = {"cert": str(party_dir / f"party_{i}.crt"), "key": str(party_dir / f"party_{i}.key"),
                 "ca": str(bundle)}
        cfg = {
            "node_index": i,
            "node_id": name,
            "listen": f"127.0.0.1:{s.mpc_intake_port(i)}",
            "tls": {"cert": str(cert), "key": str(key)},
            "identity": {"wallet": str(lay.wallet), "name": name},
            "crypto_dir": str(lay.crypto),
            "network": str(lay.root),
            "data_dir": str(lay.mpc / name / "data"),
            "peers": [{**{k: e[k] for k in ("index", "endpoint", "id")},
                       "tls_root_cert": str(lay.root / e["tls_root_cert"])} for e in entries],
            "mpc": {
                "parties": [f"127.0.0.1:{s.mpc_party_port(j)}" for j in range(s.mpc_nodes)],
                "threshold": THRESHOLD,
                "ssl": party,
                "timeout_s": 600,
                "retries": 3,
                "backoff_s": 2,
            },
            "l": 32,
            "f": 16,
            "reference_dir": str(lay.mpc / name / "references"),
        }
        _write_json(lay.mpc / f"node{i}.json", cfg)
    return entries


def bootstrap_ledger(net: EmbeddedNetwork) -> None:
    """InitConsortium once (MPC nodes, threshold, quorum, default policy) and register operator/auditor."""
    from fedchain.fl_client import FLClient, mpc_node_entry, participant_entry
    from fedchain.gateway import GatewayError
    from fedchain.netconfig import load_network

    cfg = load_network(net.layout.root)
    wallet = Wallet(net.layout.wallet)
    with cfg.connect("operator") as gw:
        client = FLClient(cfg.contract(gw))
        try:
            client.get_consortium()
            return  # already bootstrapped: a restart
        except GatewayError:
            pass  # not initialised yet (the contract refuses queries before InitConsortium)
        nodes = [mpc_node_entry(f"mpc{i}", wallet.get(f"mpc{i}")) for i in range(net.settings.mpc_nodes)]
        config = {
            "name": "fedchain embedded consortium",
            "mpc_nodes": nodes,
            "threshold": THRESHOLD,
            "quorum": THRESHOLD + 1,
            "default_policy": _default_policy(net.settings.min_accepted),
            "max_model_bytes": MAX_MODEL_BYTES,
            "min_accepted": net.settings.min_accepted,
        }
        client.init_consortium(config)
        client.register_participant(participant_entry("auditor", wallet.get("auditor"), "auditor"))


def _default_policy(min_accepted: int) -> dict:
    from fedchain.verification import VerificationPolicy

    return json.loads(VerificationPolicy(min_accepted=min_accepted).to_json())
