"""The inference check without MPC: policy fields and rule, the fixed-point plan's layout and
precision against float32 torch, the cnn_pool arch, and the required-inputs errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from fedchain.models import ModelSpec, build_model, flatten, from_safetensors_bytes, to_safetensors_bytes
from fedchain.training import to_tensor
from fedchain.verification import REASONS, PolicyError, VerificationPolicy
from fedchain_mpc import plaintext
from fedchain_mpc.checks import CHECKS, InferenceInputs, inference_plain
from fedchain_mpc.inference.plan import A_FRAC, forward_int, make_plan, quantize_images, quantize_weights
from mpc_inference_support import TINY, trained


def test_policy_fields_defaults_and_old_json() -> None:
    p = VerificationPolicy()
    assert (p.inference_enabled, p.inference_batch, p.inference_margin, p.inference_floor) == (False, 32, 0.25, 0.0)
    old = json.loads(p.to_json())
    for k in ("inference_enabled", "inference_batch", "inference_margin", "inference_floor"):
        old.pop(k)
    assert VerificationPolicy.from_json(json.dumps(old)) == p  # policies written before the check still parse
    assert "inference" in REASONS and CHECKS[-1].reason == "inference"  # the last stage
    assert all(c.stage < CHECKS[-1].stage for c in CHECKS[:-1])
    for bad in ({"inference_batch": 0}, {"inference_batch": 257}, {"inference_margin": -0.1},
                {"inference_floor": 1.5}, {"inference_enabled": 1},
                {"inference_enabled": True, "range_enabled": False}):
        with pytest.raises(PolicyError):
            VerificationPolicy(**bad)


def test_threshold_rule() -> None:
    p = VerificationPolicy(inference_batch=32, inference_margin=0.25, inference_floor=0.0)
    assert p.inference_threshold(30) == 22  # ceil(30 - 8)
    assert p.inference_threshold(5) == 0
    q = VerificationPolicy(inference_batch=32, inference_margin=0.1, inference_floor=0.5)
    assert q.inference_threshold(20) == 17  # ceil(max(16, 16.8))
    assert q.inference_threshold(10) == 16  # the floor
    assert VerificationPolicy(inference_batch=10, inference_margin=0.3).inference_threshold(10) == 7


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(arch="cnn_pool"), ModelSpec(widths=(3,), hidden=0),
                                  ModelSpec(arch="cnn_pool", in_channels=3, n_classes=10, widths=(4, 8),
                                            hidden=16)])
def test_plan_layout_and_precision_vs_torch(spec: ModelSpec) -> None:
    model = build_model(spec, seed=3)
    vec = flatten(model)
    plan = make_plan(spec)
    assert plan.size == vec.size
    sd = model.state_dict()
    for name, (_, shape) in plan.layout.items():  # canonical order = models.flatten
        assert np.array_equal(plan.param(vec, name), sd[name].numpy())
        assert shape == tuple(sd[name].shape)
    rng = np.random.default_rng(0)
    shape = (12, 28, 28) if spec.in_channels == 1 else (12, 28, 28, 3)
    images = rng.integers(0, 256, shape).astype(np.uint8)
    with torch.no_grad():
        ref = model(to_tensor(images)).numpy()
    logits, bad = forward_int(plan, quantize_weights(vec), quantize_images(images))
    assert not bad.any()
    assert np.max(np.abs(logits / 2 ** A_FRAC - ref)) < 5e-3


def test_cnn_pool_spec_round_trip() -> None:
    spec = ModelSpec(arch="cnn_pool", widths=(4, 8), hidden=16)
    assert ModelSpec.from_json(spec.to_json()) == spec
    assert ModelSpec.from_json('{"in_channels": 1, "n_classes": 4}').arch == "cnn"  # old JSON: unchanged
    model = build_model(spec)
    assert from_safetensors_bytes(to_safetensors_bytes(model), spec).keys() == build_model(ModelSpec()).state_dict().keys()


def test_twin_on_trained_model_matches_torch_predictions() -> None:
    base, flip, images, labels = trained()
    plan = make_plan(TINY)
    model = build_model(TINY)
    from fedchain.models import unflatten
    unflatten(model, base)
    with torch.no_grad():
        ref = model(to_tensor(images)).numpy()
    logits, _ = forward_int(plan, quantize_weights(base), quantize_images(images))
    assert np.max(np.abs(logits / 2 ** A_FRAC - ref)) < 1e-2
    margin = np.sort(ref, axis=1)
    clear = margin[:, -1] - margin[:, -2] > 1e-2
    assert np.array_equal(logits.argmax(1)[clear], ref.argmax(1)[clear])


def test_required_inputs_and_plaintext_rule() -> None:
    base, flip, images, labels = trained()
    pol = VerificationPolicy(norm_enabled=False, cosine_enabled=False, outlier_enabled=False, min_accepted=1,
                             inference_enabled=True, inference_batch=32, inference_margin=0.1)
    x = np.stack([np.zeros(base.size), flip - base, np.full(base.size, 0.0)])
    with pytest.raises(ValueError, match="inference"):
        plaintext.evaluate_round(x, [1, 1, 1], pol, None, "s")
    inf = InferenceInputs(TINY, base, images[:32], labels[:32])
    verdicts, _, _ = plaintext.evaluate_round(x, [1, 1, 1], pol, None, "s", inference=inf)
    assert verdicts[0] == (True, "ok") and verdicts[1] == (False, "inference")
    assert list(inference_plain(x, inf, pol)) == [True, False, True]
    with pytest.raises(ValueError, match="batch"):
        inference_plain(x, InferenceInputs(TINY, base, images[:31], labels[:31]), pol)


def test_bench_inference_cli_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from fedchain.cli.main import main

    assert main(["bench", "inference", "--hospitals", "0"]) == 2
    assert "hospitals" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["bench", "inference", "--arch", "resnet"])


def test_simulation_runs_the_check() -> None:
    """`python -m fedchain.simulation --inference-check`: the runner hands the round's base model and a
    validation batch from the root set to the policy strategy; a label flipper that the other checks
    would also catch is rejected, and `inference` appears as a reason with margin 0 (strict rule)."""
    from fedchain.cli.simulate import main

    assert main(["--rounds", "1", "--steps", "10", "--hospitals", "4", "--malicious", "1", "--attack", "label_flip",
                 "--inference-check", "--inference-margin", "0", "--warmup-epochs", "1", "--quiet"]) == 0
    assert main(["--defense", "none", "--inference-check", "--rounds", "1", "--quiet"]) == 2
