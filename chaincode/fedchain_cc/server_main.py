"""`python -m fedchain_cc`: run a chaincode as a service, configured like Fabric's ccaas images.

Environment (flags override):
  CHAINCODE_ID                package id the peer knows the chaincode by (sent in REGISTER)
  CHAINCODE_SERVER_ADDRESS    listen address, default 127.0.0.1:9999 (port 0 = any free port)
  CHAINCODE_TLS_CERT / CHAINCODE_TLS_KEY      server certificate and key files (TLS off when unset)
  CHAINCODE_TLS_CLIENT_CA     CA file for peer client certificates (mutual TLS when set)
  FEDCHAIN_CHAINCODE          testcc | fedchain | package.module:Class   (default fedchain)
  FEDCHAIN_CC_LOG_LEVEL       default INFO
  FEDCHAIN_CC_MAX_TX, FEDCHAIN_CC_MAX_MESSAGE_BYTES   worker pool size (32), gRPC message limit (100 MiB)
Prints exactly one line "READY <host:port>" on stdout once listening (launchers wait for it);
logs go to stderr and never contain arguments, values or payloads. SIGTERM/SIGINT stop cleanly.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from fedchain_cc.shim.interface import Chaincode
from fedchain_cc.shim.server import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, ChaincodeServer, ServerTLS

CHAINCODES = {
    "testcc": "fedchain_cc.testcc:TestChaincode",
    "fedchain": "fedchain_cc.fl.contract:FLContract",
}


def load_chaincode(spec: str) -> Chaincode:
    """Instantiate a chaincode from a short name or "package.module:Class" (imported lazily)."""
    target = CHAINCODES.get(spec, spec)
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"unknown chaincode {spec!r}: use {', '.join(CHAINCODES)} or package.module:Class")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if cls is None:
        raise ValueError(f"{module_name} has no attribute {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Chaincode)):
        raise ValueError(f"{target} is not a fedchain_cc.shim.interface.Chaincode subclass")
    return cls()


def config_warnings(
    address: str, tls_cert: str | None, tls_key: str | None, client_ca: str | None
) -> list[str]:
    """Risky but legal settings an operator should see in the log (why: they are easy to miss)."""
    warnings = []
    host = address.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "localhost", "::1"):
        if not tls_cert:
            warnings.append(
                f"listening on {address} without TLS: anyone who can reach it can drive the chaincode"
            )
        elif not client_ca:
            warnings.append(
                f"listening on {address} without client authentication (CHAINCODE_TLS_CLIENT_CA unset)"
            )
    if tls_key and os.path.exists(tls_key) and os.stat(tls_key).st_mode & 0o077:
        warnings.append(f"TLS private key {tls_key} is readable by group/others (chmod 600 it)")
    return warnings


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m fedchain_cc", description=__doc__.split("\n")[0])
    p.add_argument(
        "--chaincode",
        default=env("FEDCHAIN_CHAINCODE", "fedchain"),
        help="testcc | fedchain | package.module:Class (env FEDCHAIN_CHAINCODE)",
    )
    p.add_argument("--chaincode-id", default=env("CHAINCODE_ID", ""), help="package id (env CHAINCODE_ID)")
    p.add_argument(
        "--address",
        default=env("CHAINCODE_SERVER_ADDRESS", DEFAULT_ADDRESS),
        help="host:port (env CHAINCODE_SERVER_ADDRESS)",
    )
    p.add_argument("--tls-cert", default=env("CHAINCODE_TLS_CERT"), help="PEM file (env CHAINCODE_TLS_CERT)")
    p.add_argument("--tls-key", default=env("CHAINCODE_TLS_KEY"), help="PEM file (env CHAINCODE_TLS_KEY)")
    p.add_argument(
        "--tls-client-ca",
        default=env("CHAINCODE_TLS_CLIENT_CA"),
        help="CA of the peers' client certificates: mutual TLS (env CHAINCODE_TLS_CLIENT_CA)",
    )
    p.add_argument(
        "--max-concurrent-tx",
        type=int,
        default=int(env("FEDCHAIN_CC_MAX_TX", "32")),
        help="transactions executing at once, all peers together (env FEDCHAIN_CC_MAX_TX)",
    )
    p.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(env("FEDCHAIN_CC_MAX_MESSAGE_BYTES", str(DEFAULT_MAX_MESSAGE_BYTES))),
        help="largest gRPC message in either direction (env FEDCHAIN_CC_MAX_MESSAGE_BYTES, Fabric's default)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        default=env("FEDCHAIN_CC_LOG_LEVEL", "INFO").upper(),
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("fedchain_cc")
    if bool(args.tls_cert) != bool(args.tls_key):
        log.error("CHAINCODE_TLS_CERT and CHAINCODE_TLS_KEY must be set together")
        return 2
    if args.tls_client_ca and not args.tls_cert:
        log.error("CHAINCODE_TLS_CLIENT_CA needs CHAINCODE_TLS_CERT and CHAINCODE_TLS_KEY")
        return 2
    if not args.chaincode_id:
        log.error("CHAINCODE_ID (the chaincode package id) is not set")
        return 2
    for warning in config_warnings(args.address, args.tls_cert, args.tls_key, args.tls_client_ca):
        log.warning("%s", warning)
    try:
        chaincode = load_chaincode(args.chaincode)
        tls = ServerTLS.from_files(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
        server = ChaincodeServer(
            chaincode,
            args.address,
            args.chaincode_id,
            tls,
            args.max_message_bytes,
            max_concurrent_tx=args.max_concurrent_tx,
        ).start()
    except (ImportError, ValueError, OSError) as exc:
        log.error("cannot start chaincode server: %s", exc)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"READY {server.address}", flush=True)
    while not stop.wait(1.0):
        pass
    log.info("signal received: stopping")
    server.stop(grace=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
