"""The devnet's JSON config: what `fedchain network up` writes and `python -m fedchain_devnet` reads.

Format (all paths absolute or relative to the config file's folder)::

    {
      "version": 1,
      "channel": "fedchain",
      "listen": "127.0.0.1:7051",            # port 0 = any free port (printed in READY)
      "data_dir": "ledger",                   # blocks.bin, state.sqlite
      "crypto_dir": "crypto",                 # the consortium (fedchain.identity layout)
      "gateway_org": "Org1MSP",               # whose peer TLS pair the gateway presents
      "tls": {"cert": null, "key": null,      # default: gateway_org's peer TLS pair
              "client_auth": false},          # true = mutual TLS against the orgs' TLS CAs
      "orderer": {"batch_timeout_ms": 50, "max_message_count": 100, "preferred_max_bytes": 2097152,
                  "max_pending": 10000},
      "max_message_bytes": 16777216,
      "chaincodes": [{"name": "fedchain", "address": "127.0.0.1:7052", "policy": "MAJORITY",
                      "tls_root_cert": null, "server_name": null,
                      "client_cert": null, "client_key": null, "connect_timeout_s": 30}]
    }

`policy` is "MAJORITY" (floor(n/2)+1 orgs), "ANY", "ALL", or a list of MSP ids that must all endorse.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
DEFAULT_CHANNEL = "fedchain"


class ConfigError(ValueError):
    """The config file is missing, malformed or inconsistent; the message names the field."""


@dataclass
class ChaincodeDef:
    """One chaincode-as-a-service endpoint the devnet's peers dial."""

    name: str
    address: str
    policy: str | list[str] = "MAJORITY"
    tls_root_cert: str | None = None  # CA that signed the chaincode server's TLS cert; None = plaintext
    server_name: str | None = None  # TLS name override when the address is an IP
    client_cert: str | None = None  # peer's client pair when the chaincode server wants mutual TLS
    client_key: str | None = None
    connect_timeout_s: float = 30.0


@dataclass
class DevnetConfig:
    channel: str
    listen: str
    data_dir: Path
    crypto_dir: Path
    chaincodes: list[ChaincodeDef]
    gateway_org: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_auth: bool = False
    batch_timeout_ms: int = 50
    max_message_count: int = 100
    preferred_max_bytes: int = 2 * MiB
    max_pending: int = 10000
    max_message_bytes: int = 16 * MiB
    extra: dict[str, Any] = field(default_factory=dict)

    def chaincode(self, name: str) -> ChaincodeDef | None:
        return next((c for c in self.chaincodes if c.name == name), None)


def _policy(value: Any, where: str) -> str | list[str]:
    if isinstance(value, str) and value.upper() in ("MAJORITY", "ANY", "ALL"):
        return value.upper()
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise ConfigError(f"{where}: policy must be MAJORITY, ANY, ALL or a non-empty list of MSP ids, not {value!r}")


def parse_config(raw: dict, base: Path) -> DevnetConfig:
    """Validate a config dict; relative paths resolve against `base`."""
    if not isinstance(raw, dict):
        raise ConfigError("config must be a JSON object")

    def path(value: Any, what: str) -> Path | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{what} must be a path string")
        p = Path(value)
        return p if p.is_absolute() else base / p

    def req(key: str) -> Any:
        if key not in raw:
            raise ConfigError(f"config lacks {key!r}")
        return raw[key]

    ccs = []
    for i, cc in enumerate(raw.get("chaincodes") or []):
        where = f"chaincodes[{i}]"
        if not isinstance(cc, dict) or not cc.get("name") or not cc.get("address"):
            raise ConfigError(f"{where} needs a name and an address")
        ccs.append(ChaincodeDef(
            name=str(cc["name"]), address=str(cc["address"]), policy=_policy(cc.get("policy", "MAJORITY"), where),
            tls_root_cert=str(path(cc.get("tls_root_cert"), f"{where}.tls_root_cert") or "") or None,
            server_name=cc.get("server_name"),
            client_cert=str(path(cc.get("client_cert"), f"{where}.client_cert") or "") or None,
            client_key=str(path(cc.get("client_key"), f"{where}.client_key") or "") or None,
            connect_timeout_s=float(cc.get("connect_timeout_s", 30.0)),
        ))
    names = [c.name for c in ccs]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate chaincode names in {names}")
    if "qscc" in names:
        raise ConfigError("'qscc' is the system chaincode's name; choose another")
    tls = raw.get("tls") or {}
    orderer = raw.get("orderer") or {}
    cfg = DevnetConfig(
        channel=str(raw.get("channel", DEFAULT_CHANNEL)),
        listen=str(raw.get("listen", "127.0.0.1:7051")),
        data_dir=path(req("data_dir"), "data_dir"),
        crypto_dir=path(req("crypto_dir"), "crypto_dir"),
        chaincodes=ccs,
        gateway_org=raw.get("gateway_org"),
        tls_cert=path(tls.get("cert"), "tls.cert"),
        tls_key=path(tls.get("key"), "tls.key"),
        client_auth=bool(tls.get("client_auth", False)),
        batch_timeout_ms=int(orderer.get("batch_timeout_ms", 50)),
        max_message_count=int(orderer.get("max_message_count", 100)),
        max_pending=int(orderer.get("max_pending", 10000)),
        preferred_max_bytes=int(orderer.get("preferred_max_bytes", 2 * MiB)),
        max_message_bytes=int(raw.get("max_message_bytes", 16 * MiB)),
    )
    if min(cfg.batch_timeout_ms, cfg.max_message_count, cfg.preferred_max_bytes, cfg.max_pending) <= 0:
        raise ConfigError("orderer.batch_timeout_ms, max_message_count, preferred_max_bytes and max_pending "
                          "must be positive")
    if (cfg.tls_cert is None) != (cfg.tls_key is None):
        raise ConfigError("tls.cert and tls.key go together")
    return cfg


def load_config(path: str | os.PathLike) -> DevnetConfig:
    p = Path(path)
    try:
        raw = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"devnet config {p} does not exist") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"devnet config {p} is not valid JSON: {exc}") from None
    return parse_config(raw, p.resolve().parent)


def make_devnet_config(consortium: Any, data_dir: str | os.PathLike, listen: str = "127.0.0.1:7051",
                       chaincodes: list[ChaincodeDef] | None = None, *, channel: str = DEFAULT_CHANNEL,
                       batch_timeout_ms: int = 50, max_message_count: int = 100, client_auth: bool = False,
                       max_message_bytes: int = 16 * MiB, gateway_org: str | None = None,
                       preferred_max_bytes: int = 2 * MiB) -> dict:
    """A config dict for `consortium` (a fedchain.identity.Consortium); write it with json.dump."""
    return {
        "version": 1,
        "channel": channel,
        "listen": listen,
        "data_dir": str(Path(data_dir).resolve()),
        "crypto_dir": str(Path(consortium.crypto_dir).resolve()),
        "gateway_org": gateway_org or consortium.orgs[0].msp_id,
        "tls": {"cert": None, "key": None, "client_auth": client_auth},
        "orderer": {"batch_timeout_ms": batch_timeout_ms, "max_message_count": max_message_count,
                    "preferred_max_bytes": preferred_max_bytes},
        "max_message_bytes": max_message_bytes,
        "chaincodes": [asdict(c) for c in (chaincodes or [])],
    }
