"""mpc_program.load_inference: the job's validation batch, base model and model spec become InferenceInputs,
checked strictly (a torn or swapped file fails the run, it never feeds the check)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from fedchain.models import ModelSpec, build_model, flatten, param_count, to_safetensors_bytes
from fedchain.validation_batch import encode
from fedchain_mpc.checks.inference import InferenceInputs
from fedchain_mpc.job import JobError, MPCJob, ShareInput
from fedchain_mpc.mpc_program import load_inference, policy_wants_inference

SPEC = ModelSpec(arch="cnn_pool", in_channels=1, n_classes=4, widths=(2,), hidden=0)


def _job(tmp_path, *, labels_top: int = 3, n: int = 4) -> MPCJob:
    model = build_model(SPEC, seed=1)
    (tmp_path / "base.safetensors").write_bytes(to_safetensors_bytes(model))
    batch = encode(np.full((n, 28, 28), 9, np.uint8), np.arange(n, dtype=np.int64) % (labels_top + 1))
    (tmp_path / "validation.safetensors").write_bytes(batch)
    spec = {**json.loads(SPEC.to_json()), "param_count": param_count(SPEC)}
    return MPCJob(round_id=1, party=0, shares=(ShareInput("h0", str(tmp_path / "h0.share"), 1),),
                  policy={"inference_enabled": True}, seed="s", output_path=str(tmp_path / "out.json"), t=1, m=3,
                  base_model_path=str(tmp_path / "base.safetensors"),
                  validation_path=str(tmp_path / "validation.safetensors"), model_spec=spec)


def test_job_files_become_inference_inputs(tmp_path):
    job = _job(tmp_path)
    inp = load_inference(job, param_count(SPEC), 4)
    assert isinstance(inp, InferenceInputs)
    assert json.loads(SPEC.to_json()) == {**inp.spec.__dict__, "widths": list(inp.spec.widths)}
    assert inp.base.dtype == np.float32
    assert np.array_equal(inp.base, flatten(build_model(SPEC, seed=1)))
    assert inp.images.shape == (4, 28, 28) and inp.labels.dtype == np.int64


def test_bad_job_inputs_fail_the_run_with_a_reason(tmp_path):
    job = _job(tmp_path)
    with pytest.raises(JobError, match="needs validation_path"):
        load_inference(dataclasses.replace(job, validation_path=None), param_count(SPEC), 4)
    with pytest.raises(JobError, match="a batch of at most 2 images"):
        load_inference(job, param_count(SPEC), 2)
    with pytest.raises(JobError, match="updates have dim 7"):
        load_inference(job, 7, 4)
    bad = _job(tmp_path, labels_top=6, n=8)
    with pytest.raises(JobError, match=r"labels must be \[0, 4\)"):
        load_inference(bad, param_count(SPEC), 8)
    (tmp_path / "base.safetensors").write_bytes(b"torn")
    with pytest.raises(JobError, match="base model"):
        load_inference(dataclasses.replace(_job(tmp_path), base_model_path=str(tmp_path / "missing")),
                       param_count(SPEC), 4)


def test_only_a_policy_that_says_true_wants_the_check():
    from fedchain.verification import VerificationPolicy

    assert not policy_wants_inference(VerificationPolicy())
    assert policy_wants_inference(VerificationPolicy(inference_enabled=True))


def test_the_party_spec_has_model_spec_defaults_and_needs_no_torch():
    """JobModelSpec mirrors ModelSpec (fields and defaults), and load_inference does not import torch."""
    import subprocess
    import sys
    from dataclasses import asdict

    from fedchain_mpc.mpc_program import JobModelSpec

    assert asdict(JobModelSpec()) == asdict(ModelSpec())
    code = ("import sys, fedchain_mpc.mpc_program as p; p.job_model_spec({'n_classes': 4}); "
            "import fedchain_mpc.checks.inference, fedchain.validation_batch; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]
