"""The embedded one-machine network: consortium, chaincode server, devnet, MPC nodes.

This is the launcher the CLI uses: it starts `fedchain_cc`, `fedchain_devnet` and `fedchain_mpc`
as processes, by module name, and talks to them through their config files (embedded_configs)
and READY lines; it never imports them (DESIGN.md §1: only fedchain.cli may). Everything
it starts runs in its own process group; its listeners bind 127.0.0.1 unless a hosts file
(netctl.hosts) places the ledger, the chaincode server and each MPC node on their own
hosts, in which case each host starts only its own part (`only=`). `down` stops them; `up`
again reuses the same folder, ports, identities and ledger, and on a partly running network
starts only what is down. One of the NetworkBackend implementations (netctl.backend).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedchain.identity import Consortium, Wallet, enroll_default_identities, generate_consortium
from fedchain.netctl import embedded_configs, supervisor
from fedchain.netctl.consortium import ConsortiumPlan, bootstrap_ledger
from fedchain.netctl.embedded_configs import CHAINCODE, CHANNEL, ConfigPlan
from fedchain.netctl.hosts import HostMap, endpoint
from fedchain.netctl.layout import NetworkLayout
from fedchain.netctl.mpc import MPCPlan, node_services
from fedchain.netctl.policy import parse_policy
from fedchain.netctl.process import Service, ServiceError, address_is_local, port_is_free, python_module

__all__ = ["CHAINCODE", "CHANNEL", "EmbeddedNetwork", "EmbeddedSettings"]

CHAINCODE_LABEL = "fedchain_1.0"
ORG_NAMES = ("Org1", "Org2", "Org3")
MPC_NODES = 3


@dataclass
class EmbeddedSettings:
    """Chosen at the first `up` and kept in D/embedded.json so restarts reuse them."""

    base_port: int = 7050
    orgs: list[str] = field(default_factory=lambda: list(ORG_NAMES))
    mpc_nodes: int = MPC_NODES
    endorsement_policy: str = "MAJORITY"
    batch_timeout_ms: int = 50
    max_message_count: int = 100
    with_mpc: bool = True
    min_accepted: int = 3  # the consortium's privacy floor (InitConsortium): no aggregate of fewer updates
    hosts: dict = field(default_factory=dict)  # netctl.hosts file contents; empty: everything on 127.0.0.1

    def host_map(self) -> HostMap:
        return HostMap.parse(self.hosts, self.mpc_nodes)

    @property
    def gateway_port(self) -> int:
        return self.base_port + 1

    @property
    def chaincode_port(self) -> int:
        return self.base_port + 2

    def mpc_intake_port(self, i: int) -> int:
        return self.base_port + 10 + i

    def mpc_party_port(self, i: int) -> int:
        return self.base_port + 20 + i

    def port_owners(self) -> dict[str, int]:
        """Every listener of a fresh start, by owner (MPyC party ports too: they must be free for rounds)."""
        out = {"devnet gateway": self.gateway_port, "chaincode": self.chaincode_port}
        return out | (self.mpc_plan().ports() if self.with_mpc else {})

    def ports(self) -> list[int]:
        return list(self.port_owners().values())

    def mpc_plan(self) -> MPCPlan:
        return MPCPlan(self.mpc_nodes if self.with_mpc else 0, self.base_port + 10, self.base_port + 20,
                       hosts=self.host_map().mpc)

    def validate(self) -> None:
        """ValueError before anything is written: a bad policy would otherwise be saved for every restart."""
        parse_policy(self.endorsement_policy, [f"{o}MSP" for o in self.orgs])
        self.host_map()
        if not self.orgs or len(set(self.orgs)) != len(self.orgs):
            raise ValueError("need at least one organisation, with distinct names")

    def consortium_plan(self) -> ConsortiumPlan:
        return ConsortiumPlan(name="fedchain embedded consortium", mpc_nodes=self.mpc_nodes,
                              min_accepted=self.min_accepted)


class EmbeddedNetwork:
    """NetworkBackend of kind "devnet": chaincode server, devnet, MPC nodes as local processes."""

    kind = "devnet"

    def __init__(self, directory: str | Path, settings: EmbeddedSettings | None = None,
                 only: list[str] | None = None) -> None:
        """`only`: the components this host runs (chaincode, devnet, mpc0, ...); None = all of them."""
        self.layout = NetworkLayout(Path(directory).resolve())
        saved = self._load_settings()
        self.settings = saved or settings or EmbeddedSettings()  # a restart keeps the first `up`'s choices
        self.only = only

    @property
    def root(self) -> Path:
        return self.layout.root

    # --- settings ------------------------------------------------------------
    def _load_settings(self) -> EmbeddedSettings | None:
        path = self.layout.state_file
        if not path.is_file():
            return None
        return EmbeddedSettings(**json.loads(path.read_text()))

    def _save_settings(self) -> None:
        """Atomically, and only when changed: hosts sharing a folder start their parts concurrently."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(asdict(self.settings), indent=2)
        path = self.layout.state_file
        if path.is_file() and path.read_text() == text:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        tmp.replace(path)

    def mpc_plan(self) -> MPCPlan:
        return self.settings.mpc_plan()

    # --- services ------------------------------------------------------------
    def _service(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 ports: tuple[int, ...] = (), host: str = "127.0.0.1") -> Service:
        return Service(name, argv, self.layout.run, self.layout.logs, env, ports=ports, host=host)

    def services(self) -> list[Service]:
        """In start order (chaincode, devnet, mpc0..); stopped in reverse."""
        s = self.settings
        lay = self.layout
        hosts = s.host_map()
        cc_env = {
            "CHAINCODE_ID": f"{CHAINCODE_LABEL}:embedded",
            "CHAINCODE_SERVER_ADDRESS": endpoint(hosts.chaincode.bind, s.chaincode_port),
            "CHAINCODE_TLS_CERT": str(lay.root / "chaincode-tls" / "server.crt"),
            "CHAINCODE_TLS_KEY": str(lay.root / "chaincode-tls" / "server.key"),
        }
        if not hosts.is_loopback:  # reachable from other hosts: only the devnet (its TLS client cert) may drive it
            cc_env["CHAINCODE_TLS_CLIENT_CA"] = str(lay.root / "chaincode-tls" / "client-ca.crt")
        return [
            self._service("chaincode", python_module("fedchain_cc", "--chaincode", CHAINCODE), cc_env,
                          ports=(s.chaincode_port,), host=hosts.chaincode.bind),
            self._service("devnet", python_module("fedchain_devnet", "--config", str(lay.root / "devnet.json")),
                          ports=(s.gateway_port,), host=hosts.ledger.bind),
            *node_services(lay.root, self.mpc_plan()),
        ]

    def local_services(self) -> list[Service]:
        """The services this host runs (all, unless `only` names some)."""
        services = self.services()
        if self.only is None:
            return services
        names = [svc.name for svc in services]
        unknown = [n for n in self.only if n not in names]
        if unknown:
            raise ServiceError(f"unknown component(s) {', '.join(unknown)}; this network has {', '.join(names)}")
        return [svc for svc in services if svc.name in self.only]

    # --- lifecycle -----------------------------------------------------------
    def consortium(self) -> Consortium:
        if (self.layout.crypto / "consortium.json").is_file():
            return Consortium.load(self.layout.crypto)
        return generate_consortium(self.layout.crypto, self.settings.orgs)

    def up(self, progress: Callable[[str], None] = lambda msg: None, ready_timeout: float = 90.0) -> list[str]:
        """Start whatever is down (everything on a new or stopped network); returns the names started.

        What already runs is left alone; the consortium is bootstrapped once, before the MPC
        nodes start (they wait for it). If a start fails, what this call started is stopped again.
        """
        try:
            self.settings.validate()
        except ValueError as exc:
            raise ServiceError(str(exc)) from None
        services = self.local_services()
        missing = supervisor.announce(services, progress)
        if not missing:
            return []
        fresh = len(missing) == len(services)
        if fresh and self.only is None and self.settings.host_map().is_loopback:
            busy = [f"{p} ({owner})" for owner, p in self.settings.port_owners().items()
                    if not port_is_free("127.0.0.1", p)]
        else:
            busy = supervisor.busy_ports(missing)
        elsewhere = [f"{svc.name} ({svc.host})" for svc in missing if not address_is_local(svc.host)]
        if elsewhere:
            raise ServiceError(f"{', '.join(elsewhere)}: not an address of this host; start each component on its "
                               "own host (`fedchain network up --only NAME`)")
        if busy:
            where = ", ".join(sorted({svc.host for svc in missing}))
            raise ServiceError(f"ports already in use on {where}: {', '.join(busy)}; "
                               + ("choose another --base-port" if fresh else "stop what holds them, then `up` again"))
        self._save_settings()
        if self.only is None or not (self.layout.root / "network.json").is_file():
            progress("consortium identities")
            consortium = self.consortium()
            enroll_default_identities(consortium, Wallet(self.layout.wallet), self.settings.mpc_nodes)
            progress("service configuration")
            self._write_configs(consortium)
        mpc = {svc.name for svc in node_services(self.root, self.mpc_plan())}
        with supervisor.rollback(progress) as started:
            for svc in services:
                if svc.name not in mpc:
                    supervisor.start_if_down(svc, started, progress, ready_timeout)
            # before the MPC nodes: they wait for it (a host without the ledger leaves it to the ledger's host)
            if ("devnet" in {svc.name for svc in services}
                    and bootstrap_ledger(self.root, self.settings.consortium_plan())):
                progress("consortium initialised on the ledger (MPC nodes, threshold, quorum, default policy)")
            for svc in services:
                if svc.name in mpc:
                    supervisor.start_if_down(svc, started, progress, ready_timeout)
        progress("ready")
        return [svc.name for svc in started]

    def down(self) -> list[str]:
        """Stop every service; they shut down gracefully in parallel (each may take its grace period)."""
        return supervisor.stop_all(self.local_services())

    def status(self) -> dict[str, dict[str, Any]]:
        return supervisor.describe_all(self.services(), lambda svc: "mpc" if svc.name.startswith("mpc") else "ledger")

    # --- pieces ----------------------------------------------------------------
    def config_plan(self) -> ConfigPlan:
        """The settings the config files need, as plain values (embedded_configs never sees this class)."""
        s = self.settings
        return ConfigPlan(layout=self.layout, hosts=s.host_map(), gateway_port=s.gateway_port,
                          chaincode_port=s.chaincode_port, endorsement_policy=s.endorsement_policy,
                          batch_timeout_ms=s.batch_timeout_ms, max_message_count=s.max_message_count,
                          mpc=self.mpc_plan() if s.with_mpc else None)

    def _write_configs(self, consortium: Consortium) -> None:
        embedded_configs.write_all(self.config_plan(), consortium)

