"""`python -m fedchain.fabricnet up|down|status|enroll|compose [--network D] [options]`: the older operator
entry, kept for scripts that call it. It is `fedchain network ... --fabric` with the network folder
defaulting to .fedchain-fabric: one code path (fedchain.cli.network) for every entry point.
"""

from __future__ import annotations

import os
import sys

from fedchain.cli.main import main as fedchain_main

COMMANDS = ("up", "down", "status", "enroll", "compose")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: python -m fedchain.fabricnet {{{','.join(COMMANDS)}}} [--network D] [options]\n"
              "  same as `fedchain network ACTION` (up adds --fabric); D defaults to .fedchain-fabric",
              file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    os.environ.setdefault("FEDCHAIN_NETWORK", ".fedchain-fabric")
    extra = {"up": ["--fabric"], "status": ["--json"]}.get(args[0], [])  # status: JSON, as this entry always printed
    return fedchain_main(["network", args[0], *extra, *args[1:]])


if __name__ == "__main__":
    sys.exit(main())
