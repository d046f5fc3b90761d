"""Every mistyped `fedchain demo` value is one `error:` line and exit 2 before any network exists (issue 12).

Runs the installed console script (as a user would) once per bad value, with --network in a fresh folder,
and checks that the folder was never created and that no process was started for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import random_npz

FEDCHAIN = str(Path(sys.executable).with_name("fedchain"))

# (id, arguments, a fragment of the one-line message); {files} is the folder of the fixture files below
CASES: list[tuple[str, list[str], str]] = [
    ("rounds-0", ["--rounds", "0"], "--rounds must be in 1..1000, not 0"),
    ("rounds-negative", ["--rounds", "-2"], "--rounds must be in 1..1000"),
    ("rounds-huge", ["--rounds", "6000"], "--rounds must be in 1..1000"),
    ("rounds-not-int", ["--rounds", "1.5"], "argument --rounds: invalid int value"),
    ("hospitals-1", ["--hospitals", "1"], "--hospitals must be in 2..100"),
    ("hospitals-0", ["--hospitals", "0"], "--hospitals must be in 2..100"),
    ("hospitals-too-many", ["--hospitals", "101"], "--hospitals must be in 2..100"),
    ("hospitals-beyond-data", ["--hospitals", "94"], "6000 training samples cannot give 94 hospitals"),
    ("hospitals-word", ["--hospitals", "eight"], "argument --hospitals: invalid int value"),
    ("malicious-negative", ["--malicious", "-1"], "--malicious must be in 0..8"),
    ("malicious-over", ["--malicious", "9"], "--malicious must be in 0..8"),
    ("attack-unknown", ["--attack", "backdoor"], "argument --attack: invalid choice"),
    ("attack-param-unknown", ["--attack-param", "nosuch=3"], "scaling has no parameter 'nosuch'; scaling's "
                                                                "parameters: factor"),
    ("attack-param-negative", ["--attack-param", "factor=-2"], "factor must be a number > 0"),
    ("attack-param-word", ["--attack-param", "factor=big"], "factor must be a number > 0"),
    ("attack-param-nan", ["--attack-param", "factor=nan"], "factor must be a number > 0"),
    ("attack-param-no-value", ["--attack-param", "factor"], "expected NAME=VALUE"),
    ("attack-param-twice", ["--attack-param", "factor=2", "--attack-param", "factor=3"], "factor is given twice"),
    ("attack-param-label-flip", ["--attack", "label_flip", "--attack-param", "factor=2"],
     "label_flip takes no parameters"),
    ("attack-param-choice", ["--attack", "min_max", "--attack-param", "perturbation=sideways"], "one of std, unit"),
    ("attack-param-int", ["--attack", "min_max", "--attack-param", "iters=2.5"], "iters must be an integer"),
    ("attack-param-no-attack", ["--attack", "none", "--attack-param", "factor=2"], "no hospital attacks"),
    ("attack-param-no-malicious", ["--malicious", "0", "--attack-param", "factor=2"], "no hospital attacks"),
    ("seed-negative", ["--seed", "-1"], "--seed must be in 0..2147483647"),
    ("dataset-missing", ["--dataset", "{files}/nonexist.npz"], "nonexist.npz: no such file"),
    ("dataset-not-npz", ["--dataset", "{files}/notes.txt"], "not a readable .npz file"),
    ("dataset-no-keys", ["--dataset", "{files}/nokeys.npz"], "missing keys"),
    ("dataset-too-small", ["--dataset", "{files}/small.npz"], "200 training samples cannot give 8 hospitals"),
    ("dataset-no-val", ["--dataset", "{files}/noval.npz", "--hospitals", "3"], "the validation split has 1"),
    ("dataset-no-test", ["--dataset", "{files}/notest.npz", "--hospitals", "3"], "the test split is empty"),
    ("dataset-float-labels", ["--dataset", "{files}/floatlabels.npz", "--hospitals", "3"], "labels must be integers"),
    ("alpha-0", ["--alpha", "0"], "--alpha must be a positive number"),
    ("alpha-negative", ["--alpha", "-1"], "--alpha must be a positive number"),
    ("alpha-nan", ["--alpha", "nan"], "--alpha must be a positive number"),
    ("alpha-inf", ["--alpha", "inf"], "--alpha must be a positive number"),
    ("steps-0", ["--steps", "0"], "--steps must be in 1..100000"),
    ("steps-huge", ["--steps", "100001"], "--steps must be in 1..100000"),
    ("lr-0", ["--lr", "0"], "--lr must be a number in (0, 10]"),
    ("lr-negative", ["--lr", "-0.1"], "--lr must be a number in (0, 10]"),
    ("lr-nan", ["--lr", "nan"], "--lr must be a number in (0, 10]"),
    ("lr-word", ["--lr", "fast"], "argument --lr: invalid float value"),
    ("warmup-negative", ["--warmup-epochs", "-1"], "--warmup-epochs must be in 0..1000"),
    ("policy-missing", ["--policy", "{files}/nopolicy.json"], "cannot read"),
    ("policy-bad-json", ["--policy", "{nope"], "not valid JSON"),
    ("policy-unknown-setting", ["--policy", '{"krum": 1}'], "unknown setting 'krum'"),
    ("policy-bad-value", ["--policy", '{"min_accepted": 0}'], "--policy: min_accepted must be"),
    ("defense-unknown", ["--defense", "krum"], "argument --defense: invalid choice"),
    ("norm-factor-negative", ["--norm-factor", "-1"], "--norm-factor -1.0: norm_factor must be in [0, 1000]"),
    ("norm-rel-out", ["--norm-rel", "100"], "--norm-rel 100.0: norm_rel_factor must be"),
    ("cosine-min-out", ["--cosine-min", "2"], "--cosine-min 2.0: cosine_min must be in [-1, 1]"),
    ("cosine-min-word", ["--cosine-min", "often"], "expected a number or 'auto'"),
    ("cosine-rel-negative", ["--cosine-rel", "-1"], "--cosine-rel -1.0: cosine_rel must be in [0, 1]"),
    ("cosine-slack-out", ["--cosine-slack", "5"], "--cosine-slack 5.0: cosine_slack must be in [0, 1]"),
    ("outlier-factor-out", ["--outlier-factor", "100"], "--outlier-factor 100.0: outlier_factor must be"),
    ("outlier-floor-out", ["--outlier-floor", "11"], "--outlier-floor 11.0: outlier_floor_factor must be"),
    ("min-accepted-0", ["--min-accepted", "0"], "--min-accepted 0: min_accepted must be an integer >= 1"),
    ("min-accepted-unreachable", ["--min-accepted", "9"], "8 hospitals cannot reach the privacy floor of 9"),
    ("inference-check-value", ["--inference-check=yes"], "ignored explicit argument"),
    ("inference-check-no-defense", ["--inference-check", "--defense", "none"],
     "--inference-check needs --defense mpc"),
    ("inference-policy-without-check", ["--policy", '{"inference_batch": 8}'], "needs --inference-check"),
    ("inference-batch-beyond-root", ["--dataset", "{files}/small.npz", "--hospitals", "3", "--inference-check",
                                     "--policy", '{"inference_batch": 64}'], "which has 40 samples here"),
    ("inference-policy-bad-batch", ["--inference-check", "--policy", '{"inference_batch": 0}'],
     "--policy: inference_batch must be an integer in 1..256"),
    ("base-port-privileged", ["--base-port", "80"], "--base-port must be in 1024..65506"),
    ("base-port-too-high", ["--base-port", "65530"], "--base-port must be in 1024..65506"),
    ("keep-network-value", ["--keep-network=yes"], "ignored explicit argument"),
    ("report-json-is-folder", ["--report-json", "{files}"], "is a folder, expected a file path"),
    ("report-json-under-file", ["--report-json", "{files}/notes.txt/report.json"], "is a file, not a folder"),
    ("report-dir-is-file", ["--report-dir", "{files}/notes.txt"], "exists and is not a folder"),
]


def _npz(path: Path, n_train: int = 200, n_val: int = 40, n_test: int = 40, labels: str = "int64") -> None:
    random_npz(path, n_train, n_val, n_test, n_classes=4, labels=labels)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """Bad inputs a user could point the demo at."""
    d = tmp_path_factory.mktemp("demo-inputs")
    (d / "notes.txt").write_text("not a dataset\n")
    np.savez(d / "nokeys.npz", images=np.zeros((4, 28, 28), np.uint8))
    _npz(d / "small.npz")  # 200 training samples: 3 hospitals x 64, not 8
    _npz(d / "noval.npz", n_val=1)
    _npz(d / "notest.npz", n_test=0)
    _npz(d / "floatlabels.npz", labels="float32")
    return d


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions `text` (a network folder): what a started network would leave."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_value_is_one_line_exit_2_and_nothing_started(tmp_path, files, argv, message):
    network = tmp_path / "net"
    reports = tmp_path / "reports"
    args = [a.replace("{files}", str(files)) for a in argv]
    env = {k: v for k, v in os.environ.items() if k != "FEDCHAIN_NETWORK"}
    # the case's own --report-dir, if any, comes later and wins
    res = subprocess.run([FEDCHAIN, "demo", "--network", str(network), "--report-dir", str(reports), *args],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    err = res.stderr.strip()
    assert res.returncode == 2, err
    assert "Traceback" not in res.stderr and res.stdout == ""
    assert err.count("\n") == 0 and err.startswith("error: "), err
    assert message in err
    assert not network.exists() and not reports.exists()
    assert _processes_mentioning(str(network)) == []


def test_cases_cover_every_option_of_the_help():
    """A new flag gets a bad-value case here (or is listed as taking none)."""
    from fedchain.cli.main import build_parser

    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    options = {opt for action in demo._actions for opt in action.option_strings if opt.startswith("--")}
    covered = {a.split("=")[0] for _, argv, _ in CASES for a in argv if a.startswith("--")}
    no_bad_value = {"--help", "--network"}  # --network: any folder is fine (a file is tested below)
    assert options - covered - no_bad_value == set()


def test_network_that_is_a_file_is_refused(tmp_path):
    network = tmp_path / "net"
    network.write_text("not a folder")
    res = subprocess.run([FEDCHAIN, "demo", "--network", str(network)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == f"error: --network {network}: exists and is not a folder"
    assert network.read_text() == "not a folder" and _processes_mentioning(str(network)) == []
