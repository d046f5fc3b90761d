"""Ports, names and tuning of a real Fabric network, chosen once and kept in D/fabric.json.

A restart must reuse exactly the same ports, ledger folders and chaincode package, so the
choices of the first `up` are written down and read back, like the embedded network does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedchain.netctl.consortium import ConsortiumPlan
from fedchain.netctl.hosts import HostAddress
from fedchain.netctl.mpc import MPCPlan

CHANNEL = "fedchain"
CHAINCODE = "fedchain"
SETTINGS_FILE = "fabric.json"
ENDORSEMENT_POLICY_REF = "/Channel/Application/Endorsement"  # MAJORITY Endorsement (configtx)


@dataclass
class FabricSettings:
    """Every port is configurable; defaults follow Fabric's test-network (7050, 7051/8051/9051...).

    `from_base_port(B)` moves every listener into one block from B instead (the MPC nodes at
    B+10.. and B+20.., as on the embedded network). `mode` is native (processes on this host)
    or compose (generated Docker Compose files).
    """

    orgs: list[str] = field(default_factory=lambda: ["Org1", "Org2", "Org3"])
    host: str = "127.0.0.1"
    orderer_port: int = 7050
    orderer_admin_port: int = 7053
    orderer_operations_port: int = 9443
    peer_base_port: int = 7051  # peer i listens on base + 1000*i, its chaincode listener on +1
    peer_port_step: int = 1000
    peer_operations_base_port: int = 9444  # peer i: base + i
    chaincode_port: int = 9999  # org i's chaincode server listens on this + i
    channel: str = CHANNEL
    chaincode: str = CHAINCODE
    chaincode_label: str = "fedchain_1.0"
    chaincode_version: str = "1.0"
    chaincode_sequence: int = 1
    chaincode_tls: bool = True
    batch_timeout: str = "100ms"
    max_message_count: int = 100
    chaincode_command: list[str] | None = None  # default: this Python's `-m fedchain_cc --chaincode <name>`
    mpc_nodes: int = 3  # wallet identities mpc0.., listed in InitConsortium
    with_mpc: bool = True  # run the MPC node services (node i: intake mpc_intake_port + i, MPyC party mpc_party_port + i)
    mpc_intake_port: int = 7060
    mpc_party_port: int = 7070
    mpc_command: list[str] | None = None  # default: this Python's `-m fedchain_mpc` (+ --config D/mpc/node<i>.json)
    min_accepted: int = 3  # the consortium's privacy floor (InitConsortium)
    endorsement_policy: str = "MAJORITY"  # of the FL chaincode: MAJORITY, ANY, ALL or MSP ids (netctl.policy)
    mode: str = "native"  # native | compose
    # per-component hosts (native mode; each defaults to `host`): where others reach the orderer, peer i
    # (and org i's chaincode server, which its peer dials), MPC node i; each listener binds its own address
    orderer_host: str | None = None
    peer_hosts: list[str] | None = None
    mpc_hosts: list[str] | None = None
    # argv prefix per process name (orderer, peer0.org1..., chaincode.org1..., mpc0...), e.g. ["ip", "netns",
    # "exec", NS] to start each component inside its own network namespace (tests/multihost_test.py)
    launch: dict[str, list[str]] | None = None

    def orderer_address(self) -> str:
        return self.orderer_host or self.host

    def peer_address(self, i: int) -> str:
        return self.peer_hosts[i] if self.peer_hosts and i < len(self.peer_hosts) else self.host

    def port_host(self, owner: str) -> str:
        """The host a listener of ports() (by owner) binds."""
        if owner.startswith("orderer"):
            return self.orderer_address()
        for i, org in enumerate(self.orgs):
            if owner.startswith((f"peer0.{org.lower()}", f"chaincode server {org.lower()}", f"chaincode.{org.lower()}")):
                return self.peer_address(i)
        if owner.startswith("mpc"):
            return self.mpc_plan().host_of(int(owner[3:].split()[0])).bind
        return self.host

    def launch_prefix(self, name: str) -> list[str]:
        return list((self.launch or {}).get(name, []))

    @classmethod
    def from_base_port(cls, base: int, **kwargs: object) -> FabricSettings:
        """Every listener in one block from `base` (see network/fabric/README.md, "Ports"):
        MPC intake base+10+j, MPyC parties base+20+j, orderer / admin / operations base+30..32,
        chaincode server of org i base+40+i, peer operations base+50+i, peer base+60+2i (+1: its
        chaincode listener)."""
        ports: dict[str, object] = {
            "mpc_intake_port": base + 10, "mpc_party_port": base + 20, "orderer_port": base + 30,
            "orderer_admin_port": base + 31, "orderer_operations_port": base + 32, "chaincode_port": base + 40,
            "peer_operations_base_port": base + 50, "peer_base_port": base + 60, "peer_port_step": 2,
        }
        return cls(**{**ports, **kwargs})  # type: ignore[arg-type]

    def mpc_plan(self) -> MPCPlan:
        hosts = tuple(HostAddress(h, h) for h in self.mpc_hosts or ())
        return MPCPlan(self.mpc_nodes if self.with_mpc else 0, self.mpc_intake_port, self.mpc_party_port, self.host,
                       hosts=hosts)

    def consortium_plan(self) -> ConsortiumPlan:
        return ConsortiumPlan(mpc_nodes=self.mpc_nodes, min_accepted=self.min_accepted)

    def peer_port(self, i: int) -> int:
        return self.peer_base_port + self.peer_port_step * i

    def peer_chaincode_port(self, i: int) -> int:
        return self.peer_port(i) + 1

    def peer_operations_port(self, i: int) -> int:
        return self.peer_operations_base_port + i

    def chaincode_server_port(self, i: int) -> int:
        return self.chaincode_port + i

    def ports(self) -> dict[str, int]:
        """Every listener by owner, for the pre-flight check and the docs."""
        out = {
            "orderer": self.orderer_port,
            "orderer admin": self.orderer_admin_port,
            "orderer operations": self.orderer_operations_port,
        }
        for i, org in enumerate(self.orgs):
            out[f"chaincode server {org.lower()}"] = self.chaincode_server_port(i)
            out[f"peer0.{org.lower()}"] = self.peer_port(i)
            out[f"peer0.{org.lower()} chaincode listener"] = self.peer_chaincode_port(i)
            out[f"peer0.{org.lower()} operations"] = self.peer_operations_port(i)
        return out | self.mpc_plan().ports()

    def validate(self) -> None:
        ports = self.ports()
        seen: dict[int, str] = {}
        for owner, port in ports.items():
            if not 0 < port < 65536:
                raise ValueError(f"{owner}: port {port} out of range")
            if port in seen:
                raise ValueError(f"port {port} used twice ({seen[port]} and {owner})")
            seen[port] = owner
        if not self.orgs or len(set(self.orgs)) != len(self.orgs):
            raise ValueError("need at least one organisation, with distinct names")
        if self.peer_hosts is not None and len(self.peer_hosts) != len(self.orgs):
            raise ValueError(f"peer_hosts lists {len(self.peer_hosts)} hosts for {len(self.orgs)} organisations")
        if self.mpc_hosts is not None and len(self.mpc_hosts) != self.mpc_nodes:
            raise ValueError(f"mpc_hosts lists {len(self.mpc_hosts)} hosts for {self.mpc_nodes} MPC nodes")
        if self.mode not in ("native", "compose"):
            raise ValueError(f"mode must be native or compose, not {self.mode!r}")
        from fedchain.netctl.policy import parse_policy

        parse_policy(self.endorsement_policy, [f"{o}MSP" for o in self.orgs])

    # --- persistence -----------------------------------------------------------
    @classmethod
    def load(cls, directory: Path) -> FabricSettings | None:
        path = Path(directory) / SETTINGS_FILE
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text()))

    def save(self, directory: Path) -> Path:
        path = Path(directory) / SETTINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path
