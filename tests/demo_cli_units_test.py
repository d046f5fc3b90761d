"""`fedchain demo` pieces without a network: attack parameters, argument checks, SIGTERM handling, the plot."""

from __future__ import annotations

import argparse
import os
import signal

import numpy as np
import pytest
from conftest import random_npz
from fedchain.attacks import ATTACKS, AttackContext, AttackParamError, get_attack
from fedchain.campaign.command import ArgumentProblem

# a valid value other than the default for every declared parameter
OTHER_VALUE = {("sign_flip", "factor"): "3", ("scaling", "factor"): "2", ("gaussian", "factor"): "5",
               ("gaussian", "sigma"): "0.5", ("alie", "z"): "3", ("ipm", "epsilon"): "2",
               ("min_max", "perturbation"): "unit", ("min_max", "gamma_init"): "0.001", ("min_max", "iters"): "1"}
# the search converges to the same γ from any start: its first value shows with one bisection step
BASE = {("min_max", "gamma_init"): {"iters": 1}}


def _apply(name: str, params: dict) -> np.ndarray:
    """The attack's output on fixed benign updates (same seed every call)."""
    rng = np.random.default_rng(0)
    honest = [rng.normal(size=64).astype(np.float32) for _ in range(3)]
    ctx = AttackContext(honest, 8, 2, np.random.default_rng(1), 4, params)
    attack = get_attack(name)
    if attack.level == "data":
        return attack.apply_data(np.zeros((4, 28, 28), np.uint8), np.arange(4), ctx)[1]
    return attack.apply_update(honest[0], ctx)


@pytest.mark.parametrize(("attack", "param"), sorted(OTHER_VALUE))
def test_every_declared_parameter_is_one_the_attack_reads(attack, param):
    """A declaration that drifts from the code would refuse a working name or accept an ignored one."""
    base = BASE.get((attack, param), {})
    parsed = get_attack(attack).parse_params([f"{param}={OTHER_VALUE[attack, param]}"])
    assert not np.allclose(_apply(attack, base | parsed), _apply(attack, base))


def test_every_parameter_has_an_other_value_case():
    assert {(a.name, p) for a in ATTACKS.values() for p in a.params} == set(OTHER_VALUE)


def test_unknown_or_bad_parameters_name_the_attack_and_its_parameters():
    with pytest.raises(AttackParamError) as err:
        get_attack("gaussian").parse_params(["nosuch=3"])
    assert "gaussian has no parameter 'nosuch'" in str(err.value) and "factor" in str(err.value) \
        and "sigma" in str(err.value)
    with pytest.raises(AttackParamError, match="label_flip takes no parameters"):
        get_attack("label_flip").parse_params(["factor=2"])
    for bad in ("factor=0", "factor=-1", "factor=inf", "factor=1e9", "factor=x"):
        with pytest.raises(AttackParamError, match="must be a number > 0 and <= 1000"):
            get_attack("scaling").parse_params([bad])
    assert get_attack("min_max").parse_params(["iters=5", "perturbation=std"]) == {"iters": 5, "perturbation": "std"}


def _demo_args(*argv: str) -> argparse.Namespace:
    from fedchain.cli.main import build_parser

    return build_parser().parse_args(["demo", *argv])


def test_demo_config_takes_the_dataset_sizes(tmp_path):
    from fedchain.cli.demo import demo_config
    from fedchain.demo.checks import summarize

    path = random_npz(tmp_path / "d.npz", n_train=300, n_val=30, n_test=50, n_classes=7)
    cfg, data = demo_config(_demo_args("--dataset", str(path), "--hospitals", "4"), tmp_path / "net")
    assert (cfg.n_train, cfg.n_test, cfg.dataset) == (300, 50, str(path))
    assert summarize(data, "npz").as_dict() == {"source": "npz", "path": str(path.resolve()), "n_train": 300,
                                                "n_val": 30, "n_test": 50, "n_classes": 7, "channels": 1}
    with pytest.raises(ArgumentProblem, match="300 training samples cannot give 5 hospitals 64 samples each"):
        demo_config(_demo_args("--dataset", str(path), "--hospitals", "5"), tmp_path / "net")
    assert not (tmp_path / "net").exists()


def test_demo_config_without_attack_has_no_malicious_hospitals(tmp_path):
    from fedchain.cli.demo import demo_config

    cfg, data = demo_config(_demo_args("--attack", "none"), tmp_path / "net")
    assert (cfg.attack, cfg.malicious, cfg.attack_params, data) == (None, 0, {}, None)
    cfg, _ = demo_config(_demo_args("--attack", "gaussian", "--attack-param", "factor=5"), tmp_path / "net")
    assert (cfg.attack, cfg.malicious, cfg.attack_params) == ("gaussian", 2, {"factor": 5.0})


def test_sigterm_raises_terminated_and_the_previous_handler_comes_back():
    from fedchain.cli.demo import Terminated, _sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), _sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes of the main thread
            pass
    assert signal.getsignal(signal.SIGTERM) == before
    assert issubclass(Terminated, KeyboardInterrupt)  # every Ctrl-C clean-up path runs for SIGTERM too


def test_sigterm_during_clean_up_is_raised_after_it():
    from fedchain.cli.demo import Terminated, _sigterm_deferred

    steps = []
    with pytest.raises(Terminated), _sigterm_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass
        steps.append("network stopped")  # not cut short
    assert steps == ["network stopped"]


def _round(rid: int, rejected: dict[str, str], hospitals: list[str], malicious: list[str]) -> dict:
    return {"round": rid, "rejected": rejected, "accepted": [h for h in hospitals if h not in rejected],
            "malicious": malicious}


def test_decisions_plot_shows_each_rejections_reason():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from fedchain.demo.report import decisions_figure

    hospitals = [f"hospital{i}" for i in range(1, 9)]
    codes = ["norm", "cosine", "outlier", "range", "inconsistent", "missing_share", "inference", "no_validation_batch"]
    rounds = [_round(r, {"hospital7": codes[r % 8], "hospital8": "norm", **({"hospital2": "cosine"} if r == 3 else {})},
                     hospitals, ["hospital7", "hospital8"]) for r in range(1, 13)]
    rounds[4]["accepted"].remove("hospital5")  # no update from hospital5 in round 5
    fig = decisions_figure(rounds, hospitals)
    ax = fig.axes[0]
    cells = {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text().replace("\n", "_")
             for t in ax.texts}
    for j, r in enumerate(rounds):
        for i, h in enumerate(hospitals):
            want = r["rejected"].get(h, "")
            if h == "hospital5" and r["round"] == 5:
                want = "no_update"
            assert cells.get((j, i), "") == want, (r["round"], h)
    assert "rejections: norm 13" in ax.get_title() and "cosine 3" in ax.get_title()
    assert "inference 1" in ax.get_title() and "no_validation_batch 1" in ax.get_title()
    plt.close(fig)
