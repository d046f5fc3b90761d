"""Config files of the embedded network: the devnet's, the chaincode server's TLS, network.json.

Kept apart from embedded.py because it is where the devnet's own config format
(fedchain_devnet.config) meets the consortium; the MPC nodes' node.json files come from
netctl.mpc, shared with the Fabric backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedchain.identity import Consortium
from fedchain.netctl.mpc import write_json, write_node_configs
from fedchain.netctl.policy import parse_policy

if TYPE_CHECKING:
    from fedchain.netctl.embedded import EmbeddedNetwork


def write_all(net: EmbeddedNetwork, consortium: Consortium) -> None:
    """devnet.json, the chaincode server's TLS pair, node.json per MPC node, network.json."""
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
    policy = parse_policy(s.endorsement_policy, [o.msp_id for o in consortium.orgs])
    chaincodes = [ChaincodeDef(
        name="fedchain", address=f"127.0.0.1:{s.chaincode_port}", policy=policy,
        tls_root_cert=str(org1.tls_ca_cert_path),
    )]
    cfg = make_devnet_config(
        consortium, lay.ledger, f"127.0.0.1:{s.gateway_port}", chaincodes,
        batch_timeout_ms=s.batch_timeout_ms, max_message_count=s.max_message_count,
    )
    write_json(lay.root / "devnet.json", cfg)
    mpc_nodes = write_node_configs(lay.root, consortium, net.mpc_plan()) if s.with_mpc else []
    net.write_network_json(consortium, mpc_nodes)
