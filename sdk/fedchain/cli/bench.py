"""`fedchain bench mpc|inference|wan`: the MPC verification + aggregation benchmark, the encrypted-inference
check's benchmark (three node processes each) and the WAN benchmark (three MPC hosts as network namespaces
with a round-trip time between them; root only)."""

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
    w = sub.add_parser("wan", help="three MPC hosts (network namespaces, root only) with an emulated RTT and rate: "
                                   "per phase seconds, CPU seconds, bytes and sequential MPC rounds per RTT")
    w.add_argument("--rtt", default="0,10,50,100", help="round-trip times in ms, comma-separated (default 0,10,50,100)")
    w.add_argument("--rate", default="100mbit", help="every host's uplink rate, e.g. 100mbit; 'none' = unlimited")
    w.add_argument("--clients", type=int, default=10, help="number of hospitals N (default 10)")
    w.add_argument("--dim", type=int, default=100_000, help="update length D (default 100000)")
    w.add_argument("--reps", type=int, default=1, help="repetitions per RTT, medians reported (default 1)")
    w.add_argument("--no-upload", action="store_true", help="skip the share upload over the real mTLS intake")
    w.add_argument("--no-attest", action="store_true", help="skip the ledger transaction (no ledger host started)")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--json", type=Path, help="write the full report here")
    w.set_defaults(func=_run_wan)


def _run_wan(args: argparse.Namespace) -> int:
    from fedchain.netctl.netns import can_create_namespaces, parse_rate

    try:
        rtts = tuple(float(v) for v in args.rtt.split(",") if v.strip())
        rate = None if args.rate.lower() in ("none", "0", "") else args.rate
        parse_rate(rate)
    except ValueError as e:
        print(f"bench wan: {e}")
        return 2
    if not rtts or any(r < 0 or r > 2000 for r in rtts):
        print("bench wan: --rtt needs values in [0, 2000] ms")
        return 2
    if not (3 <= args.clients <= 100 and 1 <= args.dim <= 1 << 22 and 1 <= args.reps <= 20):
        print("bench wan: need 3 <= clients <= 100, 1 <= dim <= 2^22, 1 <= reps <= 20")
        return 2
    ok, why = can_create_namespaces()
    if not ok:
        print(f"bench wan: cannot create network namespaces: {why}")
        return 2
    from fedchain_mpc import bench_wan  # CLI layer may import the node package

    settings = bench_wan.WanSettings(rtts_ms=rtts, rate=rate, clients=args.clients, dim=args.dim, reps=args.reps,
                                     seed=args.seed, upload=not args.no_upload,
                                     attest=not args.no_attest)
    report = bench_wan.run(settings)
    print(bench_wan.table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"report written to {args.json}")
    ok = all(r["accept_equals_plaintext"] and r["nodes_agree"] for r in report["results"])
    return 0 if ok else 1


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
