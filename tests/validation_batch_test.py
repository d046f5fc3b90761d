"""fedchain.validation_batch: canonical bytes, strict decoding, deterministic class-balanced draws."""

from __future__ import annotations

import numpy as np
import pytest
from fedchain import validation_batch as vb
from safetensors.numpy import save


def _batch(b: int = 32, rgb: bool = False, n_classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (b, 28, 28, 3) if rgb else (b, 28, 28)
    return rng.integers(0, 256, shape, dtype=np.uint8), (np.arange(b, dtype=np.int64) % n_classes)


@pytest.mark.parametrize("rgb", [False, True])
def test_round_trip_and_canonical_bytes(rgb):
    x, y = _batch(rgb=rgb)
    data = vb.encode(x, y)
    assert data == vb.encode(x.copy(), y.copy())  # same content, same bytes
    assert vb.batch_sha256(x, y) == vb.sha256_hex(data)
    assert len(data) <= vb.max_encoded_size(32, 3 if rgb else 1)
    gx, gy = vb.decode(data, 4, 32)
    assert gx.dtype == np.uint8 and gy.dtype == np.int64
    assert (gx == x).all() and (gy == y).all()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d + b"\0", "not a safetensors file"),
    (lambda d: d[:-1], "not a safetensors file"),
    (lambda d: b"", "empty"),
    (lambda d: b"\xff" * 16, "not a safetensors file"),
    (lambda d: d.replace(b'"images"', b'"imagez"'), "exactly the tensors images and labels"),
])
def test_malformed_bytes_are_refused_with_a_reason(mutate, message):
    x, y = _batch()
    with pytest.raises(vb.ValidationBatchError, match=message):
        vb.decode(mutate(vb.encode(x, y)), 4, 32)


def test_strict_content_rules():
    x, y = _batch()
    with pytest.raises(vb.ValidationBatchError, match="labels must be int64"):
        vb.decode(save({"images": x, "labels": y.astype(np.int32)}), 4, 32)
    with pytest.raises(vb.ValidationBatchError, match="images must be uint8"):
        vb.decode(save({"images": x[:8].astype(np.float32), "labels": y[:8]}), 4, 32)
    with pytest.raises(vb.ValidationBatchError, match="canonical encoding"):
        vb.decode(save({"images": x, "labels": y}, metadata={"note": "x"}), 4, 32)
    with pytest.raises(vb.ValidationBatchError, match="exactly the tensors"):
        vb.decode(save({"images": x, "labels": y, "extra": y}), 4, 32)
    with pytest.raises(vb.ValidationBatchError, match=r"labels must be \[0, 3\)"):
        vb.decode(vb.encode(x, y), 3, 32)
    with pytest.raises(vb.ValidationBatchError, match="at most 16 allowed"):
        vb.decode(vb.encode(x, y), 4, 16)
    with pytest.raises(vb.ValidationBatchError, match="bytes; a batch of at most 2"):
        vb.decode(vb.encode(x, y), 4, 2)  # refused by size before parsing
    with pytest.raises(vb.ValidationBatchError, match="B x 28 x 28"):
        vb.encode(np.zeros((4, 28, 28, 1), np.uint8), np.zeros(4, np.int64))
    with pytest.raises(vb.ValidationBatchError, match=r"labels must have shape \(4,\)"):
        vb.encode(np.zeros((4, 28, 28), np.uint8), np.zeros((4, 1), np.int64))
    with pytest.raises(vb.ValidationBatchError, match="empty"):
        vb.encode(np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))


def test_spec_checks_channels_and_classes():
    class Spec:  # duck-typed like fedchain.models.ModelSpec
        in_channels, n_classes = 3, 4

    x, y = _batch()
    with pytest.raises(vb.ValidationBatchError, match="3-channel images, the batch has 1"):
        vb.decode(vb.encode(x, y), Spec(), 32)
    xr, yr = _batch(rgb=True)
    assert vb.decode(vb.encode(xr, yr), Spec(), 32)[0].shape == (32, 28, 28, 3)


def test_draw_is_deterministic_and_class_balanced():
    rng = np.random.default_rng(1)
    root_x = rng.integers(0, 256, (200, 28, 28), dtype=np.uint8)
    root_y = rng.integers(0, 4, 200)  # any integer dtype in, int64 out
    a = vb.draw_validation_batch(root_x, root_y, 32, seed=5)
    b = vb.draw_validation_batch(root_x, root_y, 32, seed=5)
    c = vb.draw_validation_batch(root_x, root_y, 32, seed=6)
    assert vb.encode(*a) == vb.encode(*b)
    assert vb.encode(*a) != vb.encode(*c)
    assert a[1].dtype == np.int64 and len(a[1]) == 32
    assert np.bincount(a[1], minlength=4).tolist() == [8, 8, 8, 8]
    with pytest.raises(ValueError, match="needs at least 300 root samples"):
        vb.draw_validation_batch(root_x, root_y, 300)
    with pytest.raises(ValueError, match="positive integer"):
        vb.draw_validation_batch(root_x, root_y, 0)
