"""Run a full audit through the gateway and write it as JSON and Markdown.

Steps: (1) every block from 0 through qscc, re-validated (audit/chain.py) and checked against the
auditor's trusted checkpoints; (2) timestamps against block order (audit/timeline.py); (3) the FL
contract replayed from the transactions (audit/fl.py); (4) with a live network, the world state
rebuilt from the write sets compared with what the contract serves now (audit/state.py).
Steps 1-3 need only the blocks (`audit_blocks`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fedchain.audit.chain import ChainAudit, ChainAuditor
from fedchain.audit.fl import FLAudit, FLAuditor
from fedchain.audit.state import compare_world_state
from fedchain.audit.timeline import DEFAULT_TOLERANCE_S, backwards_timestamps


def run_audit(network: Any, chaincode: str = "fedchain", policy: str | list[str] = "MAJORITY",
              progress: bool = False, *, checkpoints: Mapping[int, str] | None = None,
              time_tolerance_s: float = DEFAULT_TOLERANCE_S, compare_state: bool = True,
              max_catch_up: int = 5) -> dict[str, Any]:
    """Fetch every block with qscc (as any client can), verify chain + FL protocol, then compare the
    live world state with the one the chain's write sets give.

    The network keeps committing while we read (a late attestation): the state is compared only when
    the chain height was the same before and after the state queries, i.e. the live state is exactly
    the blocks audited; otherwise the new blocks are fetched and the comparison is repeated."""
    from fedchain.gateway import qscc

    auditor = ChainAuditor(policies={chaincode: policy}, checkpoints=checkpoints)
    height, state = 0, None
    for _ in range(max_catch_up):
        target = qscc.chain_info(network).height
        blocks = qscc.blocks(network, height, target)
        if progress:
            from tqdm import tqdm

            blocks = tqdm(blocks, initial=height, total=target, desc="audit", unit="block", leave=False)
        for block in blocks:
            auditor.feed(block)
        height = target
        if not compare_state:
            break
        compared, findings = compare_world_state(network.contract(chaincode), auditor.result.transactions, chaincode)
        state = {"keys_compared": compared, "findings": [f.as_dict() for f in findings], "height": height}
        if qscc.chain_info(network).height == height:
            break
    else:
        state = {"keys_compared": 0, "height": height, "findings": [
            {"block": -1, "tx_id": "", "problem": f"the world state could not be compared: the chain kept growing "
                                                  f"during {max_catch_up} attempts (audit a quieter moment)"}]}
    chain, fl = finish_audit(auditor.finish(), chaincode, time_tolerance_s)
    return build_report(chain, fl, state)


def audit_chain(blocks: Iterable[Any], chaincode: str = "fedchain", policy: str | list[str] = "MAJORITY", *,
                checkpoints: Mapping[int, str] | None = None,
                time_tolerance_s: float = DEFAULT_TOLERANCE_S) -> tuple[ChainAudit, FLAudit]:
    """Steps 1-3 on blocks from 0 in order; timestamp findings join the chain's."""
    chain = ChainAuditor(policies={chaincode: policy}, checkpoints=checkpoints).feed_all(blocks)
    return finish_audit(chain, chaincode, time_tolerance_s)


def finish_audit(chain: ChainAudit, chaincode: str, time_tolerance_s: float) -> tuple[ChainAudit, FLAudit]:
    """Steps 2-3 once every block is in: timestamps against block order, then the FL contract replay."""
    chain.findings.extend(backwards_timestamps(chain.transactions, time_tolerance_s))
    return chain, FLAuditor(chaincode).run(chain)


