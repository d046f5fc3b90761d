"""The one-time admin steps of a native Fabric network: channel, joins, ccaas installs, approve, commit.

Each step is recorded in D/fabric-state.json once done, so a restart (or a partial restart)
skips it. Every admin command and its output goes to D/logs/setup.log.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from fedchain.fabricnet import configtx, node_env
from fedchain.fabricnet.layout import FabricLayout, StateFile
from fedchain.fabricnet.preflight import FabricTools
from fedchain.fabricnet.procs import CommandError, run_command
from fedchain.fabricnet.settings import ENDORSEMENT_POLICY_REF, FabricSettings
from fedchain.identity import Consortium
from fedchain.netctl.policy import fabric_signature_policy, parse_policy

Progress = Callable[[str], None]


def clean_env() -> dict[str, str]:
    """The caller's environment without stray Fabric overrides that would change our nodes."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CORE_", "ORDERER_", "FABRIC_CFG_PATH", "CHAINCODE_"))}


def policy_args(s: FabricSettings, msp_ids: Sequence[str]) -> list[str]:
    """The chaincode definition's endorsement policy: the channel's MAJORITY Endorsement, or a signature policy."""
    signature = fabric_signature_policy(parse_policy(s.endorsement_policy, msp_ids), msp_ids)
    return ["--channel-config-policy", ENDORSEMENT_POLICY_REF] if signature is None else ["--signature-policy",
                                                                                          signature]


def definition_args(s: FabricSettings, msp_ids: Sequence[str]) -> list[str]:
    return ["--channelID", s.channel, "--name", s.chaincode, "--version", s.chaincode_version,
            "--sequence", str(s.chaincode_sequence), *policy_args(s, msp_ids)]


class AdminSteps:
    """Runs the Fabric CLI as the orgs' admins against the local nodes."""

    def __init__(self, settings: FabricSettings, layout: FabricLayout, tools: FabricTools, consortium: Consortium,
                 state: StateFile) -> None:
        self.s, self.lay, self.tools, self.consortium, self.state = settings, layout, tools, consortium, state
        self.msp_ids = [o.msp_id for o in consortium.orgs]

    def _cmd(self, argv: list[str], env: dict[str, str], what: str, timeout: float = 120.0) -> str:
        return run_command(argv, env, self.lay.setup_log, timeout=timeout, what=what)

    def peer(self, i: int, args: list[str], what: str) -> str:
        org = self.consortium.orgs[i]
        env = {**clean_env(), **node_env.admin_cli_env(org, i, self.s, cfg_dir=self.lay.peer_cfg(org.node_name))}
        return self._cmd([str(self.tools.binary("peer")), *args], env, what)

    def _orderer_tls_args(self) -> list[str]:
        return ["-o", f"{self.s.orderer_address()}:{self.s.orderer_port}", "--tls", "--cafile",
                str(self.consortium.orderer.tls_ca_cert_path)]

    def create_channel(self, progress: Progress) -> None:
        """Genesis block (configtxgen) and the orderer's join through the channel participation API."""
        s, lay = self.s, self.lay
        if self.state.get("orderer_joined"):
            return
        progress(f"channel {s.channel}: genesis block (configtxgen) and orderer join (osnadmin)")
        lay.channel_block.parent.mkdir(parents=True, exist_ok=True)
        self._cmd(
            [str(self.tools.binary("configtxgen")), "-profile", configtx.PROFILE, "-channelID", s.channel,
             "-outputBlock", str(lay.channel_block), "-configPath", str(lay.configtx_dir)],
            {**clean_env(), "FABRIC_CFG_PATH": str(lay.configtx_dir)}, "configtxgen (channel genesis block)",
        )
        admin = self.consortium.orderer.user_dir("Admin") / "tls"
        self._cmd(
            [str(self.tools.binary("osnadmin")), "channel", "join", "--channelID", s.channel,
             "--config-block", str(lay.channel_block), "-o", f"{s.orderer_address()}:{s.orderer_admin_port}",
             "--ca-file", str(self.consortium.orderer.tls_ca_cert_path),
             "--client-cert", str(admin / "client.crt"), "--client-key", str(admin / "client.key")],
            clean_env(), "osnadmin channel join",
        )
        self.state.mark(orderer_joined=True)

    def join(self, i: int, progress: Progress) -> None:
        org = self.consortium.orgs[i]
        if self.state.get(f"joined:{org.node_name}"):
            return
        progress(f"{org.node_name} joins {self.s.channel}")
        self.peer(i, ["channel", "join", "-b", str(self.lay.channel_block)], "peer channel join")
        self.state.mark(**{f"joined:{org.node_name}": True})

    def install(self, i: int, package: Path, package_id: str, progress: Progress) -> None:
        """Install the org's own ccaas package on its peer; the peer must compute the id we computed."""
        org = self.consortium.orgs[i]
        if self.state.get(f"installed:{org.node_name}") == package_id:
            return
        progress(f"install {org.msp_id}'s ccaas package on {org.node_name}")
        try:
            self.peer(i, ["lifecycle", "chaincode", "install", str(package)], "chaincode install")
        except CommandError as exc:
            if "already successfully installed" not in str(exc):
                raise
        out = self.peer(i, ["lifecycle", "chaincode", "calculatepackageid", str(package)], "calculatepackageid")
        if package_id not in out:
            raise CommandError(f"the peer computes package id {out.strip()!r}, fedchain computed {package_id!r}")
        self.state.mark(**{f"installed:{org.node_name}": package_id})

    def approve_and_commit(self, package_ids: dict[str, str], progress: Progress) -> None:
        """Every org approves the same definition with its own package id (its own chaincode server); one commit."""
        if self.state.get("committed"):
            return
        s = self.s
        definition = definition_args(s, self.msp_ids)
        policy = " ".join(policy_args(s, self.msp_ids)[1:])
        for i, org in enumerate(self.consortium.orgs):
            package_id = package_ids[org.msp_id]
            if self.state.get(f"approved:{org.msp_id}") == package_id:
                continue
            progress(f"{org.msp_id} approves {s.chaincode} (endorsement policy {policy})")
            self.peer(i, ["lifecycle", "chaincode", "approveformyorg", *self._orderer_tls_args(), *definition,
                          "--package-id", package_id], f"approveformyorg {org.msp_id}")
            self.state.mark(**{f"approved:{org.msp_id}": package_id})
        ready = self.peer(0, ["lifecycle", "chaincode", "checkcommitreadiness", *definition, "--output", "json"],
                          "checkcommitreadiness")
        approvals = json.loads(ready[ready.index("{"):]).get("approvals", {}) if "{" in ready else {}
        missing = [m for m, ok in approvals.items() if not ok]
        if missing:
            raise CommandError(f"chaincode definition not approved by {', '.join(missing)}")
        progress(f"commit {s.chaincode} on {s.channel}")
        peers: list[str] = []
        for i, org in enumerate(self.consortium.orgs):
            peers += ["--peerAddresses", f"{s.peer_address(i)}:{s.peer_port(i)}", "--tlsRootCertFiles", str(org.tls_ca_cert_path)]
        self.peer(0, ["lifecycle", "chaincode", "commit", *self._orderer_tls_args(), *definition, *peers],
                  "chaincode commit")
        self.state.mark(committed=True)
