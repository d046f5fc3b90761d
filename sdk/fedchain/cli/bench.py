"""`fedchain bench mpc`: the MPC verification + aggregation benchmark (three node processes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="benchmarks")
    sub = p.add_subparsers(dest="bench_command", required=True)
    m = sub.add_parser("mpc", help="three MPC node processes on 127.0.0.1 verify and aggregate synthetic updates")
    m.add_argument("--clients", type=int, default=10, help="number of hospitals N (default 10)")
    m.add_argument("--dim", type=int, default=100_000, help="update length D (default 100000)")
    m.add_argument("--poisoned", type=int, default=0, help="poisoned updates K among N (default 0)")
    m.add_argument("--reps", type=int, default=1, help="repetitions, medians reported (default 1)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--json", type=Path, help="write the full report here")
    m.set_defaults(func=_run_mpc)


def _run_mpc(args: argparse.Namespace) -> int:
    from fedchain_mpc import bench  # CLI layer may import the node package

    if not (3 <= args.clients <= 1000 and 1 <= args.dim <= 1 << 24 and 0 <= args.poisoned < args.clients):
        print("need 3 <= clients <= 1000, 1 <= dim <= 2^24, 0 <= poisoned < clients")
        return 2
    report = bench.run(args.clients, args.dim, args.poisoned, reps=args.reps, seed=args.seed)
    print(bench.table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"report written to {args.json}")
    ok = report["accept_equals_plaintext"] and report["nodes_agree"] and report["max_abs_error"] <= 1e-5
    return 0 if ok else 1
