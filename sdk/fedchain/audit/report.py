"""Run a full audit through the gateway and write it as JSON, Markdown and a PNG timeline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedchain.audit.chain import ChainAuditor
from fedchain.audit.fl import FLAuditor


def run_audit(network: Any, chaincode: str = "fedchain", policy: str | list[str] = "MAJORITY",
              progress: bool = False) -> dict[str, Any]:
    """Fetch every block with qscc (as any client can) and verify chain + FL protocol."""
    from fedchain.gateway import qscc

    height = qscc.chain_info(network).height
    blocks = qscc.blocks(network, 0, height)
    if progress:
        from tqdm import tqdm

        blocks = tqdm(blocks, total=height, desc="audit", unit="block", leave=False)
    return audit_blocks(blocks, chaincode, policy)


def audit_blocks(blocks: Iterable[Any], chaincode: str = "fedchain", policy: str | list[str] = "MAJORITY") -> dict[str, Any]:
    """The offline part of the audit: blocks from 0 in order -> report dict."""
    chain = ChainAuditor(policies={chaincode: policy}).feed_all(blocks)
    fl = FLAuditor(chaincode).run(chain)
    return {"chain": chain.summary(), "fl": fl.summary(), "ok": chain.ok and not fl.findings}


def write_audit_report(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = [folder / "audit.json"]
    out[0].write_text(json.dumps(report, indent=2) + "\n")
    chain, fl = report["chain"], report["fl"]
    lines = [
        "# fedchain audit", "",
        f"Verdict: **{'OK' if report['ok'] else 'PROBLEMS FOUND'}**", "",
        f"- blocks: {chain['height']}, head `{chain['head_hash'][:16]}…`, transactions: {chain['transactions']}",
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
    findings = chain["findings"] + fl["findings"]
    lines += ["", "## Findings", ""] + (
        [f"- block {f['block']} tx `{f['tx_id'][:16]}`: {f['problem']}" for f in findings] or ["none"]
    )
    (folder / "audit.md").write_text("\n".join(lines) + "\n")
    out.append(folder / "audit.md")
    return out
