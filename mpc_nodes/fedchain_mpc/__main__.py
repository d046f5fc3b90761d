"""`python -m fedchain_mpc --config node.json`: run one MPC node until SIGTERM/SIGINT (fedchain_mpc.service).

Prints "READY <host:port>" on stdout once the share intake listens (the network launcher waits for
that line); a node.json that cannot be used exits 2 with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys

from fedchain_mpc.config import ConfigError, load_config
from fedchain_mpc.service import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fedchain_mpc", description="Run one fedchain MPC node.")
    parser.add_argument("--config", required=True, help="node.json")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(cfg, args.log_level)


if __name__ == "__main__":
    sys.exit(main())
