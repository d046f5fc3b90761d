"""Config files of the embedded network: the devnet's, the chaincode server's TLS, network.json.

Kept apart from embedded.py because it is where the devnet's own config format
(fedchain_devnet.config) meets the consortium; the MPC nodes' node.json files come from
netctl.mpc, shared with the Fabric backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedchain.identity import Consortium
from fedchain.netctl.hosts import endpoint
from fedchain.netctl.mpc import write_json, write_node_configs
from fedchain.netctl.policy import parse_policy

if TYPE_CHECKING:
    from fedchain.netctl.embedded import EmbeddedNetwork


def write_all(net: EmbeddedNetwork, consortium: Consortium) -> None:
    """devnet.json, the chaincode server's TLS pair, node.json per MPC node, network.json."""
    from fedchain_devnet.config import ChaincodeDef, make_devnet_config

    s, lay = net.settings, net.layout
    hosts = s.host_map()
    org1 = consortium.orgs[0]
    cc_cert, cc_key = consortium.issue_tls(org1.msp_id, "chaincode", hosts=hosts.chaincode.sans())
    tls_dir = lay.root / "chaincode-tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    links = [(cc_cert, "server.crt"), (cc_key, "server.key")]
    client: dict[str, str | None] = {}
    if not hosts.is_loopback:
        # the chaincode server is reachable from other hosts: it takes only the devnet's TLS client certificate
        cl_cert, cl_key = consortium.issue_tls(org1.msp_id, "devnet-client", hosts=hosts.ledger.sans())
        links.append((org1.tls_ca_cert_path, "client-ca.crt"))
        client = {"client_cert": str(cl_cert), "client_key": str(cl_key)}
    for src, name in links:
        target = tls_dir / name
        if not target.exists():
            target.symlink_to(src)
    policy = parse_policy(s.endorsement_policy, [o.msp_id for o in consortium.orgs])
    chaincodes = [ChaincodeDef(
        name="fedchain", address=endpoint(hosts.chaincode.address, s.chaincode_port), policy=policy,
        tls_root_cert=str(org1.tls_ca_cert_path), **client,
    )]
    cfg = make_devnet_config(
        consortium, lay.ledger, endpoint(hosts.ledger.bind, s.gateway_port), chaincodes,
        batch_timeout_ms=s.batch_timeout_ms, max_message_count=s.max_message_count,
    )
    if not hosts.is_loopback:  # the gateway's certificate names the ledger's host (as well as peer0.org1...)
        gw_cert, gw_key = consortium.issue_tls(org1.msp_id, "gateway",
                                               hosts=(*hosts.ledger.sans(), org1.node_name))
        cfg["tls"].update(cert=str(gw_cert), key=str(gw_key))
    write_json(lay.root / "devnet.json", cfg)
    mpc_nodes = write_node_configs(lay.root, consortium, net.mpc_plan()) if s.with_mpc else []
    net.write_network_json(consortium, mpc_nodes)
