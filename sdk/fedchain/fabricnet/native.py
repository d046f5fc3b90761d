"""Bring a real Fabric 2.5 network up on one host from the release binaries, and down again.

Order of `up` (each one-time step is recorded in D/fabric-state.json, so a restart only
starts processes and the ledgers in D/ledger are reused):
  pre-flight (binaries, configs, builder, ports) -> crypto + wallet -> configs ->
  orderer -> channel block + osnadmin join -> peers -> peer channel join ->
  ccaas package install (each org its own package, pointing at its own chaincode server) ->
  one chaincode server per org -> approve (every org, its own package id) -> commit ->
  gossip and discovery ready -> network.json -> extra services (MPC nodes).
Each org endorses with a chaincode process of its own, so a MAJORITY endorsement really
means independent executions, as it would across organisations' hosts.
If any step fails, every process this call started is stopped again (SIGTERM, then
SIGKILL) and the error names the step and the log to read.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedchain.fabricnet import ccaas, configtx, node_env
from fedchain.fabricnet.discovery import endorsement_plan
from fedchain.fabricnet.layout import FabricLayout
from fedchain.fabricnet.preflight import FabricTools, preflight
from fedchain.fabricnet.procs import (
    CommandError,
    PortService,
    gossip_peers_known,
    raft_leader_elected,
    run_command,
)
from fedchain.fabricnet.settings import ENDORSEMENT_POLICY_REF, FabricSettings
from fedchain.identity import Consortium, Org, Wallet, enroll_default_identities, generate_consortium
from fedchain.netconfig import write_network
from fedchain.netctl.process import Service, ServiceError, python_module

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ExtraService:
    """A process started after the ledger is ready (e.g. an MPC node), with the READY-line handshake.

    Kept in D/fabric-state.json, so `down`, `status` and restarts handle it like the Fabric nodes;
    `env` is stored there in clear, so it names key files, never key material.
    """

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


def chaincode_host(org: Org) -> str:
    """Host name of an org's chaincode server (its TLS name; its container name in Compose mode)."""
    return f"chaincode.{org.domain}"


def chaincode_service(org: Org) -> str:
    return f"chaincode.{org.name.lower()}"


class FabricNetworkError(RuntimeError):
    """A step of `up` failed; everything started by that call was stopped again."""


