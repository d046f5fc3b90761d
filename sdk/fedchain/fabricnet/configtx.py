"""configtx.yaml for the `fedchain` channel: etcdraft orderer, one peer org per member, no system channel.

The profile carries both the Orderer and the Application group so configtxgen can write the
channel's genesis block directly, which the orderer joins through the channel participation
API (osnadmin) and the peers join with `peer channel join`. Policies follow Fabric's
test-network: org Readers/Writers/Admins/Endorsement by NodeOU role, channel-wide
ImplicitMeta rules, lifecycle and chaincode endorsement by a MAJORITY of the orgs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium, Org

PROFILE = "FedchainChannel"
PathFn = Callable[[Path], str]


def _sig(rule: str) -> dict[str, str]:
    return {"Type": "Signature", "Rule": rule}


def _meta(rule: str) -> dict[str, str]:
    return {"Type": "ImplicitMeta", "Rule": rule}


def _org_section(org: Org, path: PathFn, rules: dict[str, str]) -> dict[str, Any]:
    """An Organizations entry: name, MSP and its signature policies (`rules` use {m} for the MSP id)."""
    m = org.msp_id
    return {
        "Name": m,
        "ID": m,
        "MSPDir": path(org.msp_dir),
        "Policies": {name: _sig(rule.format(m=m)) for name, rule in rules.items()},
    }


def peer_org_section(org: Org, anchor: tuple[str, int], path: PathFn = str) -> dict[str, Any]:
    rules = {"Readers": "OR('{m}.admin', '{m}.peer', '{m}.client')", "Writers": "OR('{m}.admin', '{m}.client')",
             "Admins": "OR('{m}.admin')", "Endorsement": "OR('{m}.peer')"}
    return {**_org_section(org, path, rules), "AnchorPeers": [{"Host": anchor[0], "Port": anchor[1]}]}


def orderer_org_section(org: Org, endpoint: str, path: PathFn = str) -> dict[str, Any]:
    rules = {"Readers": "OR('{m}.member')", "Writers": "OR('{m}.member')", "Admins": "OR('{m}.admin')"}
    return {**_org_section(org, path, rules), "OrdererEndpoints": [endpoint]}


def configtx(
    consortium: Consortium,
    settings: FabricSettings,
    *,
    orderer_host: str | None = None,
    peer_hosts: Sequence[str] | None = None,
    path: PathFn = str,
) -> dict[str, Any]:
    """The configtx.yaml document. Hosts default to settings.host (native mode); compose passes hostnames
    and a `path` mapping for the folder the file will be read in."""
    o_host = orderer_host or settings.orderer_address()
    p_hosts = list(peer_hosts or [settings.peer_address(i) for i in range(len(consortium.orgs))])
    orderer = consortium.orderer
    orderer_section = orderer_org_section(orderer, f"{o_host}:{settings.orderer_port}", path)
    orgs = [
        peer_org_section(org, (p_hosts[i], settings.peer_port(i)), path) for i, org in enumerate(consortium.orgs)
    ]
    v20 = {"V2_0": True}
    profile = {
        "Policies": {
            "Readers": _meta("ANY Readers"),
            "Writers": _meta("ANY Writers"),
            "Admins": _meta("MAJORITY Admins"),
        },
        "Capabilities": v20,
        "Orderer": {
            "OrdererType": "etcdraft",
            "EtcdRaft": {
                "Consenters": [{
                    "Host": o_host,
                    "Port": settings.orderer_port,
                    "ClientTLSCert": path(orderer.peer_tls_cert),
                    "ServerTLSCert": path(orderer.peer_tls_cert),
                }],
                "Options": {
                    "TickInterval": "500ms",
                    "ElectionTick": 10,
                    "HeartbeatTick": 1,
                    "MaxInflightBlocks": 5,
                    "SnapshotIntervalSize": "16 MB",
                },
            },
            "BatchTimeout": settings.batch_timeout,
            "BatchSize": {
                "MaxMessageCount": settings.max_message_count,
                "AbsoluteMaxBytes": "99 MB",  # global models travel through the ledger
                "PreferredMaxBytes": "2 MB",
            },
            "Organizations": [orderer_section],
            "Policies": {
                "Readers": _meta("ANY Readers"),
                "Writers": _meta("ANY Writers"),
                "Admins": _meta("MAJORITY Admins"),
                "BlockValidation": _meta("ANY Writers"),
            },
            "Capabilities": v20,
        },
        "Application": {
            "Organizations": orgs,
            "Policies": {
                "Readers": _meta("ANY Readers"),
                "Writers": _meta("ANY Writers"),
                "Admins": _meta("MAJORITY Admins"),
                "LifecycleEndorsement": _meta("MAJORITY Endorsement"),
                "Endorsement": _meta("MAJORITY Endorsement"),
            },
            "Capabilities": v20,
        },
    }
    return {"Organizations": [orderer_section, *orgs], "Profiles": {PROFILE: profile}}


class _NoAliases(yaml.SafeDumper):
    """configtxgen reads plain YAML; repeated sections are written out in full, not as &anchors."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_NoAliases, sort_keys=False, default_flow_style=False)


def write_configtx(folder: Path, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "configtx.yaml"
    out.write_text("# generated by fedchain.fabricnet; regenerated on every `up`\n" + dump(doc))
    return out
