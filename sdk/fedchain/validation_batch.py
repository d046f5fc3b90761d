"""The public validation batch of a round: the images and labels the encrypted-inference check runs on.

Why a format of its own: every MPC node, the operator and any auditor must agree on the exact bytes,
because the round fixes their SHA-256 (`hyperparameters.validation_sha256`, set by CreateRound) and the
ledger stores them (PublishValidationBatch). So the format is canonical: safetensors (never pickle)
holding exactly two tensors,

    images  uint8  (B, 28, 28) or (B, 28, 28, 3)   pixels as the dataset stores them
    labels  int64  (B,)                             class ids in [0, n_classes)

with no metadata. `encode` of the same content always gives the same bytes (same SHA-256), and
`decode` accepts only bytes that `encode` would have produced: a file with other keys, another dtype
or layout, a metadata block or trailing bytes is refused with a message that says what is wrong.

The batch is drawn from the consortium's public root set (the samples the FLTrust reference is
trained on, fedchain.reference.root_set): `draw_validation_batch` takes a class-balanced, seeded
subset, so anyone holding the root file recomputes the same batch from the round's recorded
`validation_size` and `validation_seed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from fedchain.canonical import sha256_hex

if TYPE_CHECKING:  # models imports torch; decoding must not need it
    from fedchain.models import ModelSpec

SIDE = 28
KEYS = ("images", "labels")
MAX_BATCH = 4096  # far above any policy's inference_batch; bounds what decode ever allocates
# safetensors header for two tensors: JSON of ~150 bytes padded to 8; generous so no honest file is refused
_HEADER_ALLOWANCE = 512

__all__ = ["KEYS", "MAX_BATCH", "ValidationBatchError", "batch_sha256", "decode", "draw_validation_batch",
           "encode", "max_encoded_size", "sha256_hex"]


class ValidationBatchError(ValueError):
    """Bytes or arrays that are not a canonical validation batch (the message names what is wrong)."""


def max_encoded_size(max_batch: int, channels: int = 3) -> int:
    """The largest encoding of a batch of at most `max_batch` images (`channels` 1 or 3): checked before
    any parsing, so an oversized blob is refused without being decoded."""
    return _HEADER_ALLOWANCE + int(max_batch) * (SIDE * SIDE * channels + 8)


def _check_arrays(images: np.ndarray, labels: np.ndarray, n_classes: int | None, channels: int | None,
                  max_batch: int) -> None:
    if images.dtype != np.uint8:
        raise ValidationBatchError(f"images must be uint8, got {images.dtype}")
    if labels.dtype != np.int64:
        raise ValidationBatchError(f"labels must be int64, got {labels.dtype}")
    if images.shape[1:] not in ((SIDE, SIDE), (SIDE, SIDE, 3)):
        raise ValidationBatchError(f"images must be B x 28 x 28 or B x 28 x 28 x 3, got {tuple(images.shape)}")
    b = images.shape[0]
    if b < 1:
        raise ValidationBatchError("the batch is empty")
    if b > max_batch:
        raise ValidationBatchError(f"the batch has {b} images, at most {max_batch} allowed")
    if labels.shape != (b,):
        raise ValidationBatchError(f"labels must have shape ({b},) for {b} images, got {tuple(labels.shape)}")
    got_channels = 1 if images.ndim == 3 else 3
    if channels is not None and got_channels != channels:
        raise ValidationBatchError(f"the model takes {channels}-channel images, the batch has {got_channels}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or (n_classes is not None and hi >= n_classes):
        bound = f"[0, {n_classes})" if n_classes is not None else "non-negative"
        raise ValidationBatchError(f"labels must be {bound}, got values from {lo} to {hi}")


def encode(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The canonical bytes of a batch (same content -> same bytes -> same SHA-256).

    Arrays are checked first (uint8 images of the stored layout, int64 labels, one label per image); a
    label array of another integer dtype or an N x 1 column (MedMNIST's layout) is not converted
    silently: the caller decides."""
    from safetensors.numpy import save

    images = np.asarray(images)
    labels = np.asarray(labels)
    _check_arrays(images, labels, None, None, MAX_BATCH)
    return save({"images": np.ascontiguousarray(images), "labels": np.ascontiguousarray(labels, dtype="<i8")})


