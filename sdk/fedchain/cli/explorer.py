"""`fedchain explorer`: serve a read-only web view of the ledger (fedchain.explorer).

The web stack (Starlette, uvicorn, Jinja2, matplotlib) is imported only when the command runs, so
`fedchain --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedchain.cli.operator import add_connection_args, run


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..65535")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explorer", help="web page of the consortium: rounds, decisions, models, blocks, audit (read-only)",
        description="Serve a read-only web explorer of the consortium's ledger on 127.0.0.1: consortium, "
        "participants, rounds, the hospital x round decision grid with accuracy from matching demo reports, "
        "model lineage with hash-checked downloads, blocks and transactions (validation codes, creators, "
        "endorsers), the audit verdict on demand, live updates from chaincode events. Every query goes through "
        "the gateway signed by --identity; nothing is ever submitted. Page by page: docs/explorer.md.")
    add_connection_args(p, default_identity="auditor")
    p.add_argument("--port", type=_port, default=8080, metavar="P", help="TCP port (default 8080; 0 = any free port)")
    p.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                   help="address to bind (default 127.0.0.1: this machine only; anything else exposes the ledger's "
                   "contents to the network, use TLS then)")
    p.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--report", action="append", type=Path, default=[], metavar="PATH",
                   help="demo report.json (or a folder holding report folders) for accuracy per round; repeatable "
                   "(default: search the network folder and ./reports); only rounds whose model hash matches the "
                   "ledger are used")
    p.add_argument("--no-live", dest="live", action="store_false",
                   help="do not follow chaincode events (pages then update on reload only)")
    p.set_defaults(func=lambda args: run(_serve, args))


def _serve(args: argparse.Namespace) -> int:
    from fedchain.explorer.server import ServeOptions, is_loopback, serve

    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    for path in filter(None, (args.tls_cert, args.tls_key)):
        if not path.is_file():
            print(f"error: {path} is not a file", file=sys.stderr)
            return 2
    if not is_loopback(args.host):
        print(f"warning: binding {args.host}: other machines can read the ledger through this explorer"
              + ("" if args.tls_cert else " over plain HTTP"), file=sys.stderr)
    return serve(ServeOptions(args.network, args.identity, args.host, args.port, args.tls_cert, args.tls_key,
                              tuple(args.report), args.live))
