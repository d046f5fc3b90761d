"""`python -m fedchain_devnet --config D/devnet.json`: prints "READY <endpoint>" once serving; SIGTERM stops it."""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
import sys
import threading

from fedchain_devnet.config import ConfigError, load_config
from fedchain_devnet.ledger import LedgerCorrupt
from fedchain_devnet.node import Node, NodeError
from fedchain_devnet.server import build_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fedchain_devnet", description=__doc__)
    parser.add_argument("--config", required=True, help="devnet JSON config (see fedchain_devnet.config)")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--verify", action="store_true",
                        help="verify the ledger (hash chain, orderer signatures, commit hashes), catch the state up, "
                             "check the state DB against the blocks, print the chain head and exit; 2 = corrupt "
                             "(stop the devnet first: one process per ledger)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("fedchain_devnet")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = None
    try:
        config = load_config(args.config)
        node = Node(config)
        if args.verify:
            if node.ledger.height == 0:
                print("ledger is empty (no genesis block yet)")
                return 0
            node.open_ledger()
            info = node.ledger.chain_info()
            print(f"OK channel {config.channel}: {info.height} blocks verified, head {info.currentBlockHash.hex()}")
            node.ledger.close()
            return 0
        node.start()
        server, endpoint = build_server(config, node)
        server.start()
    except (ConfigError, NodeError, LedgerCorrupt, OSError, sqlite3.Error) as exc:
        print(f"fedchain_devnet: cannot start: {exc}", file=sys.stderr, flush=True)
        if node is not None:
            node.stop()
        return 2
    log.info("serving channel %s on %s (orgs %s, chaincodes %s)", config.channel, endpoint,
             ", ".join(node.org_ids), ", ".join(node.chaincode_names))
    print(f"READY {endpoint}", flush=True)
    while not stop.wait(0.5):
        if node.orderer.failure is not None:
            log.critical("stopping: the committer failed")
            break
    log.info("shutting down")
    server.stop(grace=2).wait()
    node.stop()
    return 0 if node.orderer.failure is None else 1


if __name__ == "__main__":
    sys.exit(main())
