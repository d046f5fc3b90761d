"""`make bench` entry: the WAN benchmark (fedchain bench wan) at N=10, D=100k, RTT 0/10/50/100 ms, 100 mbit.

Usage: python bench/bench_wan.py [--json out.json]
Needs root (network namespaces): otherwise it prints why and exits 0 (skipped, not failed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    from fedchain.netctl.netns import can_create_namespaces

    ok, why = can_create_namespaces()
    if not ok:
        print(f"bench_wan skipped: {why}")
        if args.json:
            args.json.write_text(json.dumps({"skipped": why}))
        return 0
    from fedchain_mpc import bench_wan

    report = bench_wan.run(bench_wan.WanSettings())
    print(bench_wan.table(report), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0 if all(r["accept_equals_plaintext"] and r["nodes_agree"] for r in report["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())
