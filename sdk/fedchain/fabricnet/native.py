"""A real Fabric 2.5 network on one host from the release binaries: the "fabric" NetworkBackend.

Order of `up` (each one-time step is recorded in D/fabric-state.json, so a restart only
starts processes and the ledgers in D/ledger are reused):
  pre-flight (binaries, configs, builder, ports) -> crypto + wallet -> configs (Fabric and
  MPC nodes) -> orderer -> channel block + osnadmin join -> peers -> peer channel join ->
  ccaas package install (each org its own package, pointing at its own chaincode server) ->
  one chaincode server per org -> approve (every org, its own package id, the endorsement
  policy) -> commit -> Raft leader, gossip and discovery ready -> network.json ->
  InitConsortium (once) -> MPC nodes.
Each org endorses with a chaincode process of its own, so a MAJORITY endorsement really
means independent executions, as it would across organisations' hosts.
On a partly running network `up` starts only what is down. If a step fails, every process
that call started is stopped again and the error names the step and the log to read.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fedchain.fabricnet import ccaas, configtx, node_env
from fedchain.fabricnet.layout import FabricLayout, StateFile
from fedchain.fabricnet.lifecycle import AdminSteps, clean_env
from fedchain.fabricnet.preflight import FabricTools, preflight
from fedchain.fabricnet.procs import CommandError, PortService
from fedchain.fabricnet.readiness import wait_until_usable
from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium, Org, Wallet, enroll_default_identities, generate_consortium
from fedchain.netconfig import write_network
from fedchain.netctl import supervisor
from fedchain.netctl.consortium import bootstrap_ledger
from fedchain.netctl.mpc import network_entries, node_services, write_node_configs
from fedchain.netctl.process import NetworkError, Service, ServiceError, python_module

Progress = Callable[[str], None]
Bootstrap = Callable[[Path], object]


def chaincode_host(org: Org) -> str:
    """Host name of an org's chaincode server (its TLS name; its container name in Compose mode)."""
    return f"chaincode.{org.domain}"


def chaincode_service(org: Org) -> str:
    return f"chaincode.{org.name.lower()}"


class FabricNetworkError(NetworkError):
    """A step of `up` failed; everything started by that call was stopped again."""


