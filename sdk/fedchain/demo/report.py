"""The demo's per-round record: live table, JSON (issue 5 schema), Markdown and PNG plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("train", "share", "mpc", "ledger", "total")


@dataclass
class RoundRecord:
    round: int
    accuracy: float
    loss: float
    accepted: list[str]
    rejected: dict[str, str]
    malicious: list[str]
    model_hash: str
    timings_s: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["timings_s"] = {k: round(float(self.timings_s.get(k, 0.0)), 3) for k in PHASES}
        return d


def detection(records: list[RoundRecord]) -> dict[str, int]:
    """Confusion counts over every (round, hospital) decision: positive = rejected."""
    tp = fp = fn = tn = 0
    for r in records:
        bad = set(r.malicious)
        for h in r.rejected:
            tp, fp = (tp + 1, fp) if h in bad else (tp, fp + 1)
        for h in r.accepted:
            fn, tn = (fn + 1, tn) if h in bad else (fn, tn + 1)
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def build_report(config: dict[str, Any], records: list[RoundRecord], baseline_accuracy: float | None = None
                 ) -> dict[str, Any]:
    report: dict[str, Any] = {
        "config": config,
        "rounds": [r.as_dict() for r in records],
        "final_accuracy": records[-1].accuracy if records else None,
        "detection": detection(records),
    }
    if baseline_accuracy is not None:
        report["initial_accuracy"] = baseline_accuracy
    return report


TABLE_HEADER = (
    f"{'round':>5} {'acc':>6} {'loss':>6} {'ok':>3} {'rej':>3}  {'rejected: reason (* = malicious)':<40}"
    f" {'missed':<10} {'train':>6} {'share':>6} {'mpc':>6} {'ledger':>6} {'total':>6}"
)


def hospital_ids(n: int) -> list[str]:
    """The simulated hospitals of a demo or simulation: hospital1..hospitalN (short_id shortens them)."""
    return [f"hospital{i + 1}" for i in range(n)]


def short_id(hospital: str) -> str:
    """hospital7 -> h7 (keeps the live table narrow); other ids unchanged."""
    return "h" + hospital[8:] if hospital.startswith("hospital") and hospital[8:].isdigit() else hospital


def table_row(r: RoundRecord) -> str:
    bad = set(r.malicious)
    rejected = " ".join(f"{short_id(h)}{'*' if h in bad else ''}:{why}" for h, why in sorted(
        r.rejected.items(), key=lambda kv: (len(kv[0]), kv[0]))) or "-"
    missed = " ".join(short_id(h) for h in sorted(bad, key=lambda h: (len(h), h)) if h in r.accepted) or "-"
    t = r.timings_s
    return (
        f"{r.round:>5} {r.accuracy * 100:5.1f}% {r.loss:6.3f} {len(r.accepted):>3} {len(r.rejected):>3}  "
        f"{rejected:<40} {missed:<10}"
        + "".join(f" {t.get(k, 0.0):6.1f}" for k in PHASES)
    )


DECISION_COLOURS = ("#4caf50", "#ff9800", "#e53935", "#1e88e5")
DECISION_LABELS = ("honest, accepted", "honest, rejected", "malicious, accepted", "malicious, rejected")


def decision_grid(rounds: list[dict[str, Any]], hospitals: list[str]) -> tuple[Any, list[list[str]]]:
    """(hospital x round codes, cell texts): 0 honest accepted, 1 honest rejected (false alarm), 2 malicious
    accepted (missed), 3 malicious rejected (caught), nan no update; a rejected cell's text is its reason code."""
    import numpy as np

    grid = np.full((len(hospitals), len(rounds)), np.nan)
    texts = [["" for _ in rounds] for _ in hospitals]
    for j, r in enumerate(rounds):
        bad = set(r["malicious"])
        for i, h in enumerate(hospitals):
            if h in r["rejected"]:
                grid[i, j] = 3 if h in bad else 1
                texts[i][j] = str(r["rejected"][h])
            elif h in r["accepted"]:
                grid[i, j] = 2 if h in bad else 0
            else:
                texts[i][j] = "no update"
    return grid, texts


def _cell_text(text: str) -> str:
    """Reason codes on short lines so that they fit a cell (missing_share: missing / share; a long code such
    as no_validation_batch gets a line per word)."""
    if len(text) > 14:
        return text.replace("_", "\n").replace(" ", "\n")
    return text.replace("_", "\n", 1).replace(" ", "\n", 1)


