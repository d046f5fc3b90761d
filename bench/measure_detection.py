"""Detection campaign: `fedchain demo` over a grid of datasets × attacks × defenses × seeds.

Not part of `make bench` (bench/run_all.py runs bench_*.py only): a campaign takes hours.

    .venv/bin/python bench/measure_detection.py --datasets synthetic,digits.npz --seeds 0,1,2 \\
        --attacks none,scaling,sign_flip,label_flip,gaussian,alie,ipm,min_max --rounds 6 \\
        --defense mpc,none --out results/detect.json [--extra-args "--alpha 0.5"]

Each run is one `python -m fedchain.cli.main demo ...` process, one after another, with a fresh
network folder (a temporary directory, removed afterwards; the demo starts and stops its own
embedded network there) and its own --base-port. Per run it keeps <runs-dir>/<key>.json (the demo's
report JSON) and <key>.log (its output); a run whose report JSON exists is not run again, so an
interrupted campaign resumes where it stopped (delete a JSON to redo that run). From every report it
computes: poisoned updates rejected / all poisoned updates, honest updates rejected / all honest
updates (with the reasons), final test accuracy and wall time; it writes every row and a summary to
--out (JSON) and prints a Markdown table (also written next to --out as .md): one row per
dataset × attack × defense, accuracy per seed as columns.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ATTACKS_HINT = "none,scaling,sign_flip,label_flip,gaussian,alie,ipm,min_max"


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def dataset_tag(dataset: str) -> str:
    return "synthetic" if dataset == "synthetic" else Path(dataset).stem


def run_key(dataset: str, attack: str, defense: str, seed: int) -> str:
    return f"{dataset_tag(dataset)}__{attack}__{defense}__s{seed}"


def demo_command(args: argparse.Namespace, dataset: str, attack: str, defense: str, seed: int,
                 network: Path, base_port: int, report_json: Path, report_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "fedchain.cli.main", "demo", "--rounds", str(args.rounds), "--attack", attack,
           "--defense", defense, "--seed", str(seed), "--network", str(network), "--base-port", str(base_port),
           "--report-json", str(report_json), "--report-dir", str(report_dir)]
    if dataset != "synthetic":
        cmd += ["--dataset", str(Path(dataset).resolve())]
    if args.hospitals is not None:
        cmd += ["--hospitals", str(args.hospitals)]
    if args.malicious is not None:
        cmd += ["--malicious", str(args.malicious)]
    return cmd + shlex.split(args.extra_args)


def summarize_report(report: dict[str, Any]) -> dict[str, Any]:
    """Per-run figures from a demo report.json (sdk/fedchain/demo/report.py: rounds[] with accepted,
    rejected {hospital: reason}, malicious; final_accuracy; detection; wall_time_s)."""
    poisoned_rej = poisoned_tot = honest_rej = honest_tot = missing = 0
    reasons_poisoned: Counter[str] = Counter()
    reasons_honest: Counter[str] = Counter()
    hospitals = report.get("config", {}).get("hospital_ids") or []
    for r in report["rounds"]:
        bad = set(r["malicious"])
        for h, why in r["rejected"].items():
            if h in bad:
                poisoned_rej += 1
                reasons_poisoned[why] += 1
            else:
                honest_rej += 1
                reasons_honest[why] += 1
        poisoned_tot += sum(h in bad for h in r["rejected"]) + sum(h in bad for h in r["accepted"])
        honest_tot += sum(h not in bad for h in r["rejected"]) + sum(h not in bad for h in r["accepted"])
        if hospitals:  # hospitals whose update never arrived (neither accepted nor rejected)
            missing += len(set(hospitals) - set(r["accepted"]) - set(r["rejected"]))
    return {
        "final_accuracy": report.get("final_accuracy"),
        "initial_accuracy": report.get("initial_accuracy"),
        "accuracy_by_round": [r["accuracy"] for r in report["rounds"]],
        "poisoned_rejected": poisoned_rej, "poisoned_total": poisoned_tot,
        "honest_rejected": honest_rej, "honest_total": honest_tot, "missing_updates": missing,
        "reasons_poisoned": dict(reasons_poisoned.most_common()),
        "reasons_honest": dict(reasons_honest.most_common()),
        "cosine_min_by_round": [r.get("cosine_min") for r in report["rounds"]],
        "report_wall_time_s": report.get("wall_time_s"),
        "audit_ok": report.get("audit", {}).get("ok"),
    }


def _stop_network(network: Path) -> None:
    """Best effort: stop whatever a killed demo left running in its network folder."""
    if (network / "embedded.json").is_file():
        subprocess.run([sys.executable, "-m", "fedchain.cli.main", "network", "down", "--dir", str(network)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=False)


def run_one(args: argparse.Namespace, dataset: str, attack: str, defense: str, seed: int, base_port: int,
            runs_dir: Path) -> dict[str, Any]:
    key = run_key(dataset, attack, defense, seed)
    row: dict[str, Any] = {"key": key, "dataset": dataset_tag(dataset), "dataset_path": dataset, "attack": attack,
                           "defense": defense, "seed": seed}
    report_json = runs_dir / f"{key}.json"
    if report_json.is_file():
        row |= {"status": "cached"} | summarize_report(json.loads(report_json.read_text()))
        return row
    network = Path(tempfile.mkdtemp(prefix=f"fedchain-measure-{key}-"))
    log = runs_dir / f"{key}.log"
    cmd = demo_command(args, dataset, attack, defense, seed, network, base_port, report_json.with_suffix(".tmp"),
                       network / "report")
    print(f"[{time.strftime('%H:%M:%S')}] {key}: {shlex.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = None
    try:
        with open(log, "w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = proc.wait(timeout=args.timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGINT)  # the demo stops the network it started on Ctrl-C
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                code = "timeout"
    except KeyboardInterrupt:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        _stop_network(network)
        shutil.rmtree(network, ignore_errors=True)
        raise
    wall = round(time.perf_counter() - t0, 1)
    _stop_network(network)
    shutil.rmtree(network, ignore_errors=True)
    tmp = report_json.with_suffix(".tmp")
    row["wall_time_s"] = wall
    if code == 0 and tmp.is_file():
        tmp.replace(report_json)  # only a finished run counts as done (resume)
        return row | {"status": "ok"} | summarize_report(json.loads(report_json.read_text()))
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-3:]
    print(f"  FAILED ({code}): {' | '.join(tail)}", file=sys.stderr, flush=True)
    return row | {"status": f"failed ({code})", "error": tail}


def _pct(num: int, den: int) -> str:
    return f"{num}/{den} ({100 * num / den:.0f}%)" if den else "–"


def _top(reasons: Counter[str], k: int = 3) -> str:
    return ", ".join(f"{why} {n}" for why, n in reasons.most_common(k)) or "–"


def summarize(rows: list[dict[str, Any]], seeds: list[int]) -> tuple[list[dict[str, Any]], str]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["attack"], r["defense"]), []).append(r)
    summary = []
    head = (["dataset", "attack", "defense", *[f"acc s{s}" for s in seeds], "mean acc", "poisoned rejected",
             "honest rejected", "top reasons (poisoned / honest)", "wall s/run"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (ds, attack, defense), rs in groups.items():
        done = [r for r in rs if r.get("final_accuracy") is not None]
        acc = {r["seed"]: r["final_accuracy"] for r in done}
        pr, pt = sum(r["poisoned_rejected"] for r in done), sum(r["poisoned_total"] for r in done)
        hr, ht = sum(r["honest_rejected"] for r in done), sum(r["honest_total"] for r in done)
        rp: Counter[str] = Counter()
        rh: Counter[str] = Counter()
        for r in done:
            rp.update(r["reasons_poisoned"])
            rh.update(r["reasons_honest"])
        walls = [r["report_wall_time_s"] for r in done if r.get("report_wall_time_s") is not None]
        mean_acc = sum(acc.values()) / len(acc) if acc else None
        summary.append({"dataset": ds, "attack": attack, "defense": defense, "accuracy_by_seed": acc,
                        "mean_accuracy": mean_acc, "poisoned_rejected": pr, "poisoned_total": pt,
                        "honest_rejected": hr, "honest_total": ht, "reasons_poisoned": dict(rp),
                        "reasons_honest": dict(rh), "runs": len(rs), "failed": len(rs) - len(done),
                        "mean_wall_time_s": sum(walls) / len(walls) if walls else None})
        cells = [ds, attack, defense]
        for s in seeds:
            r = next((x for x in rs if x["seed"] == s), None)
            cells.append("" if r is None else f"{acc[s] * 100:.1f}%" if s in acc else r.get("status", "?"))
        cells += [f"{mean_acc * 100:.1f}%" if mean_acc is not None else "–", _pct(pr, pt), _pct(hr, ht),
                  f"{_top(rp)} / {_top(rh)}", f"{sum(walls) / len(walls):.0f}" if walls else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return summary, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--datasets", default="synthetic", help="comma list: 'synthetic' or MedMNIST npz paths")
    p.add_argument("--seeds", default="0", help="comma list of demo seeds")
    p.add_argument("--attacks", default="none,scaling", help=f"comma list, e.g. {ATTACKS_HINT}")
    p.add_argument("--defense", default="mpc", help="comma list of mpc,none")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--hospitals", type=int, default=None, help="default: the demo's")
    p.add_argument("--malicious", type=int, default=None, help="default: the demo's")
    p.add_argument("--extra-args", default="", help="more `fedchain demo` options, one shell-quoted string")
    p.add_argument("--out", required=True, help="summary JSON (a .md with the table is written next to it)")
    p.add_argument("--runs-dir", default=None, help="per-run report JSONs and logs (default: <out>.runs/)")
    p.add_argument("--base-port", type=int, default=7400, help="run k uses base + 100·(k mod 100)")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per demo run")
    p.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = p.parse_args(argv)

    datasets, attacks, defenses = _csv(args.datasets), _csv(args.attacks), _csv(args.defense)
    seeds = [int(s) for s in _csv(args.seeds)]
    for d in datasets:
        if d != "synthetic" and not Path(d).is_file():
            p.error(f"dataset {d}: no such file (make one with `fedchain data digits --out {d}`)")
    if len({dataset_tag(d) for d in datasets}) != len(datasets):
        p.error("two datasets share a file name stem (the run keys would clash)")
    out = Path(args.out)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out.with_name(out.name + ".runs")
    runs_dir.mkdir(parents=True, exist_ok=True)
    grid = [(d, a, df, s) for d in datasets for a in attacks for df in defenses for s in seeds]
    if args.dry_run:
        for k, (d, a, df, s) in enumerate(grid):
            net = Path(tempfile.gettempdir()) / f"fedchain-measure-{run_key(d, a, df, s)}-XXXX"
            print(shlex.join(demo_command(args, d, a, df, s, net, args.base_port + 100 * (k % 100),
                                          runs_dir / f"{run_key(d, a, df, s)}.json", net / "report")))
        return 0

    rows: list[dict[str, Any]] = []
    meta = {"datasets": datasets, "attacks": attacks, "defenses": defenses, "seeds": seeds, "rounds": args.rounds,
            "hospitals": args.hospitals, "malicious": args.malicious, "extra_args": args.extra_args,
            "runs_dir": str(runs_dir)}
    started = time.perf_counter()

    def write() -> str:
        summary, table = summarize(rows, seeds)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"grid": meta, "rows": rows, "summary": summary}, indent=2) + "\n")
        tmp.replace(out)
        out.with_suffix(".md").write_text(table + "\n")
        return table

    try:
        for k, (d, a, df, s) in enumerate(grid):
            rows.append(run_one(args, d, a, df, s, args.base_port + 100 * (k % 100), runs_dir))
            r = rows[-1]
            if r.get("final_accuracy") is not None:
                print(f"  {r['key']}: {r['status']}, accuracy {r['final_accuracy'] * 100:.1f}%, poisoned rejected "
                      f"{_pct(r['poisoned_rejected'], r['poisoned_total'])}, honest rejected "
                      f"{_pct(r['honest_rejected'], r['honest_total'])}", file=sys.stderr, flush=True)
            write()
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept (run the same command again to resume)", file=sys.stderr)
        write()
        return 130
    table = write()
    failed = sum(1 for r in rows if r.get("final_accuracy") is None)
    print(table)
    print(f"\n{len(rows)} runs ({failed} failed) in {time.perf_counter() - started:.0f} s; rows in {out}, "
          f"per-run reports in {runs_dir}/", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
