"""`fedchain operator run` / `reference publish` surface without a network: the policy flags shared with
`fedchain demo`, argument errors (one line, exit 2, before any ledger access), the report's schema."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np
import pytest
from fedchain.campaign.args import add_policy_args, policy_from_args
from fedchain.data.npz import save_npz
from fedchain.verification import PolicyError
from fedchain.verification.presets import PolicySettings


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fedchain.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def _parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_policy_args(p)
    return p.parse_args(list(argv))


def test_policy_defaults_file_and_flags_in_that_order(tmp_path):
    assert policy_from_args(_parse()) == (PolicySettings(), False)
    f = tmp_path / "policy.json"
    f.write_text(json.dumps({"norm_rel_factor": 6.0, "outlier-floor": 0.2, "cosine_min": "auto", "min_accepted": 4}))
    for ref in (str(f), f"@{f}", f.read_text()):
        settings, auto = policy_from_args(_parse("--policy", ref, "--min-accepted", "5"))
        assert auto and settings.cosine_min == 0.0
        assert (settings.norm_rel_factor, settings.outlier_floor_factor, settings.min_accepted) == (6.0, 0.2, 5)
    assert policy_from_args(_parse("--defense", "none", "--cosine-min", "0.1"))[0] == \
        PolicySettings(defense="none", cosine_min=0.1)


@pytest.mark.parametrize(("argv", "message"), [
    (["--policy", '{"norm_bound": 3}'], "unknown setting 'norm_bound'"),
    (["--policy", "[1, 2]"], "JSON object"),
    (["--policy", "{nope"], "not valid JSON"),
    (["--policy", "/no/such/policy.json"], "cannot read"),
    (["--policy", '{"norm_factor": "big"}'], "--policy"),
    (["--outlier-factor", "100"], "outlier_factor"),
])
def test_policy_errors_are_one_line(argv, message):
    with pytest.raises(PolicyError, match=message) as err:
        policy_from_args(_parse(*argv))
    assert "\n" not in str(err.value)


def _help(*cmd: str) -> str:
    """`fedchain CMD --help` in this process (the CLI's own parser; a subprocess per call is slow)."""
    import contextlib
    import io

    from fedchain.cli.main import build_parser

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as done:
        build_parser().parse_args([*cmd, "--help"])
    assert done.value.code == 0
    return buf.getvalue()


def _policy_options(*cmd: str) -> set[str]:
    out = _help(*cmd)
    return {opt for opt in ("--policy", "--defense", "--norm-factor", "--norm-rel", "--cosine-min", "--cosine-rel",
                            "--cosine-slack", "--outlier-factor", "--outlier-floor", "--min-accepted") if opt in out}


def test_operator_run_help_and_the_same_policy_flags_as_the_demo():
    run = _help("operator", "run")
    for opt in ("--network", "--identity", "--rounds", "--root-data", "--model-spec", "--deadline", "--min-updates",
                "--report-json", "--test-data", "--round-timeout"):
        assert opt in run
    assert _policy_options("operator", "run") == _policy_options("demo") and len(_policy_options("demo")) == 10
    ref = _help("reference", "publish")
    assert "--round" in ref and "--root-data" in ref
    assert "--root-data" in _help("round", "create")


@pytest.fixture()
def root_file(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 16), ("test", 8)):
        arrays[f"{split}_images"] = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(-1, 1)
    return save_npz(tmp_path / "root.npz", arrays)


@pytest.mark.parametrize(("extra", "code", "message"), [
    (["--rounds", "0"], 2, "--rounds must be at least 1"),
    (["--deadline", "-5"], 2, "positive seconds"),
    (["--min-updates", "0"], 2, "--min-updates must be at least 1"),
    (["--steps", "0"], 2, "steps must be in"),
    (["--policy", '{"krum": 1}'], 2, "unknown setting 'krum'"),
    (["--model-spec", '{"in_channels": 3, "n_classes": 2}'], 2, "3-channel images"),
    (["--model-spec", '{"in_channels": 1, "n_classes": 5, "widths": [0]}'], 2, "--model-spec"),
    (["--test-data", "/no/such.npz"], 2, "no such file"),
    ([], 1, "no network.json"),  # every argument fine: only now the network is looked for
])
def test_operator_run_argument_errors_are_one_line_before_the_ledger(tmp_path, root_file, extra, code, message):
    args = ["operator", "run", "--network", str(tmp_path / "nonet"), "--rounds", "2", "--root-data", str(root_file),
            *extra]
    res = _cli(*args)
    assert res.returncode == code, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_missing_root_data_is_an_argument_error(tmp_path):
    for cmd in (["operator", "run", "--rounds", "2"], ["reference", "publish", "--round", "1"]):
        res = _cli(*cmd, "--root-data", str(tmp_path / "none.npz"), "--network", str(tmp_path / "nonet"))
        assert res.returncode == 2 and "no such file" in res.stderr and "Traceback" not in res.stderr


def test_round_line_says_what_happened():
    from fedchain.campaign.driver import RoundResult
    from fedchain.campaign.report import round_line

    res = RoundResult(3, "FINALIZED", {}, b"", "ab" * 32, True, ["hospital1", "hospital2", "hospital7"],
                      ["hospital1", "hospital2"], {"hospital7": "norm"}, {"total": 12.34})
    line = round_line(res, accuracy=0.805)
    assert line.startswith("round   3  FINALIZED  submitted  3  accepted  2  rejected  1 h7:norm")
    assert "model abababababababab" in line and "acc  80.5%" in line and line.endswith("12.3 s")
    failed = RoundResult(4, "FAILED", {}, b"", "cd" * 32, False, ["hospital1"], [], {"hospital1": "cosine"})
    assert "(unchanged)" in round_line(failed) and "\n" not in round_line(failed)
