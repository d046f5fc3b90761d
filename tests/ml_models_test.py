"""Models: spec JSON, deterministic init, canonical safetensors, flatten/unflatten, update = w_local − w_base."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
from fedchain.data import synthesize
from fedchain.models import (
    ModelFormatError,
    ModelSpec,
    build_model,
    flatten,
    from_safetensors_bytes,
    load_model_bytes,
    model_hash,
    param_count,
    param_names,
    to_safetensors_bytes,
    unflatten,
)
from fedchain.reference import reference_update, root_dataset
from fedchain.training import TrainConfig, evaluate, train_local, train_steps


@pytest.mark.parametrize("spec", [ModelSpec(), ModelSpec(in_channels=3, n_classes=8, widths=(4,), hidden=0)])
def test_spec_roundtrip_and_forward(spec):
    assert ModelSpec.from_json(spec.to_json()) == spec
    m = build_model(spec)
    out = m(torch.zeros(2, spec.in_channels, 28, 28))
    assert out.shape == (2, spec.n_classes)
    assert param_count(spec) == flatten(m).size
    assert not any(isinstance(x, torch.nn.MaxPool2d | torch.nn.BatchNorm2d) for x in m.modules())


def test_spec_rejects_bad():
    with pytest.raises(ValueError, match="unknown model spec fields"):
        ModelSpec.from_json(json.dumps({"in_channels": 1, "n_classes": 2, "evil": 1}))
    with pytest.raises(ValueError):
        ModelSpec(in_channels=2)


def test_deterministic_init_and_canonical_bytes():
    a, b, c = build_model(ModelSpec(), 5), build_model(ModelSpec(), 5), build_model(ModelSpec(), 6)
    ba, bb = to_safetensors_bytes(a), to_safetensors_bytes(b)
    assert ba == bb and model_hash(ba) == hashlib.sha256(ba).hexdigest()
    assert to_safetensors_bytes(c) != ba
    # insertion order and dtype do not matter: the bytes are canonical
    state = {k: v.detach().numpy().astype(np.float64) for k, v in reversed(list(a.state_dict().items()))}
    assert to_safetensors_bytes(state) == ba


def test_bytes_roundtrip_and_validation():
    spec = ModelSpec()
    m = build_model(spec, 1)
    data = to_safetensors_bytes(m)
    m2 = load_model_bytes(data, spec)
    assert np.array_equal(flatten(m2), flatten(m))
    with pytest.raises(ModelFormatError, match="do not match spec"):
        from_safetensors_bytes(data, ModelSpec(n_classes=3))
    with pytest.raises(ModelFormatError, match="not a safetensors"):
        from_safetensors_bytes(b"\x80\x04pickle")
    bad = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    bad[param_names(m)[0]].flat[0] = np.nan
    with pytest.raises(ModelFormatError, match="NaN"):
        from_safetensors_bytes(to_safetensors_bytes(bad), spec)


def test_flatten_unflatten_canonical_order():
    spec = ModelSpec()
    m = build_model(spec, 2)
    v = flatten(m)
    expected = np.concatenate([m.state_dict()[k].numpy().ravel() for k in sorted(m.state_dict())])
    assert np.array_equal(v, expected)
    m2 = unflatten(build_model(spec, 3), v)
    assert to_safetensors_bytes(m2) == to_safetensors_bytes(m)
    with pytest.raises(ModelFormatError, match="does not fit"):
        unflatten(m2, v[:-1])
    with pytest.raises(ModelFormatError, match="NaN"):
        unflatten(m2, np.full_like(v, np.nan))


@pytest.fixture(scope="module")
def small_data():
    x, y = synthesize(400, n_classes=4, channels=1, seed=0)
    return x, y.reshape(-1)


def test_update_is_local_minus_base_and_base_untouched(small_data):
    x, y = small_data
    m = build_model(ModelSpec(), 0)
    base = flatten(m)
    u = train_local(m, x, y, epochs=1, batch_size=32, lr=0.05, seed=1, progress=False)
    assert np.array_equal(flatten(m), base)  # the caller's model is not modified
    assert u.dtype == np.float32 and u.shape == base.shape and np.linalg.norm(u) > 0
    u2 = train_local(m, x, y, epochs=1, batch_size=32, lr=0.05, seed=1, progress=False)
    assert np.array_equal(u, u2)  # deterministic for a seed
    acc0, loss0 = evaluate(m, x, y)
    trained = unflatten(build_model(ModelSpec(), 0), base + u)
    acc1, loss1 = evaluate(trained, x, y)
    assert loss1 < loss0
    assert train_local(m, x, y, epochs=5, batch_size=32, lr=0.05, seed=1, progress=False, max_steps=3).shape == u.shape


def test_small_cnn_learns_but_not_perfectly_in_one_epoch():
    x, y = synthesize(3000, n_classes=4, channels=1, seed=10)
    xt, yt = synthesize(1000, n_classes=4, channels=1, seed=11)
    m = build_model(ModelSpec(), 0)
    u = train_local(m, x, y.reshape(-1), epochs=1, batch_size=32, lr=0.05, seed=0, progress=False)
    acc, _ = evaluate(unflatten(m, flatten(m) + u), xt, yt.reshape(-1))
    assert 0.4 < acc < 0.97


def test_reference_is_deterministic(small_data):
    x, y = small_data
    rx, ry = root_dataset(x, y, 40, seed=0)
    assert len(ry) == 40 and np.bincount(ry).tolist() == [10, 10, 10, 10]
    m = build_model(ModelSpec(), 0)
    hp = TrainConfig(steps=5, batch_size=16)
    r1 = reference_update(m, rx, ry, hp, seed=4)
    r2 = reference_update(m, rx, ry, hp, seed=4)
    assert r1.sha256 == r2.sha256 and np.array_equal(r1.vector, r2.vector) and r1.n_samples == 40
    assert reference_update(m, rx, ry, hp, seed=5).sha256 != r1.sha256
    assert reference_update(m, rx, ry, TrainConfig(steps=6, batch_size=16), seed=4).sha256 != r1.sha256


def test_train_config_json_and_exact_steps(small_data):
    hp = TrainConfig(steps=7, batch_size=50, lr=0.01, momentum=0.0)
    assert TrainConfig.from_json(hp.to_json()) == hp
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_json('{"steps": 1, "evil": 2}')
    with pytest.raises(ValueError):
        TrainConfig(lr=-1)
    x, y = small_data
    m = build_model(ModelSpec(), 0)
    u7 = train_steps(m, x[:60], y[:60], hp, seed=0, progress=False)
    u8 = train_steps(m, x[:60], y[:60], TrainConfig(steps=8, batch_size=50, lr=0.01, momentum=0.0), 0, False)
    assert np.array_equal(u7, train_steps(m, x[:60], y[:60], hp, seed=0, progress=False))
    assert not np.array_equal(u7, u8)
