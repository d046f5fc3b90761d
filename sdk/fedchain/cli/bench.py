"""`fedchain bench mpc|inference`: the MPC verification + aggregation benchmark and the encrypted-inference
check's benchmark (three node processes each)."""

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
    i = sub.add_parser("inference", help="three MPC party processes on 127.0.0.1 run the encrypted-inference check "
                                         "(docs/inference.md)")
    i.add_argument("--hospitals", type=int, default=8, help="candidate models N (default 8)")
    i.add_argument("--batch", type=int, default=32, help="validation batch size B (default 32)")
    i.add_argument("--arch", default="cnn_pool", choices=["cnn", "cnn_pool"],
                   help="model arch, widths (8, 16), hidden 32 (default cnn_pool: ReLU after pooling)")
    i.add_argument("--degraded", type=int, default=3,
                   help="planted degraded candidates among N: label-flipped, scaled, noised (default 3)")
    i.add_argument("--dataset", default=None, help="MedMNIST-format npz (default: synthetic)")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--json", type=Path, help="write the full report here")
    i.set_defaults(func=_run_inference)


def _run_inference(args: argparse.Namespace) -> int:
    from fedchain_mpc import bench_inference  # CLI layer may import the node package

    if not (1 <= args.hospitals <= 64 and 1 <= args.batch <= 256 and 0 <= args.degraded <= args.hospitals):
        print("need 1 <= hospitals <= 64, 1 <= batch <= 256, 0 <= degraded <= hospitals")
        return 2
    report = bench_inference.run(args.hospitals, args.batch, args.arch, seed=args.seed, dataset=args.dataset,
                                 degraded=args.degraded)
    print(bench_inference.table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"report written to {args.json}")
    return 0 if report["verdicts_equal_plaintext"] and report["nodes_agree"] else 1


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