def batch_sha256(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of `encode(images, labels)`: the value a round declares as validation_sha256."""
    return sha256_hex(encode(images, labels))


def _classes_and_channels(spec: ModelSpec | int | None) -> tuple[int | None, int | None]:
    if spec is None:
        return None, None
    if isinstance(spec, bool) or not isinstance(spec, int | np.integer):
        return int(spec.n_classes), int(spec.in_channels)
    if spec < 1:
        raise ValueError(f"n_classes must be at least 1, got {spec}")
    return int(spec), None


def decode(data: bytes, spec: ModelSpec | int | None = None, max_batch: int = MAX_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of canonical batch bytes, or ValidationBatchError.

    `spec`: the round's ModelSpec (labels < n_classes, channels = in_channels) or just n_classes;
    `max_batch`: the most images accepted (the policy's inference_batch). The size is checked before the
    bytes are parsed; afterwards the bytes must be exactly what `encode` makes of their content."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    if not isinstance(data, bytes | bytearray | memoryview):
        raise ValidationBatchError(f"a validation batch is bytes, got {type(data).__name__}")
    data = bytes(data)
    n_classes, channels = _classes_and_channels(spec)
    limit = max_encoded_size(max_batch, channels or 3)
    if not data:
        raise ValidationBatchError("the validation batch is empty (0 bytes)")
    if len(data) > limit:
        raise ValidationBatchError(f"the validation batch is {len(data)} bytes; a batch of at most {max_batch} "
                                   f"images takes at most {limit}")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, TypeError, OverflowError) as exc:  # malformed header or offsets
        raise ValidationBatchError(f"not a safetensors file ({str(exc)[:200]})") from None
    if sorted(tensors) != sorted(KEYS):
        raise ValidationBatchError(f"a validation batch holds exactly the tensors images and labels, got "
                                   f"{sorted(tensors)[:8]}")
    images, labels = tensors["images"], tensors["labels"]
    _check_arrays(images, labels, n_classes, channels, max_batch)
    if encode(images, labels) != data:
        raise ValidationBatchError("the bytes are not the canonical encoding of their content (metadata, padding "
                                   "or trailing bytes): re-encode the batch with fedchain.validation_batch.encode")
    return images, labels


def draw_validation_batch(root_images: np.ndarray, root_labels: np.ndarray, size: int,
                          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`size` class-balanced samples of the public root set, deterministic for `seed`.

    The same rule as the root set itself (fedchain.reference.root_dataset: classes in turn, each
    class's samples in a seeded order), so a round records only its size and seed and anyone holding
    the root file redraws the same batch."""
    from fedchain.reference import root_dataset

    labels = np.asarray(root_labels).reshape(-1)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"the validation batch size must be a positive integer, got {size!r}")
    if size > len(labels):
        raise ValueError(f"a validation batch of {size} needs at least {size} root samples; the root set has "
                         f"{len(labels)}")
    x, y = root_dataset(np.asarray(root_images), labels, int(size), seed=int(seed))
    images = np.ascontiguousarray(x, dtype=np.uint8)
    labels_out = np.ascontiguousarray(y, dtype=np.int64)
    _check_arrays(images, labels_out, None, None, MAX_BATCH)
    return images, labels_out


def describe(images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Public facts of a batch for logs and reports (size, layout, per-class counts): nothing secret."""
    classes, counts = np.unique(labels, return_counts=True)
    return {"size": int(len(labels)), "shape": list(images.shape[1:]),
            "per_class": {int(c): int(n) for c, n in zip(classes, counts, strict=True)}}