def decisions_figure(rounds: list[dict[str, Any]], hospitals: list[str]) -> Any:
    """Hospital x round grid coloured by decision, each rejected cell labelled with its reason code (why the MPC
    nodes rejected it), and the count per reason in the title; readable at 8 hospitals x 12 rounds."""
    from collections import Counter

    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    grid, texts = decision_grid(rounds, hospitals)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.85 * len(rounds) + 3.0), 0.45 * len(hospitals) + 1.6))
    cmap = ListedColormap(list(DECISION_COLOURS))
    ax.set_facecolor("#e0e0e0")  # no update: grey
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto")
    ax.set_xticks(np.arange(len(rounds) + 1) - 0.5, minor=True)  # white lines between cells
    ax.set_yticks(np.arange(len(hospitals) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    for i in range(len(hospitals)):
        for j in range(len(rounds)):
            if texts[i][j]:
                dark = grid[i, j] in (2, 3)  # white text on the red and blue cells
                ax.text(j, i, _cell_text(texts[i][j]), ha="center", va="center", fontsize=7.5, linespacing=0.9,
                        color="white" if dark else ("#555555" if np.isnan(grid[i, j]) else "black"))
    malicious = {h for r in rounds for h in r["malicious"]}
    ax.set_yticks(range(len(hospitals)), [h + (" *" if h in malicious else "") for h in hospitals])
    ax.set_xticks(range(len(rounds)), [str(r["round"]) for r in rounds])
    ax.set_xlabel("round (* = malicious hospital; text = the MPC nodes' reason code for a rejection)")
    ax.legend(handles=[Patch(color=c, label=lbl) for c, lbl in zip(DECISION_COLOURS, DECISION_LABELS, strict=True)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    reasons = Counter(why for r in rounds for why in r["rejected"].values())
    tally = ", ".join(f"{why} {n}" for why, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    ax.set_title("accept / reject per hospital and round" + (f"\nrejections: {tally}" if tally else ""), fontsize=10)
    fig.tight_layout()
    return fig


def _decisions_plot(path: Path, rounds: list[dict[str, Any]], hospitals: list[str]) -> None:
    import matplotlib.pyplot as plt

    fig = decisions_figure(rounds, hospitals)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_report_folder(folder: Path, report: dict[str, Any], hospitals: list[str]) -> list[Path]:
    """report.json, report.md, accuracy.png and decisions.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    rounds = report["rounds"]
    written = [folder / "report.json"]
    written[0].write_text(json.dumps(report, indent=2) + "\n")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    xs = [r["round"] for r in rounds]
    ys = [r["accuracy"] * 100 for r in rounds]
    if "initial_accuracy" in report:
        xs, ys = [0, *xs], [report["initial_accuracy"] * 100, *ys]
    ax.plot(xs, ys, marker="o")
    cfg = report["config"]
    ax.set(xlabel="round", ylabel="test accuracy (%)", ylim=(0, 100),
           title=f"defense={cfg.get('defense')} attack={cfg.get('attack')} malicious={cfg.get('malicious')}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(folder / "accuracy.png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    written.append(folder / "accuracy.png")

    _decisions_plot(folder / "decisions.png", rounds, hospitals)
    written.append(folder / "decisions.png")

    det = report["detection"]
    lines = [
        "# fedchain demo report", "",
        "| setting | value |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in report["config"].items()],
        "", f"Final accuracy: **{(report['final_accuracy'] or 0) * 100:.1f}%**  ",
        f"Detection over all (round, hospital) decisions: tp={det['tp']} fp={det['fp']} fn={det['fn']} tn={det['tn']}",
        "", "![accuracy](accuracy.png)", "", "![decisions](decisions.png)", "",
        "| round | accuracy | accepted | rejected | model hash |", "|---|---|---|---|---|",
        *[f"| {r['round']} | {r['accuracy'] * 100:.1f}% | {len(r['accepted'])} | "
          f"{', '.join(f'{h} ({w})' for h, w in sorted(r['rejected'].items())) or '-'} | `{r['model_hash'][:16]}…` |"
          for r in rounds],
    ]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    written.append(folder / "report.md")
    return written
