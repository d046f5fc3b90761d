"""Run the generated Compose files on one host: the "compose" NetworkBackend.

`fedchain network compose` writes D/compose/ (compose.py); this runs it with `docker compose`
in the same order as native mode: the orderer, peers and chaincode services (profiles
orderer, org1.., cli), the one-time channel and lifecycle steps (setup.sh, once), the same
readiness waits, InitConsortium once (from this host, through D/network.json and the
published gateway port), then the MPC nodes (profile mpc). On a partly running network only
the containers that are not running are started (`up -d --no-deps NAME...`); named volumes
keep every ledger and MPC node's data across `down`. Several hosts: each host runs its own
profiles by hand (network/fabric/README.md); this class is the single-host path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fedchain.fabricnet.layout import FabricLayout, StateFile
from fedchain.fabricnet.procs import run_command
from fedchain.fabricnet.readiness import wait_until_usable
from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium
from fedchain.netctl.consortium import bootstrap_ledger
from fedchain.netctl.process import NetworkError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ComposeService:
    """One compose service as a network component; `state` from one `docker compose ps` snapshot."""

    name: str
    kind: str
    state: str  # running | exited | stopped (no container)

    def running(self) -> bool:
        return self.state == "running"


class ComposeNetwork:
    """NetworkBackend of kind "compose" over D/compose/docker-compose.yaml."""

    kind = "compose"

    def __init__(self, directory: str | Path, *, docker: Sequence[str] | None = None,
                 bootstrap: Callable[[Path], object] | None = None,
                 wait: Callable[..., None] | None = None) -> None:
        """docker: the command that runs `docker` (default: `docker` on PATH); bootstrap / wait replace
        InitConsortium and the readiness waits (tests without containers)."""
        self.layout = FabricLayout(Path(directory).resolve())
        self.settings = FabricSettings.load(self.layout.root) or FabricSettings(mode="compose")
        self.store = StateFile(self.layout.state_file)
        self._docker = list(docker) if docker else None
        self._bootstrap = bootstrap or (lambda root: bootstrap_ledger(root, self.settings.consortium_plan()))
        self._wait = wait or wait_until_usable

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def compose_dir(self) -> Path:
        return self.layout.root / "compose"

    @property
    def compose_file(self) -> Path:
        return self.compose_dir / "docker-compose.yaml"

    # --- docker compose ------------------------------------------------------------
    def _docker_cmd(self) -> list[str]:
        """`docker`, once checked to have the compose plugin (a bare docker CLI fails on `compose -f`)."""
        if self._docker:
            return self._docker
        found = shutil.which("docker")
        if not found:
            raise NetworkError("docker not found on PATH: Compose mode needs Docker with the compose plugin "
                               "(or run the network natively: `fedchain network up --fabric`)")
        probe = subprocess.run([found, "compose", "version"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            raise NetworkError(f"`docker compose` is not available ({found} has no compose plugin): install "
                               "Docker Compose v2, or run the network natively: `fedchain network up --fabric`")
        self._docker = [found]
        return self._docker

    def _compose(self, *args: str, what: str, timeout: float = 600.0) -> str:
        argv = [*self._docker_cmd(), "compose", "-f", str(self.compose_file), "--project-directory",
                str(self.compose_dir), *args]
        return run_command(argv, _env(), self.layout.setup_log, timeout=timeout, what=what)

    def _definitions(self) -> dict[str, dict[str, Any]]:
        if not self.compose_file.is_file():
            raise NetworkError(f"no {self.compose_file}: generate it with `fedchain network compose --network "
                               f"{self.layout.root}`")
        return (yaml.safe_load(self.compose_file.read_text()) or {}).get("services", {})

    def _all_profiles(self) -> list[str]:
        """--profile for every profile in the file (ps and down must see every service)."""
        names = sorted({p for d in self._definitions().values() for p in d.get("profiles") or []})
        return [a for name in names for a in ("--profile", name)]

    def _states(self) -> dict[str, str]:
        """Service name -> container state, from `docker compose ps --all --format json`."""
        out = self._compose(*self._all_profiles(), "ps", "--all", "--format", "json", what="docker compose ps")
        text = out.strip()
        rows = json.loads(text) if text.startswith("[") else [json.loads(line) for line in text.splitlines()
                                                              if line.startswith("{")]
        return {row["Service"]: str(row.get("State", "")).lower() for row in rows}

    # --- the interface ----------------------------------------------------------------
    def services(self) -> list[ComposeService]:
        """In start order: orderer, peers and chaincode services, then the MPC nodes (no `cli`: a tool box)."""
        definitions = self._definitions()
        states = self._states()
        return [ComposeService(name, _kind(d), states.get(name, "stopped"))
                for name, d in definitions.items() if name != "cli"]

    def up(self, progress: Progress = lambda m: None, ready_timeout: float = 120.0) -> list[str]:
        """Start the containers that are not running; channel set-up and InitConsortium once."""
        services = self.services()
        missing = [svc for svc in services if not svc.running()]
        running = [svc.name for svc in services if svc.running()]
        if not missing:
            progress(f"already running: {', '.join(running)}; nothing to start")
            return []
        if running:
            progress(f"already running: {', '.join(running)}; starting only {', '.join(s.name for s in missing)}")
        for svc in missing:
            if svc.state == "exited":
                progress(f"restarting {svc.name} (its container had exited; `docker compose logs {svc.name}`)")
        ledger = [s.name for s in missing if s.kind != "mpc"]
        mpc = [s.name for s in missing if s.kind == "mpc"]
        started: list[str] = []
        try:
            if ledger:
                progress(f"starting containers: {', '.join(ledger)}")
                self._compose("up", "-d", "--no-deps", *ledger, "cli", what="docker compose up (ledger)")
                started += ledger
            if not self.store.get("compose_setup_done"):
                progress("channel and chaincode, once (setup.sh in the cli container)")
                run_command(["sh", "setup.sh"], _env(), self.layout.setup_log, what="setup.sh", cwd=self.compose_dir)
                self.store.mark(compose_setup_done=True)
            self._wait(self.settings, Consortium.load(self.layout.crypto), "`docker compose logs`", progress,
                       ready_timeout)
            if not self.store.get("bootstrapped"):
                progress("bootstrapping the consortium on the ledger (InitConsortium)")
                self._bootstrap(self.layout.root)
                self.store.mark(bootstrapped=True)
            if mpc:
                progress(f"starting MPC node containers: {', '.join(mpc)}")
                self._compose("up", "-d", "--no-deps", *mpc, what="docker compose up (MPC nodes)")
                started += mpc
        except BaseException:
            if started:
                progress(f"failed: stopping what this call started ({', '.join(started)})")
                self._compose("stop", *started, what="docker compose stop")
            raise
        progress("ready")
        return started

    def status(self) -> dict[str, dict[str, Any]]:
        return {svc.name: {"running": svc.running(), "state": svc.state, "pid": None,
                           "log": f"docker compose logs {svc.name}", "kind": svc.kind} for svc in self.services()}

    def down(self) -> list[str]:
        """Remove the containers of every profile; named volumes (ledgers, MPC data) stay."""
        was_running = [svc.name for svc in self.services() if svc.running()]
        self._compose(*self._all_profiles(), "down", what="docker compose down")
        return was_running


def _kind(definition: dict[str, Any]) -> str:
    profiles = definition.get("profiles") or []
    if "mpc" in profiles:
        return "mpc"
    return "chaincode" if str(definition.get("hostname", "")).startswith("chaincode.") else "ledger"


def _env() -> dict[str, str]:
    return dict(os.environ)
