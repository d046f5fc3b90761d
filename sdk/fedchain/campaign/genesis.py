"""The campaign's first model: built from its spec and warm-started on the public root set.

Why warm-start: a model at chance level makes every hospital's update (and the reference) point in
nearly the same 'learn anything' direction, which tells poisoned updates apart worse; a few epochs on
the root set are public, cheap and reproducible.
"""

from __future__ import annotations

from typing import Any

from fedchain.models import ModelSpec, build_model, flatten, to_safetensors_bytes, unflatten
from fedchain.records import ModelSpecRecord
from fedchain.reference import RootSet
from fedchain.training import TrainConfig, train_local


def initial_model(spec: ModelSpec, root: RootSet, warmup_epochs: int, train: TrainConfig, seed: int) -> bytes:
    """Canonical safetensors bytes of the genesis model (deterministic for the same inputs)."""
    model = build_model(spec, seed=seed)
    if warmup_epochs:
        w = train_local(model, root.images, root.labels, epochs=warmup_epochs, batch_size=train.batch_size,
                        lr=train.lr, seed=seed, progress=False, momentum=train.momentum)
        unflatten(model, flatten(model) + w)
    return to_safetensors_bytes(model)


def ledger_model_spec(fl: Any) -> ModelSpecRecord | None:
    """The model spec of the ledger's current model (None before genesis)."""
    head = fl.head()
    if head.model_hash is None or head.finalized_round_id is None:
        return None
    return fl.get_model(head.finalized_round_id).model_spec
