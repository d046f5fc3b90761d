"""The embedded one-machine network: consortium, chaincode server, devnet, MPC nodes.

This is the launcher layer of the CLI: the only place in `fedchain` that knows how to
start `fedchain_devnet` and `fedchain_mpc` processes (DESIGN.md section 1). Everything
it starts runs in its own process group on 127.0.0.1; `down` stops them; `up` again
reuses the same folder, ports, identities and ledger.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedchain.identity import Consortium, Wallet, enroll_default_identities, generate_consortium
from fedchain.netconfig import write_network
from fedchain.netctl.layout import NetworkLayout
from fedchain.netctl.process import Service, ServiceError, port_is_free, python_module

log = logging.getLogger(__name__)

CHANNEL = "fedchain"
CHAINCODE = "fedchain"
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

    def ports(self) -> list[int]:
        ports = [self.gateway_port, self.chaincode_port]
        if self.with_mpc:
            ports += [self.mpc_intake_port(i) for i in range(self.mpc_nodes)]
            ports += [self.mpc_party_port(i) for i in range(self.mpc_nodes)]
        return ports


class EmbeddedNetwork:
    def __init__(self, directory: str | Path, settings: EmbeddedSettings | None = None) -> None:
        self.layout = NetworkLayout(Path(directory).resolve())
        saved = self._load_settings()
        self.settings = saved or settings or EmbeddedSettings()
        if saved and settings and asdict(saved) != asdict(settings):
            log.info("reusing the settings of the existing network in %s", self.layout.root)

    # --- settings ------------------------------------------------------------
    def _load_settings(self) -> EmbeddedSettings | None:
        path = self.layout.state_file
        if not path.is_file():
            return None
        return EmbeddedSettings(**json.loads(path.read_text()))

    def _save_settings(self) -> None:
        self.layout.root.mkdir(parents=True, exist_ok=True)
        self.layout.state_file.write_text(json.dumps(asdict(self.settings), indent=2))

    # --- services ------------------------------------------------------------
    def _service(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Service:
        return Service(name, argv, self.layout.run, self.layout.logs, env)

    def services(self) -> list[Service]:
        """In start order; stopped in reverse."""
        s = self.settings
        lay = self.layout
        out = [
            self._service(
                "chaincode",
                python_module("fedchain_cc", "--chaincode", CHAINCODE),
                {
                    "CHAINCODE_ID": f"{CHAINCODE_LABEL}:embedded",
                    "CHAINCODE_SERVER_ADDRESS": f"127.0.0.1:{s.chaincode_port}",
                    "CHAINCODE_TLS_CERT": str(lay.root / "chaincode-tls" / "server.crt"),
                    "CHAINCODE_TLS_KEY": str(lay.root / "chaincode-tls" / "server.key"),
                },
            ),
            self._service("devnet", python_module("fedchain_devnet", "--config", str(lay.root / "devnet.json"))),
        ]
        if s.with_mpc:
            out += [
                self._service(f"mpc{i}", python_module("fedchain_mpc", "--config", str(lay.mpc / f"node{i}.json")))
                for i in range(s.mpc_nodes)
            ]
        return out

    # --- lifecycle -----------------------------------------------------------
    def consortium(self) -> Consortium:
        if (self.layout.crypto / "consortium.json").is_file():
            return Consortium.load(self.layout.crypto)
        return generate_consortium(self.layout.crypto, self.settings.orgs)

    def up(self, progress: Callable[[str], None] = lambda msg: None, ready_timeout: float = 90.0) -> None:
        running = [svc.name for svc in self.services() if svc.running()]
        if running:
            raise ServiceError(f"network in {self.layout.root} is already running ({', '.join(running)}); "
                               f"use `fedchain network status` or `down` first")
        busy = [p for p in self.settings.ports() if not port_is_free("127.0.0.1", p)]
        if busy:
            raise ServiceError(f"ports already in use on 127.0.0.1: {', '.join(map(str, busy))}; "
                               f"choose another --base-port")
        self._save_settings()
        progress("consortium identities")
        consortium = self.consortium()
        wallet = Wallet(self.layout.wallet)
        enroll_default_identities(consortium, wallet, self.settings.mpc_nodes)
        progress("service configuration")
        self._write_configs(consortium)
        started: list[Service] = []
        try:
            services = self.services()
            ledger = [svc for svc in services if not svc.name.startswith("mpc")]
            for svc in ledger:
                progress(f"starting {svc.name}")
                svc.start(ready_timeout=ready_timeout)
                started.append(svc)
            progress("bootstrapping the consortium on the ledger")
            self._bootstrap_ledger()  # before the MPC nodes, which wait for the consortium
            for svc in services:
                if svc not in ledger:
                    progress(f"starting {svc.name}")
                    svc.start(ready_timeout=ready_timeout)
                    started.append(svc)
        except Exception:
            for svc in reversed(started):
                svc.stop()
            raise
        progress("ready")

    def down(self) -> list[str]:
        """Stop every service; they shut down gracefully in parallel (each may take its grace period)."""
        from concurrent.futures import ThreadPoolExecutor

        services = list(reversed(self.services()))
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            results = list(pool.map(lambda svc: svc.stop(), services))
        return [svc.name for svc, was_running in zip(services, results, strict=True) if was_running]

    def status(self) -> dict[str, dict]:
        return {
            svc.name: {"running": svc.running(), "pid": svc.pid(), "log": str(svc.log_file)}
            for svc in self.services()
        }

    # --- pieces ----------------------------------------------------------------
    def _write_configs(self, consortium: Consortium) -> None:
        from fedchain.netctl import embedded_configs

        embedded_configs.write_all(self, consortium)

    def _bootstrap_ledger(self) -> None:
        from fedchain.netctl import embedded_configs

        embedded_configs.bootstrap_ledger(self)

    def write_network_json(self, consortium: Consortium, mpc_nodes: list[dict]) -> Path:
        org1 = consortium.orgs[0]
        return write_network(
            self.layout.root,
            {
                "kind": "devnet",
                "channel": CHANNEL,
                "chaincode": CHAINCODE,
                "gateway": {
                    "endpoint": f"127.0.0.1:{self.settings.gateway_port}",
                    "tls_root_cert": self.layout.rel(org1.tls_ca_cert_path),
                    "server_name": org1.node_name,
                },
                "mpc_nodes": mpc_nodes,
                "orgs": [{"msp_id": o.msp_id, "tls_root_cert": self.layout.rel(o.tls_ca_cert_path)}
                         for o in consortium.orgs],
                "wallet": "wallet",
                "crypto": "crypto",
            },
        )