class FabricNetwork:
    """NetworkBackend of kind "fabric": orderer, one peer and one chaincode server per org, MPC nodes."""

    kind = "fabric"

    def __init__(self, directory: str | Path, settings: FabricSettings | None = None,
                 tools: FabricTools | None = None, *, bootstrap: Bootstrap | None = None) -> None:
        """bootstrap(D) replaces InitConsortium through D/network.json (tests without a real ledger)."""
        self.layout = FabricLayout(Path(directory).resolve())
        self.store = StateFile(self.layout.state_file)
        saved = FabricSettings.load(self.layout.root)
        self.settings = saved or settings or FabricSettings()
        self.tools = tools or self._saved_tools() or FabricTools.from_env()
        self._bootstrap = bootstrap or (lambda root: bootstrap_ledger(root, self.settings.consortium_plan()))

    @property
    def root(self) -> Path:
        return self.layout.root

    def _saved_tools(self) -> FabricTools | None:
        """The release `up` used, so `down`/`status` work in a shell without FABRIC_BIN."""
        env_tools = FabricTools.from_env()
        saved = self.store.get("tools")
        if env_tools.bin_dir is not None or not saved:
            return None
        return FabricTools(*(Path(saved[k]) if saved.get(k) else None for k in ("bin_dir", "cfg_dir", "ccaas_builder")))

    def state(self) -> dict[str, Any]:
        """The one-time steps done so far (D/fabric-state.json)."""
        return self.store.read()

    # --- identities and node settings -------------------------------------------
    def consortium(self) -> Consortium:
        if (self.layout.crypto / "consortium.json").is_file():
            return Consortium.load(self.layout.crypto)
        return generate_consortium(self.layout.crypto, self.settings.orgs)

    def _existing_consortium(self) -> Consortium | None:
        return Consortium.load(self.layout.crypto) if (self.layout.crypto / "consortium.json").is_file() else None

    def orderer_env(self, consortium: Consortium) -> dict[str, str]:
        return node_env.orderer_env(consortium.orderer, self.settings, cfg_dir=self.layout.orderer_cfg,
                                    ledger_dir=self.layout.ledger / "orderer")

    def peer_env(self, consortium: Consortium, i: int) -> dict[str, str]:
        org = consortium.orgs[i]
        return node_env.peer_env(org, i, self.settings, cfg_dir=self.layout.peer_cfg(org.node_name),
                                 ledger_dir=self.layout.ledger / org.node_name)

    def chaincode_env(self, consortium: Consortium, i: int, package_id: str) -> dict[str, str]:
        env = {
            "CHAINCODE_ID": package_id,
            # on its peer's host: the peer dials it there
            "CHAINCODE_SERVER_ADDRESS": f"{self.settings.peer_address(i)}:{self.settings.chaincode_server_port(i)}",
        }
        if self.settings.chaincode_tls:
            cert, key = self._chaincode_tls(consortium, consortium.orgs[i])
            env |= {"CHAINCODE_TLS_CERT": str(cert), "CHAINCODE_TLS_KEY": str(key)}
        return env

    def _chaincode_tls(self, consortium: Consortium, org: Org) -> tuple[Path, Path]:
        """The org's chaincode server certificate, from the org's own TLS CA."""
        i = [o.msp_id for o in consortium.orgs].index(org.msp_id)
        hosts = ("localhost", self.settings.host, chaincode_host(org))
        if self.settings.peer_address(i) != self.settings.host:
            hosts += (self.settings.peer_address(i),)
        return consortium.issue_tls(org.msp_id, "chaincode", hosts=hosts)

    def _node_tls(self, consortium: Consortium) -> None:
        """Orderer and peer TLS certificates that name the hosts they are placed on (when not `host`)."""
        s = self.settings
        placed = [(consortium.orderer, s.orderer_address())] + [
            (org, s.peer_address(i)) for i, org in enumerate(consortium.orgs)]
        for org, address in placed:
            if address != s.host:
                consortium.issue_node_tls(org, ("localhost", "127.0.0.1", address))

    # --- services ------------------------------------------------------------------
    def services(self, consortium: Consortium | None = None) -> list[Service]:
        """In start order: orderer, peers, one chaincode server per org (once installed), MPC nodes."""
        consortium = consortium or self._existing_consortium()
        if consortium is None:
            return []
        s, lay = self.settings, self.layout
        env = clean_env()
        out: list[Service] = [PortService(
            "orderer", [*s.launch_prefix("orderer"), str(self.tools.binary("orderer"))], lay.run, lay.logs,
            {**env, **self.orderer_env(consortium)},
            ports=(s.orderer_port, s.orderer_admin_port, s.orderer_operations_port), host=s.orderer_address(),
            ready_ports=(s.orderer_port, s.orderer_admin_port), ready_host=s.orderer_address(), inherit_env=False,
        )]
        for i, org in enumerate(consortium.orgs):
            out.append(PortService(
                org.node_name, [*s.launch_prefix(org.node_name), str(self.tools.binary("peer")), "node", "start"],
                lay.run, lay.logs, {**env, **self.peer_env(consortium, i)},
                ports=(s.peer_port(i), s.peer_chaincode_port(i), s.peer_operations_port(i)), host=s.peer_address(i),
                ready_ports=(s.peer_port(i),), ready_host=s.peer_address(i), inherit_env=False,
            ))
        package_ids = self.store.get("package_ids") or {}
        argv = s.chaincode_command or python_module("fedchain_cc", "--chaincode", s.chaincode)
        for i, org in enumerate(consortium.orgs):
            if org.msp_id in package_ids:
                out.append(Service(chaincode_service(org), [*s.launch_prefix(chaincode_service(org)), *argv],
                                   lay.run, lay.logs,
                                   {**env, **self.chaincode_env(consortium, i, package_ids[org.msp_id])},
                                   ports=(s.chaincode_server_port(i),), host=s.peer_address(i), inherit_env=False))
        return out + self._mpc_services()

    def _mpc_services(self) -> list[Service]:
        s = self.settings
        return [dataclasses.replace(svc, argv=[*s.launch_prefix(svc.name), *svc.argv])
                for svc in node_services(self.layout.root, s.mpc_plan(), s.mpc_command)]

    # --- configs ------------------------------------------------------------------
    def write_configs(self, consortium: Consortium) -> dict[str, tuple[Path, str]]:
        """configtx.yaml, per-node config folders, each org's ccaas package ({msp_id: (package, package id)})
        and the MPC nodes' node.json files."""
        lay, s = self.layout, self.settings
        configtx.write_configtx(lay.configtx_dir, configtx.configtx(consortium, s))
        assert self.tools.cfg_dir is not None and self.tools.ccaas_builder is not None
        lay.orderer_cfg.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.tools.cfg_dir / "orderer.yaml", lay.orderer_cfg / "orderer.yaml")
        packages = {}
        for i, org in enumerate(consortium.orgs):
            node_env.write_core_yaml(self.tools.cfg_dir / "core.yaml", lay.peer_cfg(org.node_name),
                                     str(self.tools.ccaas_builder))
            root_pem = None
            if s.chaincode_tls:
                self._chaincode_tls(consortium, org)
                root_pem = org.tls_ca_cert_path.read_bytes()
            conn = ccaas.connection_json(f"{s.peer_address(i)}:{s.chaincode_server_port(i)}", tls_root_cert_pem=root_pem)
            packages[org.msp_id] = ccaas.write_package(lay.chaincode_dir / org.name.lower(), s.chaincode_label, conn)
        write_node_configs(lay.root, consortium, s.mpc_plan())
        return packages

    def enroll_defaults(self, consortium: Consortium) -> None:
        """Same wallet entries as the embedded network: operator, auditor, mpc0.. (hospitals are enrolled later)."""
        enroll_default_identities(consortium, Wallet(self.layout.wallet), self.settings.mpc_nodes)

    # --- lifecycle --------------------------------------------------------------------
    def up(self, progress: Progress = lambda m: None, ready_timeout: float = 60.0) -> list[str]:
        """Start whatever is down (everything on a new or stopped network); returns the names started.

        InitConsortium runs once, when the ledger is ready and network.json written, before the
        MPC nodes start; if it fails, what this call started is stopped and it runs again next `up`.
        """
        lay = self.layout
        services = self.services()
        missing = supervisor.announce(services, progress) if services else []
        if services and not missing:
            return []
        fresh = len(missing) == len(services)
        progress("pre-flight checks (binaries, configs, ccaas builder, ports)")
        preflight(self.settings, self.tools,
                  ports=None if fresh else {f"{svc.name}": p for svc in missing for p in svc.ports})
        self.settings.save(lay.root)
        self.store.mark(tools={k: str(v) for k, v in vars(self.tools).items()})
        progress("consortium identities")
        consortium = self.consortium()
        self._node_tls(consortium)
        self.enroll_defaults(consortium)
        progress("configs (configtx.yaml, core.yaml per peer, ccaas packages, MPC nodes)")
        packages = self.write_configs(consortium)
        with supervisor.rollback(progress) as started:
            try:
                self._bring_up(consortium, packages, started, progress, ready_timeout)
                if not self.store.get("bootstrapped"):
                    progress("bootstrapping the consortium on the ledger (InitConsortium)")
                    self._bootstrap(lay.root)
                    self.store.mark(bootstrapped=True)
                for svc in self._mpc_services():
                    supervisor.start_if_down(svc, started, progress, ready_timeout)
            except (CommandError, ServiceError) as exc:
                raise FabricNetworkError(f"{exc}\n(what this call started is stopped again: nothing half-started "
                                         f"is left running; ledger and configs kept in {lay.root})") from exc
        progress("ready")
        return [svc.name for svc in started]

    def _bring_up(self, consortium: Consortium, packages: dict[str, tuple[Path, str]], started: list[Service],
                  progress: Progress, timeout: float) -> None:
        admin = AdminSteps(self.settings, self.layout, self.tools, consortium, self.store)
        services = {svc.name: svc for svc in self.services(consortium)}
        supervisor.start_if_down(services["orderer"], started, progress, timeout)
        admin.create_channel(progress)
        for i, org in enumerate(consortium.orgs):
            supervisor.start_if_down(services[org.node_name], started, progress, timeout)
            admin.join(i, progress)
        for i, org in enumerate(consortium.orgs):
            package, package_id = packages[org.msp_id]
            admin.install(i, package, package_id, progress)
        self.store.mark(package_ids={m: p[1] for m, p in packages.items()})
        for svc in self.services(consortium):  # each org's peer talks to its own org's chaincode server
            if svc.name.startswith("chaincode."):
                supervisor.start_if_down(svc, started, progress, timeout)
        admin.approve_and_commit({m: p[1] for m, p in packages.items()}, progress)
        wait_until_usable(self.settings, consortium, str(self.layout.logs), progress, timeout)
        self.write_network_json(consortium)

    def write_network_json(self, consortium: Consortium) -> Path:
        s, lay = self.settings, self.layout
        org1 = consortium.orgs[0]
        return write_network(lay.root, {
            "kind": "fabric",
            "channel": s.channel,
            "chaincode": s.chaincode,
            "gateway": {"endpoint": f"{s.peer_address(0)}:{s.peer_port(0)}", "tls_root_cert": lay.rel(org1.tls_ca_cert_path),
                        "server_name": org1.node_name},
            "mpc_nodes": network_entries(s.mpc_plan(), consortium, lay.root),
            "orgs": [{"msp_id": o.msp_id, "tls_root_cert": lay.rel(o.tls_ca_cert_path),
                      "peer": f"{s.peer_address(i)}:{s.peer_port(i)}"} for i, o in enumerate(consortium.orgs)],
            "orderer": {"endpoint": f"{s.orderer_address()}:{s.orderer_port}",
                        "tls_root_cert": lay.rel(consortium.orderer.tls_ca_cert_path)},
            "wallet": "wallet",
            "crypto": "crypto",
        })

    def down(self) -> list[str]:
        """Stop every process (MPC nodes first); the ledgers stay in D/ledger."""
        return supervisor.stop_all(self.services())

    def status(self) -> dict[str, dict[str, Any]]:
        return supervisor.describe_all(self.services(), _component_kind)

    def lifecycle(self) -> dict[str, Any]:
        """Package ids and whether the chaincode definition is committed (for `status --json`)."""
        state = self.state()
        return {"package_ids": state.get("package_ids"), "chaincode_committed": bool(state.get("committed")),
                "endorsement_policy": self.settings.endorsement_policy}


def _component_kind(svc: Service) -> str:
    if svc.name.startswith("mpc"):
        return "mpc"
    return "chaincode" if svc.name.startswith("chaincode.") else "ledger"
