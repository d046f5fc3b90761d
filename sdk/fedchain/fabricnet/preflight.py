"""Find Fabric's release binaries and sample configs, and check every port before starting anything.

All problems are collected and reported together (a missing binary AND a taken port in one
message), so an operator fixes the machine once instead of re-running `up` per error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fedchain.fabricnet.settings import FabricSettings
from fedchain.netctl.process import NetworkError, address_is_local, port_is_free

BINARIES = ("peer", "orderer", "configtxgen", "osnadmin")
CONFIGS = ("core.yaml", "orderer.yaml")
BUILDER_SCRIPTS = ("detect", "build", "release")
RELEASE_HINT = (
    "download Fabric's release (https://github.com/hyperledger/fabric/releases, fabric_2.5.x "
    "linux-amd64 tarball: bin/, config/, builders/ccaas/) and set FABRIC_BIN=<release>/bin, "
    "FABRIC_CFG=<release>/config, FABRIC_CCAAS_BUILDER=<release>/builders/ccaas"
)


class PreflightError(NetworkError):
    """What is missing or taken, all at once, with how to fix it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("cannot start the Fabric network:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class FabricTools:
    """Paths to the release's binaries, sample configs and ccaas builder."""

    bin_dir: Path | None
    cfg_dir: Path | None
    ccaas_builder: Path | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FabricTools:
        env = os.environ if env is None else env

        def path(name: str) -> Path | None:
            value = env.get(name)
            return Path(value).expanduser().resolve() if value else None

        bin_dir = path("FABRIC_BIN")
        cfg_dir = path("FABRIC_CFG")
        builder = path("FABRIC_CCAAS_BUILDER")
        if bin_dir and cfg_dir is None and (bin_dir.parent / "config").is_dir():
            cfg_dir = bin_dir.parent / "config"  # the release tarball's layout
        if bin_dir and builder is None and (bin_dir.parent / "builders" / "ccaas").is_dir():
            builder = bin_dir.parent / "builders" / "ccaas"
        return cls(bin_dir, cfg_dir, builder)

    def binary(self, name: str) -> Path:
        if self.bin_dir is None:
            raise PreflightError([f"FABRIC_BIN is not set; {RELEASE_HINT}"])
        return self.bin_dir / name

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.bin_dir is None:
            out.append(f"FABRIC_BIN is not set (needs {', '.join(BINARIES)}); {RELEASE_HINT}")
        else:
            for name in BINARIES:
                exe = self.bin_dir / name
                if not exe.is_file():
                    out.append(f"binary {name} not found at {exe}")
                elif not os.access(exe, os.X_OK):
                    out.append(f"binary {exe} is not executable (chmod +x)")
        if self.cfg_dir is None:
            default = f"; its default {self.bin_dir.parent / 'config'} does not exist" if self.bin_dir else ""
            out.append(f"FABRIC_CFG is not set (folder with Fabric's sample core.yaml and orderer.yaml){default}")
        else:
            out += [f"config {self.cfg_dir / n} not found" for n in CONFIGS if not (self.cfg_dir / n).is_file()]
        if self.ccaas_builder is None:
            default = (f"; its default {self.bin_dir.parent / 'builders' / 'ccaas'} does not exist"
                       if self.bin_dir else "")
            out.append("FABRIC_CCAAS_BUILDER is not set (Fabric's builders/ccaas folder with bin/detect, build, "
                       f"release){default}")
        else:
            for name in BUILDER_SCRIPTS:
                script = self.ccaas_builder / "bin" / name
                if not (script.is_file() and os.access(script, os.X_OK)):
                    out.append(f"ccaas builder script {script} missing or not executable")
        return out


def port_problems(settings: FabricSettings, ports: Mapping[str, int] | None = None) -> list[str]:
    """Taken ports among `ports` (owner -> port; default: every listener of the settings). A listener
    placed on another host (settings.orderer_host, peer_hosts, mpc_hosts) is checked only where it binds."""
    out = []
    for owner, port in (settings.ports() if ports is None else ports).items():
        host = settings.port_host(owner)
        if host != settings.host and not address_is_local(host):
            continue
        if not port_is_free(host, port):
            out.append(f"port {port} ({owner}) is already in use on {host}")
    return out


def preflight(settings: FabricSettings, tools: FabricTools, *, check_ports: bool = True,
              ports: Mapping[str, int] | None = None) -> None:
    """Raise PreflightError listing every missing binary/config and every taken port.

    `ports` limits the port check to the listeners about to start (a partial restart: the
    running nodes hold theirs); by default every listener of the settings is checked.
    """
    problems = tools.problems()
    try:
        settings.validate()
    except ValueError as exc:
        problems.append(str(exc))
    if check_ports:
        problems += port_problems(settings, ports)
    if problems:
        raise PreflightError(problems)
