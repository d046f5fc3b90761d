"""`fedchain operator run`'s output: one live line per round, and report.json in the demo's schema.

The report is rebuilt from the ledger (every round 1..N that has ended), so a restarted operator
writes the whole campaign, not just the rounds it drove itself; timings exist only for those.
Accuracy needs a labelled test set (`--test-data`): without one it is null.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fedchain.demo.report import RoundRecord, build_report, short_id
from fedchain.records import FINALIZED, Round, RoundId

from .driver import RoundResult


def round_line(res: RoundResult, accuracy: float | None = None) -> str:
    """round, state, submitted, accepted, rejected with reasons, model hash, seconds (one line)."""
    rejected = " ".join(f"{short_id(h)}:{why}" for h, why in sorted(
        res.rejected.items(), key=lambda kv: (len(kv[0]), kv[0]))) or "-"
    acc = f"  acc {accuracy * 100:5.1f}%" if accuracy is not None else ""
    model = res.model_hash[:16] + ("" if res.new_model else " (unchanged)")
    return (f"round {res.round_id:>3}  {res.state:9s}  submitted {len(res.submitted):>2}  accepted "
            f"{len(res.accepted):>2}  rejected {len(res.rejected):>2} {rejected:<24}  model {model}{acc}  "
            f"{res.timings_s.get('total', 0.0):6.1f} s")


class Evaluator:
    """Test accuracy of ledger models, cached by hash (a FAILED round's model is its base's)."""

    def __init__(self, spec: Any, images: Any, labels: Any) -> None:
        self.spec, self.images, self.labels = spec, images, labels
        self._cache: dict[str, tuple[float, float]] = {}

    def __call__(self, model_hash: str, model: bytes) -> tuple[float, float]:
        if model_hash not in self._cache:
            from fedchain.models import load_model_bytes
            from fedchain.training import evaluate

            self._cache[model_hash] = evaluate(load_model_bytes(model, self.spec), self.images, self.labels)
        return self._cache[model_hash]


def _record(fl: Any, rnd: Round, evaluator: Evaluator | None,
            timings: dict[str, float]) -> tuple[RoundRecord, dict[str, Any]]:
    """One round of report.json from its ledger record: the demo's fields, and state/submitted/reason."""
    fin = rnd.finalized if rnd.state == FINALIZED else None
    outcome = fin or rnd.agreed
    model_hash = fin.model_hash if fin else rnd.base_model_hash
    acc = loss = None
    if evaluator is not None:
        model_round = rnd.round_id if fin else rnd.base_round_id
        acc, loss = evaluator(model_hash, fl.get_model(model_round).model)
    rec = RoundRecord(round=rnd.round_id, accuracy=acc, loss=loss,  # type: ignore[arg-type]
                      accepted=list(outcome.accepted if outcome else ()),
                      rejected=dict(outcome.rejected if outcome else {}),
                      malicious=[], model_hash=model_hash, timings_s=timings)
    extra: dict[str, Any] = {"state": rnd.state, "submitted": list(rnd.submitted or ())}
    if rnd.failure_reason or rnd.dispute_reason:
        extra["reason"] = rnd.failure_reason or rnd.dispute_reason
    return rec, extra


def campaign_report(fl: Any, config: dict[str, Any], last_round: int, timings: dict[RoundId, dict[str, float]],
                    evaluator: Evaluator | None) -> dict[str, Any]:
    """report.json for rounds 1..last_round as far as they have ended on the ledger. No hospital is known
    to be malicious, so detection counts every rejection as a false alarm (fp) and every acceptance as tn."""
    rounds = [r for r in fl.list_rounds() if 1 <= r.round_id <= last_round and r.over]
    rounds.sort(key=lambda r: r.round_id)
    pairs = [_record(fl, r, evaluator, timings.get(r.round_id, {})) for r in rounds]
    initial = None
    if evaluator is not None:
        genesis = fl.get_model(0)
        initial = evaluator(genesis.sha256, genesis.model)[0]
    report = build_report(config, [rec for rec, _ in pairs], baseline_accuracy=initial)
    for row, (_, extra) in zip(report["rounds"], pairs, strict=True):
        row.update(extra)
    return report


def write_json(path: str | Path, report: dict[str, Any]) -> None:
    """Atomically: a kill while writing leaves the previous report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
