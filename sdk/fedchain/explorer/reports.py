"""Demo reports (report.json) matched to the ledger, for accuracy per round and the malicious marks.

Accuracy is measured by whoever ran the campaign, not stored on the ledger, so it can only come from a
report. A report is trusted for a round only where it agrees with the ledger: same round id and the
model hash the MPC nodes' quorum finalized (a report of another network, or of an older run on a reused
folder, matches nothing and is ignored).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedchain.records import DISPUTED, FAILED, FINALIZED, Round, RoundId

MAX_REPORT_FILES = 200
MAX_REPORT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReportRound:
    round_id: RoundId
    accuracy: float | None
    loss: float | None
    malicious: tuple[str, ...]
    accepted: tuple[str, ...]
    rejected: dict[str, str]
    source: Path


def default_report_places(network_dir: Path) -> list[Path]:
    """Where `fedchain demo` leaves reports: its --report-dir (default reports/ in the working folder)."""
    return [network_dir, Path.cwd() / "reports"]


def find_reports(places: list[Path]) -> list[Path]:
    """report.json files given directly or up to two folders below a given folder, newest first."""
    found: set[Path] = set()
    for place in places:
        if place.is_file():
            found.add(place.resolve())
        elif place.is_dir():
            for pattern in ("report.json", "*/report.json", "*/*/report.json"):
                found.update(p.resolve() for p in place.glob(pattern) if p.is_file())
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_REPORT_FILES]


def _load(path: Path) -> dict[str, Any] | None:
    """A report's JSON, parsed again only when the file changed (pages and plots ask for it often)."""
    try:
        st = path.stat()
    except OSError:
        return None
    if st.st_size > MAX_REPORT_BYTES:
        return None
    return _parse(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _parse(path: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("rounds"), list) else None


def ledger_hash(rnd: Round) -> str | None:
    """The model a round ended with: the finalized hash, else (FAILED) the base it kept."""
    if rnd.state == FINALIZED:
        return rnd.finalized.model_hash if rnd.finalized is not None else None
    if rnd.state in (FAILED, DISPUTED):
        return rnd.base_model_hash
    return None


def match_reports(files: list[Path], rounds: list[Round]) -> dict[RoundId, ReportRound]:
    """round id -> the newest report's record of that round whose model hash equals the ledger's."""
    want = {r.round_id: ledger_hash(r) for r in rounds if r.round_id > 0}
    out: dict[RoundId, ReportRound] = {}
    for path in files:  # newest first: the first match wins
        data = _load(path)
        if data is None:
            continue
        for rec in data["rounds"]:
            if not isinstance(rec, dict):
                continue
            rid = rec.get("round")
            if not isinstance(rid, int) or rid in out or want.get(rid) is None or rec.get("model_hash") != want[rid]:
                continue
            acc, loss = rec.get("accuracy"), rec.get("loss")
            out[RoundId(rid)] = ReportRound(
                RoundId(rid), float(acc) if isinstance(acc, int | float) else None,
                float(loss) if isinstance(loss, int | float) else None,
                tuple(str(h) for h in rec.get("malicious") or []), tuple(str(h) for h in rec.get("accepted") or []),
                {str(k): str(v) for k, v in (rec.get("rejected") or {}).items()}, path)
    return out


def decision_grid(rounds: list[Round], hospitals: list[str], reports: dict[RoundId, ReportRound],
                  live: dict[RoundId, list[str]] | None = None) -> list[dict[str, Any]]:
    """One row per hospital: per round (id >= 1) the decision the MPC nodes attested on the ledger.

    Cell kinds: accepted, rejected (with the reason code), submitted (not judged yet), undecided (the round
    ended without agreed decisions: DISPUTED), none (no update). `live` holds the updates of rounds not
    closed yet (the round record lists them only from CloseRound on).
    `malicious` comes from a matching report (the demo knows who attacked; the ledger does not)."""
    from fedchain.explorer.ledger import round_outcome

    live = live or {}
    rows = []
    for h in hospitals:
        cells = []
        for rnd in rounds:
            if rnd.round_id == 0:
                continue
            outcome = round_outcome(rnd)
            rep = reports.get(rnd.round_id)
            bad = rep is not None and h in rep.malicious
            if h in outcome["rejected"]:
                cell = {"kind": "rejected", "reason": outcome["rejected"][h]}
            elif h in outcome["accepted"]:
                cell = {"kind": "accepted", "reason": ""}
            elif h in (rnd.submitted or ()) or h in live.get(rnd.round_id, []):
                cell = {"kind": "undecided" if outcome["over"] else "submitted", "reason": ""}
            else:
                cell = {"kind": "none", "reason": ""}
            cells.append({**cell, "round_id": rnd.round_id, "malicious": bad})
        rows.append({"hospital": h, "cells": cells})
    return rows
