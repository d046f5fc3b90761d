"""`fedchain` command line: one sub-command module per area.

Each module in COMMAND_MODULES exposes `register(subparsers)` which adds its
sub-command(s) and sets `func` (called with the parsed args; returns an exit code).
Modules are imported lazily by name so that `fedchain --help` stays fast and an
area under construction cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..mpyc_import import import_quietly

COMMAND_MODULES = [
    "fedchain.cli.network",
    "fedchain.cli.data",
    "fedchain.cli.bench",
    "fedchain.cli.audit",
    "fedchain.cli.operator",
    "fedchain.cli.hospital",
    "fedchain.cli.demo",
    "fedchain.cli.explorer",
]


def _import_mpyc_quietly() -> None:
    """See fedchain.mpyc_import: MPyC must not parse fedchain's command line."""
    try:
        import_quietly("mpyc")
    except ImportError:
        pass


def build_parser() -> argparse.ArgumentParser:
    _import_mpyc_quietly()
    parser = argparse.ArgumentParser(
        prog="fedchain",
        description="Secure federated learning for hospitals on Hyperledger Fabric "
        "with secret-shared (MPC) verification of every update.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (never logs secrets)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # area not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