def _clean_env() -> dict[str, str]:
    """The caller's environment without stray Fabric overrides that would change our nodes."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CORE_", "ORDERER_", "FABRIC_CFG_PATH", "CHAINCODE_"))}


class FabricNetwork:
    def __init__(self, directory: str | Path, settings: FabricSettings | None = None,
                 tools: FabricTools | None = None) -> None:
        self.layout = FabricLayout(Path(directory).resolve())
        saved = FabricSettings.load(self.layout.root)
        self.settings = saved or settings or FabricSettings()
        self.tools = tools or self._saved_tools() or FabricTools.from_env()

    def _saved_tools(self) -> FabricTools | None:
        """The release `up` used, so `down`/`status` work in a shell without FABRIC_BIN."""
        env_tools = FabricTools.from_env()
        saved = self.state().get("tools")
        if env_tools.bin_dir is not None or not saved:
            return None
        return FabricTools(*(Path(saved[k]) if saved.get(k) else None for k in ("bin_dir", "cfg_dir", "ccaas_builder")))

    # --- state of one-time steps ------------------------------------------------
    def state(self) -> dict[str, Any]:
        path = self.layout.state_file
        return json.loads(path.read_text()) if path.is_file() else {}

    def _mark(self, **values: Any) -> None:
        state = {**self.state(), **values}
        tmp = self.layout.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.layout.state_file)

    # --- services --------------------------------------------------------------
    def consortium(self) -> Consortium:
        if (self.layout.crypto / "consortium.json").is_file():
            return Consortium.load(self.layout.crypto)
        return generate_consortium(self.layout.crypto, self.settings.orgs)

    def _peer_ledger(self, org: Org) -> Path:
        return self.layout.ledger / org.node_name

    def orderer_env(self, consortium: Consortium) -> dict[str, str]:
        return node_env.orderer_env(consortium.orderer, self.settings, cfg_dir=self.layout.orderer_cfg,
                                    ledger_dir=self.layout.ledger / "orderer")

    def peer_env(self, consortium: Consortium, i: int) -> dict[str, str]:
        org = consortium.orgs[i]
        return node_env.peer_env(org, i, self.settings, cfg_dir=self.layout.peer_cfg(org.node_name),
                                 ledger_dir=self._peer_ledger(org))

    def admin_env(self, consortium: Consortium, i: int) -> dict[str, str]:
        org = consortium.orgs[i]
        return {**_clean_env(), **node_env.admin_cli_env(org, i, self.settings,
                                                         cfg_dir=self.layout.peer_cfg(org.node_name))}

    def chaincode_env(self, consortium: Consortium, i: int, package_id: str) -> dict[str, str]:
        env = {
            "CHAINCODE_ID": package_id,
            "CHAINCODE_SERVER_ADDRESS": f"{self.settings.host}:{self.settings.chaincode_server_port(i)}",
        }
        if self.settings.chaincode_tls:
            cert, key = self._chaincode_tls(consortium, consortium.orgs[i])
            env |= {"CHAINCODE_TLS_CERT": str(cert), "CHAINCODE_TLS_KEY": str(key)}
        return env

    def _chaincode_tls(self, consortium: Consortium, org: Org) -> tuple[Path, Path]:
        """The org's chaincode server certificate, from the org's own TLS CA."""
        return consortium.issue_tls(org.msp_id, "chaincode",
                                    hosts=("localhost", self.settings.host, chaincode_host(org)))

    def services(self, consortium: Consortium) -> list[Service]:
        """In start order (orderer, peers, one chaincode server per org, extras); stopped in reverse."""
        s, lay = self.settings, self.layout
        env = _clean_env()
        out: list[Service] = [PortService(
            "orderer", [str(self.tools.binary("orderer"))], lay.run, lay.logs, {**env, **self.orderer_env(consortium)},
            ready_ports=(s.orderer_port, s.orderer_admin_port), ready_host=s.host,
        )]
        for i, org in enumerate(consortium.orgs):
            out.append(PortService(
                org.node_name, [str(self.tools.binary("peer")), "node", "start"], lay.run, lay.logs,
                {**env, **self.peer_env(consortium, i)}, ready_ports=(s.peer_port(i),), ready_host=s.host,
            ))
        package_ids = self.state().get("package_ids") or {}
        argv = s.chaincode_command or python_module("fedchain_cc", "--chaincode", s.chaincode)
        for i, org in enumerate(consortium.orgs):
            if org.msp_id in package_ids:
                out.append(Service(chaincode_service(org), list(argv), lay.run, lay.logs,
                                   {**env, **self.chaincode_env(consortium, i, package_ids[org.msp_id])}))
        out += [Service(e["name"], list(e["argv"]), lay.run, lay.logs, {**env, **e.get("env", {})})
                for e in self.state().get("extra_services", [])]
        return out

    # --- configs ------------------------------------------------------------------
    def write_configs(self, consortium: Consortium) -> dict[str, tuple[Path, str]]:
        """configtx.yaml, per-node config folders and each org's ccaas package: {msp_id: (package, package id)}."""
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
            conn = ccaas.connection_json(f"{s.host}:{s.chaincode_server_port(i)}", tls_root_cert_pem=root_pem)
            packages[org.msp_id] = ccaas.write_package(lay.chaincode_dir / org.name.lower(), s.chaincode_label, conn)
        return packages

    def enroll_defaults(self, consortium: Consortium) -> None:
        """Same wallet entries as the embedded network: operator, auditor, mpc0.. (hospitals are enrolled later)."""
        enroll_default_identities(consortium, Wallet(self.layout.wallet), self.settings.mpc_nodes)

    # --- lifecycle --------------------------------------------------------------------
    def up(self, progress: Progress = lambda m: None, ready_timeout: float = 60.0, *,
           extra_services: list[ExtraService] | None = None, mpc_nodes: list[dict] | None = None,
           bootstrap: Callable[[Path], None] | None = None) -> None:
        """extra_services / mpc_nodes (network.json entries): given once, remembered for restarts.

        bootstrap(D) runs once, when the ledger is ready and network.json written, before the extra
        services start (the embedded network's order: InitConsortium, then the MPC nodes); if it
        fails, what this call started is stopped and it runs again on the next `up`.
        """
        lay = self.layout
        consortium_exists = (lay.crypto / "consortium.json").is_file()
        if consortium_exists:
            running = [svc.name for svc in self.services(Consortium.load(lay.crypto)) if svc.running()]
            if running:
                raise FabricNetworkError(f"Fabric network in {lay.root} is already running ({', '.join(running)}); "
                                         f"use `fedchain network status` or `down` first")
        if extra_services is not None:
            names = [e.name for e in extra_services]
            reserved = [n for n in names if n == "orderer" or n.startswith(("chaincode.", "peer"))]
            if len(set(names)) != len(names) or reserved:
                raise ValueError(f"extra service names must be unique and not orderer, peer*, chaincode.*: {names}")
        progress("pre-flight checks (binaries, configs, ccaas builder, ports)")
        preflight(self.settings, self.tools)
        self.settings.save(lay.root)
        self._mark(tools={k: str(v) for k, v in vars(self.tools).items()})
        if extra_services is not None:
            self._mark(extra_services=[asdict(e) for e in extra_services])
        if mpc_nodes is not None:
            self._mark(mpc_nodes=list(mpc_nodes))
        progress("consortium identities")
        consortium = self.consortium()
        self.enroll_defaults(consortium)
        progress("configs (configtx.yaml, core.yaml per peer, ccaas package)")
        packages = self.write_configs(consortium)
        started: list[Service] = []
        try:
            self._bring_up(consortium, packages, started, progress, ready_timeout)
            if bootstrap is not None and not self.state().get("bootstrapped"):
                progress("bootstrapping the consortium on the ledger")
                bootstrap(lay.root)
                self._mark(bootstrapped=True)
            n_core = 1 + 2 * len(consortium.orgs)  # orderer, peers, chaincode servers
            for svc in self.services(consortium)[n_core:]:  # extra services (MPC nodes) last
                self._start(svc, started, progress, ready_timeout)
        except BaseException as exc:  # Ctrl-C included: nothing half-started is left behind
            progress("failed: stopping what this call started")
            for svc in reversed(started):
                svc.stop()
            if isinstance(exc, (CommandError, ServiceError)):
                raise FabricNetworkError(f"{exc}\n(nothing left running; ledger and configs kept in {lay.root})"
                                         ) from exc
            raise
        progress("ready")

    def _start(self, svc: Service, started: list[Service], progress: Progress, timeout: float) -> None:
        progress(f"starting {svc.name}")
        started.append(svc)  # before start: a timed-out start is stopped too
        svc.start(ready_timeout=timeout)

    def _bring_up(self, consortium: Consortium, packages: dict[str, tuple[Path, str]], started: list[Service],
                  progress: Progress, timeout: float) -> None:
        s, lay = self.settings, self.layout
        services = {svc.name: svc for svc in self.services(consortium)}
        self._start(services["orderer"], started, progress, timeout)
        if not self.state().get("orderer_joined"):
            progress(f"channel {s.channel}: genesis block (configtxgen) and orderer join (osnadmin)")
            self._create_channel(consortium)
            self._mark(orderer_joined=True)
        for i, org in enumerate(consortium.orgs):
            self._start(services[org.node_name], started, progress, timeout)
            if not self.state().get(f"joined:{org.node_name}"):
                progress(f"{org.node_name} joins {s.channel}")
                self._peer(i, consortium, ["channel", "join", "-b", str(lay.channel_block)], "peer channel join")
                self._mark(**{f"joined:{org.node_name}": True})
        for i, org in enumerate(consortium.orgs):
            package, package_id = packages[org.msp_id]
            if self.state().get(f"installed:{org.node_name}") != package_id:
                progress(f"install {org.msp_id}'s ccaas package on {org.node_name}")
                self._install(i, consortium, package, package_id)
                self._mark(**{f"installed:{org.node_name}": package_id})
        self._mark(package_ids={m: p[1] for m, p in packages.items()})
        for svc in self.services(consortium):  # each org's peer talks to its own org's chaincode server
            if svc.name.startswith("chaincode."):
                self._start(svc, started, progress, timeout)
        if not self.state().get("committed"):
            self._approve_and_commit(consortium, {m: p[1] for m, p in packages.items()}, progress)
            self._mark(committed=True)
        self._wait_for_raft_leader(progress, timeout)
        self._wait_for_gossip(consortium, progress, timeout)
        self._wait_for_endorsement_plan(consortium, progress, timeout)
        self.write_network_json(consortium)

    def _wait_for_raft_leader(self, progress: Progress, timeout: float) -> None:
        """After a restart the orderer refuses transactions until it has elected itself Raft leader."""
        s = self.settings
        progress(f"waiting for the orderer to lead {s.channel}'s Raft cluster")
        deadline = time.monotonic() + timeout
        while not raft_leader_elected(s.host, s.orderer_operations_port, s.channel):
            if time.monotonic() > deadline:
                raise CommandError(f"the orderer elected no Raft leader for {s.channel} within {timeout:.0f} s; "
                                   f"see {self.layout.logs / 'orderer.log'}")
            time.sleep(0.25)

    def _wait_for_gossip(self, consortium: Consortium, progress: Progress, timeout: float) -> None:
        """Every peer must know every other org's peer before the gateway can collect a MAJORITY."""
        s, want = self.settings, len(consortium.orgs) - 1
        if want == 0:
            return
        progress("waiting for the peers to find each other (gossip via anchor peers)")
        deadline = time.monotonic() + timeout
        while True:
            known = [gossip_peers_known(s.host, s.peer_operations_port(i), s.channel)
                     for i in range(len(consortium.orgs))]
            if all(k is not None and k >= want for k in known):
                return
            if time.monotonic() > deadline:
                raise CommandError(f"peers did not discover each other within {timeout:.0f} s (peers known per "
                                   f"peer: {known}, expected {want}); check the anchor peers and the peer logs in "
                                   f"{self.layout.logs}")
            time.sleep(0.5)

    def _wait_for_endorsement_plan(self, consortium: Consortium, progress: Progress, timeout: float) -> None:
        """Ask every peer's discovery service what its gateway will ask: can `fedchain` be endorsed?"""
        s = self.settings
        progress(f"waiting until discovery can plan endorsements of {s.chaincode} on every peer")
        signer = consortium.orgs[0].admin_identity
        deadline = time.monotonic() + timeout
        for i, org in enumerate(consortium.orgs):
            while True:
                plan = endorsement_plan(f"{s.host}:{s.peer_port(i)}", org.tls_ca_cert_path.read_bytes(),
                                        org.node_name, signer, s.channel, s.chaincode)
                if plan.ready:
                    break
                if time.monotonic() > deadline:
                    raise CommandError(f"{org.node_name} cannot plan endorsements for {s.chaincode} after "
                                       f"{timeout:.0f} s: {plan.error or plan}; see {self.layout.logs}")
                time.sleep(0.5)

    # --- steps ----------------------------------------------------------------------
    def _cmd(self, argv: list[str], env: dict[str, str], what: str, timeout: float = 120.0) -> str:
        return run_command(argv, env, self.layout.setup_log, timeout=timeout, what=what)

    def _peer(self, i: int, consortium: Consortium, args: list[str], what: str) -> str:
        return self._cmd([str(self.tools.binary("peer")), *args], self.admin_env(consortium, i), what)

    def _orderer_tls_args(self, consortium: Consortium) -> list[str]:
        s = self.settings
        return ["-o", f"{s.host}:{s.orderer_port}", "--tls", "--cafile", str(consortium.orderer.tls_ca_cert_path)]

    def _create_channel(self, consortium: Consortium) -> None:
        s, lay = self.settings, self.layout
        lay.channel_block.parent.mkdir(parents=True, exist_ok=True)
        self._cmd(
            [str(self.tools.binary("configtxgen")), "-profile", configtx.PROFILE, "-channelID", s.channel,
             "-outputBlock", str(lay.channel_block), "-configPath", str(lay.configtx_dir)],
            {**_clean_env(), "FABRIC_CFG_PATH": str(lay.configtx_dir)}, "configtxgen (channel genesis block)",
        )
        admin = consortium.orderer.user_dir("Admin") / "tls"
        self._cmd(
            [str(self.tools.binary("osnadmin")), "channel", "join", "--channelID", s.channel,
             "--config-block", str(lay.channel_block), "-o", f"{s.host}:{s.orderer_admin_port}",
             "--ca-file", str(consortium.orderer.tls_ca_cert_path),
             "--client-cert", str(admin / "client.crt"), "--client-key", str(admin / "client.key")],
            _clean_env(), "osnadmin channel join",
        )

    def _install(self, i: int, consortium: Consortium, package: Path, package_id: str) -> None:
        try:
            self._peer(i, consortium, ["lifecycle", "chaincode", "install", str(package)], "chaincode install")
        except CommandError as exc:
            if "already successfully installed" not in str(exc):
                raise
        out = self._peer(i, consortium, ["lifecycle", "chaincode", "calculatepackageid", str(package)],
                         "calculatepackageid")
        if package_id not in out:
            raise CommandError(f"the peer computes package id {out.strip()!r}, fedchain computed {package_id!r}")

    def _definition_args(self) -> list[str]:
        s = self.settings
        return ["--channelID", s.channel, "--name", s.chaincode, "--version", s.chaincode_version,
                "--sequence", str(s.chaincode_sequence), "--channel-config-policy", ENDORSEMENT_POLICY_REF]

    def _approve_and_commit(self, consortium: Consortium, package_ids: dict[str, str], progress: Progress) -> None:
        """Every org approves the same definition with its own package id (its own chaincode server)."""
        s = self.settings
        for i, org in enumerate(consortium.orgs):
            package_id = package_ids[org.msp_id]
            if self.state().get(f"approved:{org.msp_id}") == package_id:
                continue
            progress(f"{org.msp_id} approves {s.chaincode} (policy {ENDORSEMENT_POLICY_REF})")
            self._peer(i, consortium, ["lifecycle", "chaincode", "approveformyorg", *self._orderer_tls_args(consortium),
                                       *self._definition_args(), "--package-id", package_id],
                       f"approveformyorg {org.msp_id}")
            self._mark(**{f"approved:{org.msp_id}": package_id})
        ready = self._peer(0, consortium, ["lifecycle", "chaincode", "checkcommitreadiness", *self._definition_args(),
                                           "--output", "json"], "checkcommitreadiness")
        approvals = json.loads(ready[ready.index("{"):]).get("approvals", {}) if "{" in ready else {}
        missing = [m for m, ok in approvals.items() if not ok]
        if missing:
            raise CommandError(f"chaincode definition not approved by {', '.join(missing)}")
        progress(f"commit {s.chaincode} on {s.channel}")
        peers: list[str] = []
        for i, org in enumerate(consortium.orgs):
            peers += ["--peerAddresses", f"{s.host}:{s.peer_port(i)}", "--tlsRootCertFiles", str(org.tls_ca_cert_path)]
        self._peer(0, consortium, ["lifecycle", "chaincode", "commit", *self._orderer_tls_args(consortium),
                                   *self._definition_args(), *peers], "chaincode commit")

    def write_network_json(self, consortium: Consortium) -> Path:
        s, lay = self.settings, self.layout
        org1 = consortium.orgs[0]
        return write_network(lay.root, {
            "kind": "fabric",
            "channel": s.channel,
            "chaincode": s.chaincode,
            "gateway": {"endpoint": f"{s.host}:{s.peer_port(0)}", "tls_root_cert": lay.rel(org1.tls_ca_cert_path),
                        "server_name": org1.node_name},
            "mpc_nodes": self.state().get("mpc_nodes", []),
            "orgs": [{"msp_id": o.msp_id, "tls_root_cert": lay.rel(o.tls_ca_cert_path),
                      "peer": f"{s.host}:{s.peer_port(i)}"} for i, o in enumerate(consortium.orgs)],
            "orderer": {"endpoint": f"{s.host}:{s.orderer_port}",
                        "tls_root_cert": lay.rel(consortium.orderer.tls_ca_cert_path)},
            "wallet": "wallet",
            "crypto": "crypto",
        })

    def down(self) -> list[str]:
        if not (self.layout.crypto / "consortium.json").is_file():
            return []
        return [svc.name for svc in reversed(self.services(Consortium.load(self.layout.crypto))) if svc.stop()]

    def status(self) -> dict[str, Any]:
        if not (self.layout.crypto / "consortium.json").is_file():
            return {"kind": "fabric", "services": {}}
        services = self.services(Consortium.load(self.layout.crypto))
        state = self.state()
        return {
            "kind": "fabric",
            "services": {svc.name: {"running": svc.running(), "pid": svc.pid(), "log": str(svc.log_file)}
                         for svc in services},
            "package_ids": state.get("package_ids"),
            "chaincode_committed": bool(state.get("committed")),
        }