def audit_blocks(blocks: Iterable[Any], chaincode: str = "fedchain", policy: str | list[str] = "MAJORITY", *,
                 checkpoints: Mapping[int, str] | None = None,
                 time_tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict[str, Any]:
    """The offline audit (no world-state step) as a report dict."""
    return build_report(*audit_chain(blocks, chaincode, policy, checkpoints=checkpoints,
                                     time_tolerance_s=time_tolerance_s))


def build_report(chain: ChainAudit, fl: FLAudit, state: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report dict; `head.checkpoint` is what to pass as --expect-block next time."""
    head = {"height": chain.height, "block": chain.height - 1, "hash": chain.head_hash,
            "checkpoint": f"{chain.height - 1}:{chain.head_hash}" if chain.height else None}
    report: dict[str, Any] = {"chain": chain.summary(), "fl": fl.summary(), "head": head}
    if state is not None:
        report["state"] = state
    report["ok"] = chain.ok and not fl.findings and not (state or {}).get("findings")
    return report


# Why a transaction can be flagged invalid; none of them wrote anything (Fabric keeps them in the block).
WHY_INVALID = {
    "MVCC_READ_CONFLICT": "a transaction committed just before it changed a record it had read (expected in "
                          "fedchain: MPC nodes attesting or publishing the same round at once, or a late attestation "
                          "racing the next CreateRound, since they write the same records); nothing was written and the "
                          "client retried on fresh state",
    "PHANTOM_READ_CONFLICT": "a range it had read changed before it committed; nothing was written",
    "ENDORSEMENT_POLICY_FAILURE": "not endorsed by enough organisations; nothing was written",
    "DUPLICATE_TXID": "a transaction id already on the ledger (a replayed envelope); nothing was written",
}


def invalid_summary(report: dict[str, Any]) -> list[str]:
    """One line per validation code other than VALID: how many, by which functions, and what it means."""
    groups: dict[str, dict[str, int]] = {}
    for tx in report["chain"].get("invalid", []):
        by_fn = groups.setdefault(tx["code"], {})
        by_fn[tx["function"] or "?"] = by_fn.get(tx["function"] or "?", 0) + 1
    lines = []
    for code, by_fn in sorted(groups.items()):
        functions = ", ".join(f"{fn} {n}" for fn, n in sorted(by_fn.items(), key=lambda kv: -kv[1]))
        why = WHY_INVALID.get(code, "flagged invalid by the peers; nothing was written")
        lines.append(f"{code} {sum(by_fn.values())} ({functions}): {why}")
    return lines


def all_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return report["chain"]["findings"] + report["fl"]["findings"] + (report.get("state") or {}).get("findings", [])


def where(finding: dict[str, Any]) -> str:
    """'block 12 tx 1a2b…' or 'world state' for a record no transaction wrote."""
    if finding["block"] < 0:
        return "world state"
    return f"block {finding['block']}" + (f" tx {finding['tx_id'][:16]}" if finding["tx_id"] else "")


def write_audit_report(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / "audit.json"]
    out[0].write_text(json.dumps(report, indent=2) + "\n")
    chain, fl = report["chain"], report["fl"]
    ws = report.get("state")
    lines = [
        "# fedchain audit", "",
        f"Verdict: **{'OK' if report['ok'] else 'PROBLEMS FOUND'}**", "",
        f"- blocks: {chain['height']}, head `{chain['head_hash'][:16]}…`, transactions: {chain['transactions']}",
        f"- checkpoint for the next audit: `--expect-block {report['head']['checkpoint']}`",
        f"- trusted checkpoints checked: {', '.join(f'{n}:{h[:16]}…' for n, h in chain['checkpoints'].items()) or 'none'}",
        "- world state: " + (f"{ws['keys_compared']} keys compared with the live network" if ws
                             else "not compared (no live network)"),
        f"- validation codes: {', '.join(f'{k}={v}' for k, v in chain['validation_codes'].items())}",
        f"- organisations (from the config block): {', '.join(chain['application_orgs'])}",
        f"- genesis model: `{fl['genesis_model_hash']}`; attestation quorum: {fl['quorum']}; "
        f"privacy floor (min accepted updates per aggregate): {fl.get('min_accepted')}",
        f"- calls: {', '.join(f'{k}×{v}' for k, v in fl['calls'].items())}", "",
        "| round | state | submitted | attested by | accepted | rejected | model hash | published |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in fl["rounds"]:
        if r["round_id"] == 0:
            continue
        # FAILED and DISPUTED rounds end without a model: the next round builds on the last FINALIZED one
        state = f"{r['state']} ({r['reason']})" if r.get("reason") else r["state"]
        if r["state"] == "FINALIZED":
            published = "yes" if r["published_hash"] == r["finalized_hash"] else "no"
        else:
            published = "no model" if r["published_hash"] is None else "yes (not allowed)"
        lines.append(
            f"| {r['round_id']} | {state} | {len(r['submitted'])} | {len(r['attested_by'])} | "
            f"{', '.join(r['accepted']) or '-'} | {', '.join(f'{k} ({v})' for k, v in r['rejected'].items()) or '-'} | "
            f"`{(r['finalized_hash'] or '-')[:16]}` | {published} |"
        )
    invalid = invalid_summary(report)
    if invalid:
        lines += ["", "## Invalid transactions (re-validated: their flags are right)", ""] + [f"- {x}" for x in invalid]
    findings = all_findings(report)
    lines += ["", "## Findings", ""] + ([f"- {where(f)}: {f['problem']}" for f in findings] or ["none"])
    if chain["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in chain["notes"]]
    (folder / "audit.md").write_text("\n".join(lines) + "\n")
    out.append(folder / "audit.md")
    return out
