"""Demo reports are trusted for a round only where they agree with the ledger (fedchain.explorer.reports)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fedchain.explorer.reports import decision_grid, find_reports, match_reports
from fedchain.records import Round

A, B, BASE = "a" * 64, "b" * 64, "0" * 64


def rnd(**fields) -> Round:
    """A round record with the fields a test cares about (the rest as CreateRound would have them)."""
    if fields.get("genesis"):
        return Round.from_json({"model_spec": {"param_count": 1}, **fields})
    return Round.from_json({"base_round_id": fields["round_id"] - 1, "base_model_hash": BASE, "deadline": 1.7e9,
                            "min_updates": 1, "model_spec": {"param_count": 1}, **fields})


ROUNDS = [
    rnd(round_id=0, state="FINALIZED", genesis=True, finalized={"model_hash": BASE, "accepted": []}),
    rnd(round_id=1, state="FINALIZED", base_model_hash=BASE, submitted=["h1", "h2", "h3"],
        finalized={"model_hash": A, "accepted": ["h1", "h2"], "rejected": {"h3": "norm"}}),
    rnd(round_id=2, state="FAILED", base_model_hash=A, submitted=["h1", "h3"], failure_reason="too_few_accepted",
        agreed={"model_hash": A, "accepted": ["h1"], "rejected": {"h3": "cosine"}}),
    rnd(round_id=3, state="OPEN", base_model_hash=A, submitted=None),
]
LIVE = {3: ["h2"]}  # round 3's updates so far (OPEN: its record lists none yet)


def report(path: Path, rounds: list[dict], mtime: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rounds": rounds}))
    os.utime(path, (mtime, mtime))
    return path


def test_only_rounds_whose_hash_matches_the_ledger_are_used(tmp_path: Path) -> None:
    good = report(tmp_path / "reports" / "run1" / "report.json", [
        {"round": 1, "accuracy": 0.8, "loss": 0.5, "model_hash": A, "malicious": ["h3"], "accepted": ["h1", "h2"],
         "rejected": {"h3": "norm"}},
        {"round": 2, "accuracy": 0.8, "loss": 0.5, "model_hash": A, "malicious": ["h3"]},  # FAILED: kept its base
    ], 1000)
    other = report(tmp_path / "reports" / "other" / "report.json", [  # newer, but another network's models
        {"round": 1, "accuracy": 0.1, "model_hash": B, "malicious": []},
    ], 2000)
    report(tmp_path / "broken" / "report.json", [], 3000).write_text("{not json")
    files = find_reports([tmp_path / "reports", tmp_path / "broken", tmp_path / "missing"])
    assert set(files) == {good.resolve(), other.resolve(), (tmp_path / "broken" / "report.json").resolve()}
    matched = match_reports(files, ROUNDS)
    assert sorted(matched) == [1, 2]
    assert matched[1].accuracy == 0.8 and matched[1].source == good.resolve()
    assert matched[2].malicious == ("h3",)


def test_decision_grid_kinds(tmp_path: Path) -> None:
    grid = decision_grid(ROUNDS, ["h1", "h2", "h3"], {}, LIVE)
    kinds = {row["hospital"]: [(c["round_id"], c["kind"], c["reason"]) for c in row["cells"]] for row in grid}
    assert kinds["h1"] == [(1, "accepted", ""), (2, "accepted", ""), (3, "none", "")]
    assert kinds["h2"] == [(1, "accepted", ""), (2, "none", ""), (3, "submitted", "")]
    assert kinds["h3"] == [(1, "rejected", "norm"), (2, "rejected", "cosine"), (3, "none", "")]
    disputed = rnd(round_id=4, state="DISPUTED", submitted=["h1"], dispute_reason="attestations differ")
    assert decision_grid([disputed], ["h1"], {})[0]["cells"][0]["kind"] == "undecided"
