"""`fedchain audit verify`: fetch every block through the gateway and re-validate the whole history.

Exit code 0 when the chain and the FL protocol check out, 4 when the audit found problems
(so scripts and CI can gate on it), 1 when the audit could not run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fedchain.cli.operator import add_connection_args, run


def add_verify(asub: argparse._SubParsersAction) -> None:
    p = asub.add_parser(
        "verify",
        help="re-validate the chain from block 0: hash chain, signatures, policy, MVCC replay, FL rounds",
        description="Reads every block with the qscc system chaincode (as any Fabric client can), then checks "
        "the header hash chain, the orderer's block signatures, every creator and endorser signature against "
        "the MSPs of the channel's config block, the endorsement policy, the validation flags by replaying "
        "the read/write sets, and the FL protocol: roles per function, the round state machine, attestation "
        "quorums and that each published model hashes to the attested value.",
    )
    add_connection_args(p, default_identity="auditor")
    p.add_argument("--policy", default="MAJORITY",
                   help="endorsement policy of the fedchain chaincode: MAJORITY (default), ANY, ALL or MSP ids, comma separated")
    p.add_argument("--out", default=None, metavar="DIR", help="write audit.json and audit.md into DIR")
    p.add_argument("--json", action="store_true", help="print the full JSON report")
    p.set_defaults(func=lambda args: run(_verify, args))


def _verify(args: argparse.Namespace) -> int:
    import json

    from fedchain.audit.report import run_audit, write_audit_report
    from fedchain.netconfig import load_network

    policy: str | list[str] = args.policy
    if policy.upper() in ("MAJORITY", "ANY", "ALL"):
        policy = policy.upper()
    else:
        policy = [p.strip() for p in policy.split(",") if p.strip()]
    cfg = load_network(args.network)
    with cfg.connect(args.identity) as gw:
        report = run_audit(gw.network(cfg.channel), cfg.chaincode, policy, progress=sys.stderr.isatty())
    if args.out:
        for path in write_audit_report(report, Path(args.out)):
            print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        chain, fl = report["chain"], report["fl"]
        rounds = [r for r in fl["rounds"] if r["round_id"] > 0]
        print(f"blocks {chain['height']}, transactions {chain['transactions']} "
              f"({', '.join(f'{k} {v}' for k, v in chain['validation_codes'].items())})")
        print(f"rounds {len(rounds)}: " + (", ".join(f"{r['round_id']} {r['state']}" for r in rounds) or "none"))
        findings = chain["findings"] + fl["findings"]
        for f in findings:
            print(f"FINDING block {f['block']} tx {f['tx_id'][:16]}: {f['problem']}")
        print("audit OK: chain and FL protocol verified" if report["ok"] else f"audit FAILED: {len(findings)} finding(s)")
    return 0 if report["ok"] else 4
