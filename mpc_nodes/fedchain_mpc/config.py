"""node.json: everything one MPC node needs to run (paths relative to the file's folder).

    {
      "node_index": 0, "node_id": "mpc0",
      "listen": "127.0.0.1:7500",                       # share intake (gRPC, mutual TLS)
      "tls": {"cert": "tls/server.crt", "key": "tls/server.key"},
      "identity": {"wallet": "../wallet", "name": "mpc0"},   # or {"msp_dir": ..., "msp_id": ...}
      "crypto_dir": "../crypto",                        # consortium tree: MSP roots for client auth
      "network": "..",                                  # folder of network.json (gateway, channel)
      "data_dir": "data",
      "peers": [{"index": 0, "endpoint": "127.0.0.1:7500", "tls_root_cert": "...", "server_name": null}, ...],
      "mpc": {"parties": ["127.0.0.1:11365", "127.0.0.1:11366", "127.0.0.1:11367"], "threshold": 1,
              "ssl": {"cert": "...", "key": "...", "ca": "..."} | null,
              "timeout_s": 600,            # the protocol, once all parties are connected
              "connect_timeout_s": 900,    # waiting for every party to come up
              "retries": 3, "backoff_s": 2},
      "l": 32, "f": 16,
      "reference_dir": null,          # optional <sha256>.npz FLTrust references; else GetReference
      "poll_s": 2.0,
      "max_message_bytes": 67108864,   # the largest share taken, whatever the round (each round: 10 B/element)
      "log_file": null
    }
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.identity import PartyTLS
from fedchain.mpc_client import NodeEndpoint

from fedchain_mpc.party_launcher import RunnerSettings, parties_arg


class ConfigError(Exception):
    """node.json is missing something or malformed; the message names the field."""


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    node_index: int
    node_id: str
    listen: str
    tls_cert: Path
    tls_key: Path
    identity: dict[str, Path | str]
    crypto_dir: Path
    network_dir: Path | None
    data_dir: Path
    peers: tuple[NodeEndpoint, ...]
    runner: RunnerSettings
    l: int = 32  # noqa: E741
    f: int = 16
    reference_dir: Path | None = None
    poll_s: float = 2.0
    max_message_bytes: int = 64 * 1024 * 1024
    log_file: Path | None = None

    @property
    def m(self) -> int:
        return len(self.runner.parties)

    def signing_identity(self) -> Any:
        from fedchain.identity import Wallet, load_signing_identity

        ident = self.identity
        if "wallet" in ident:
            return Wallet(ident["wallet"]).get(str(ident["name"]))
        return load_signing_identity(ident["msp_dir"], str(ident["msp_id"]))


def _req(raw: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    if key not in raw:
        raise ConfigError(f"node config: missing field '{where}{key}'")
    value = raw[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"node config: field '{where}{key}' has the wrong type ({type(value).__name__})")
    return value


def load_config(path: str | os.PathLike) -> NodeConfig:
    path = Path(path).resolve()
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read node config {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: node config must be a JSON object")
    base = path.parent

    def p(value: str | None) -> Path | None:
        if value is None:
            return None
        q = Path(value)
        return q if q.is_absolute() else (base / q).resolve()

    index = _req(raw, "node_index", int)
    tls = _req(raw, "tls", dict)
    ident = _req(raw, "identity", dict)
    if "wallet" in ident:
        identity: dict[str, Path | str] = {"wallet": p(_req(ident, "wallet", str, "identity.")),
                                           "name": _req(ident, "name", str, "identity.")}
    else:
        identity = {"msp_dir": p(_req(ident, "msp_dir", str, "identity.")),
                    "msp_id": _req(ident, "msp_id", str, "identity.")}
    mpc = _req(raw, "mpc", dict)
    parties = parties_arg(_req(mpc, "parties", list, "mpc."))
    if not 0 <= index < len(parties):
        raise ConfigError(f"node config: node_index {index} is not a position in mpc.parties ({len(parties)})")
    ssl = mpc.get("ssl")
    party_tls = PartyTLS(p(ssl["cert"]), p(ssl["key"]), p(ssl["ca"])) if ssl else None
    runner = RunnerSettings(
        node_index=index, parties=parties, threshold=int(mpc.get("threshold", (len(parties) - 1) // 2)),
        tls=party_tls, timeout_s=float(mpc.get("timeout_s", 600)),
        connect_timeout_s=float(mpc.get("connect_timeout_s", 900)), retries=int(mpc.get("retries", 3)),
        backoff_s=float(mpc.get("backoff_s", 2.0)),
    )
    peers = tuple(
        NodeEndpoint(index=int(e["index"]), endpoint=str(e["endpoint"]),
                     tls_root_cert=p(e["tls_root_cert"]).read_bytes(), server_name=e.get("server_name"),
                     id=str(e.get("id", "")))
        for e in _req(raw, "peers", list)
    )
    if sorted(e.index for e in peers) != list(range(len(parties))):
        raise ConfigError(f"node config: peers must list the intake of every node 0..{len(parties) - 1}")
    listen = str(raw.get("listen", "127.0.0.1:0"))
    return NodeConfig(
        path=path, node_index=index, node_id=str(raw.get("node_id", f"mpc{index}")), listen=listen,
        tls_cert=p(_req(tls, "cert", str, "tls.")), tls_key=p(_req(tls, "key", str, "tls.")), identity=identity,
        crypto_dir=p(_req(raw, "crypto_dir", str)), network_dir=p(raw.get("network")),
        data_dir=p(_req(raw, "data_dir", str)), peers=peers, runner=runner,
        l=int(raw.get("l", 32)), f=int(raw.get("f", 16)), reference_dir=p(raw.get("reference_dir")),
        poll_s=float(raw.get("poll_s", 2.0)), max_message_bytes=int(raw.get("max_message_bytes", 64 * 1024 * 1024)),
        log_file=p(raw.get("log_file")),
    )
