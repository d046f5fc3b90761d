"""`fedchain audit verify`: fetch every block through the gateway and re-validate the whole history.

Exit code 0 when the chain, the FL protocol and the world state check out, 4 when the audit found
problems (so scripts and CI can gate on it), 1 when the audit could not run, 2 for bad arguments.
The last line before the verdict is the checkpoint to pass as --expect-block next time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fedchain.cli.operator import add_connection_args, run


def _checkpoint(text: str) -> tuple[int, str]:
    """argparse type for N:HASH: a clear usage error (exit 2) instead of a traceback."""
    from fedchain.audit.chain import parse_checkpoint

    try:
        return parse_checkpoint(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: the tolerance must be 0 or more seconds")
    return value


def add_verify(asub: argparse._SubParsersAction) -> None:
    p = asub.add_parser(
        "verify",
        help="re-validate the chain from block 0: hash chain, signatures, policy, MVCC replay, FL rounds, world state",
        description="Reads every block with the qscc system chaincode (as any Fabric client can), then checks "
        "the header hash chain and any trusted checkpoints, the orderer's block signatures, every creator and "
        "endorser signature against the MSPs of the channel's config block, the endorsement policy Fabric "
        "applies to each transaction (lifecycle transactions under the config block's policies), the validation "
        "flags by replaying the read/write sets, timestamps against block order, and the FL protocol: "
        "registered roles per function, enrolment caps, deadlines, the round state machine, the FLTrust "
        "reference, attestation quorums and that each published model hashes to the attested value. Finally it "
        "compares the world state the write sets give with what the contract serves now.",
    )
    add_connection_args(p, default_identity="auditor")
    p.add_argument("--policy", default="MAJORITY",
                   help="endorsement policy of the fedchain chaincode: MAJORITY (default), ANY, ALL or MSP ids, comma separated")
    p.add_argument("--expect-block", dest="checkpoints", action="append", type=_checkpoint, default=[],
                   metavar="N:HASH", help="trusted checkpoint: block N must have this header hash (hex), as printed "
                   "by a previous audit; repeatable. A different hash or a shorter chain is a finding")
    p.add_argument("--time-tolerance", type=_seconds, default=60.0, metavar="S",
                   help="report a transaction stamped more than S seconds before one of an earlier block (default 60)")
    p.add_argument("--out", default=None, metavar="DIR", help="write audit.json and audit.md into DIR")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.set_defaults(func=lambda args: run(_verify, args))


def _policy(text: str) -> str | list[str]:
    if text.upper() in ("MAJORITY", "ANY", "ALL"):
        return text.upper()
    return [p.strip() for p in text.split(",") if p.strip()]


def _verify(args: argparse.Namespace) -> int:
    import json

    from fedchain.audit.report import run_audit, write_audit_report
    from fedchain.netconfig import load_network

    cfg = load_network(args.network)
    with cfg.connect(args.identity) as gw:
        report = run_audit(gw.network(cfg.channel), cfg.chaincode, _policy(args.policy), progress=sys.stderr.isatty(),
                           checkpoints=dict(args.checkpoints), time_tolerance_s=args.time_tolerance)
    if args.out:
        for path in write_audit_report(report, Path(args.out)):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_verdict(report)
    return 0 if report["ok"] else 4


def print_verdict(report: dict[str, Any]) -> None:
    from fedchain.audit.report import all_findings, invalid_summary, where

    chain, fl, state = report["chain"], report["fl"], report.get("state")
    rounds = [r for r in fl["rounds"] if r["round_id"] > 0]
    print(f"blocks {chain['height']}, transactions {chain['transactions']} "
          f"({', '.join(f'{k} {v}' for k, v in chain['validation_codes'].items())})")
    print(f"rounds {len(rounds)}: " + (", ".join(f"{r['round_id']} {r['state']}" for r in rounds) or "none"))
    if state is not None:
        print(f"world state: {state['keys_compared']} keys compared with the chain's write sets")
    if chain["checkpoints"]:
        print(f"trusted checkpoints: {', '.join(f'block {n}' for n in chain['checkpoints'])}")
    for line in invalid_summary(report):
        print(f"invalid: {line}")
    for note in chain["notes"]:
        print(f"note: {note}")
    findings = all_findings(report)
    for f in findings:
        print(f"FINDING {where(f)}: {f['problem']}")
    if report["head"]["checkpoint"]:
        print(f"head: block {report['head']['block']}; next time: --expect-block {report['head']['checkpoint']}")
    print("audit OK: chain, FL protocol and world state verified" if report["ok"]
          else f"audit FAILED: {len(findings)} finding(s)")
