"""Local training and evaluation (PyTorch, CPU).

A hospital trains a *copy* of the base model and reports only Δ = w_local − w_base (the
canonical flattened vector), which is what gets secret-shared. Deterministic for a seed
(shuffling uses its own torch.Generator), so reruns and restarts reproduce the same update.
"""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .models import flatten
from .train_config import TrainConfig  # re-exported: fedchain.training.TrainConfig

_threads_set = False


def set_threads(n: int | None = None) -> None:
    """Use few intra-op threads: several hospitals and MPC nodes share 2 cores in the demo."""
    global _threads_set
    if n is None:
        n = int(os.environ.get("FEDCHAIN_TORCH_THREADS", "1"))
    torch.set_num_threads(max(1, n))
    _threads_set = True


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N×28×28(×3) → float32 N×C×28×28 in [-1, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)
    return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()


def train_local(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 1, batch_size: int = 32,
                lr: float = 0.05, seed: int = 0, progress: bool = True, momentum: float = 0.9,
                weight_decay: float = 0.0, desc: str = "train", max_steps: int | None = None) -> np.ndarray:
    """Train a copy of `model` with SGD and return the float32 update vector w_local − w_base.

    `model` itself is not modified. `max_steps` caps the number of minibatch steps (keeps a
    large hospital within the round's time budget).
    """
    if not _threads_set:
        set_threads()
    labels = np.asarray(labels).reshape(-1)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if len(labels) == 0:
        raise ValueError("no training samples")
    base = flatten(model)
    local = copy.deepcopy(model)
    local.train()
    x, y = to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    gen = torch.Generator().manual_seed(int(seed))
    opt = torch.optim.SGD(local.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    steps_per_epoch = math.ceil(len(y) / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    done = 0
    with tqdm(total=total, desc=desc, disable=not progress, leave=False, unit="batch") as bar:
        for _ in range(epochs):
            perm = torch.randperm(len(y), generator=gen)
            for i in range(0, len(y), batch_size):
                if done >= total:
                    break
                idx = perm[i:i + batch_size]
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(local(x[idx]), y[idx])
                loss.backward()
                opt.step()
                done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    update = flatten(local) - base
    if not np.all(np.isfinite(update)):
        raise FloatingPointError("training diverged (NaN/inf in the update); lower the learning rate")
    return update.astype(np.float32)


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 1024
             ) -> tuple[float, float]:
    """(accuracy, mean cross-entropy loss) on the given samples."""
    if not _threads_set:
        set_threads()
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == 0:
        raise ValueError("no evaluation samples")
    model.eval()
    correct, loss_sum = 0, 0.0
    y_all = torch.from_numpy(labels.astype(np.int64))
    for i in range(0, len(labels), batch_size):
        x = to_tensor(images[i:i + batch_size])
        y = y_all[i:i + batch_size]
        out = model(x)
        loss_sum += nn.functional.cross_entropy(out, y, reduction="sum").item()
        correct += int((out.argmax(1) == y).sum())
    return correct / len(labels), loss_sum / len(labels)


def train_steps(model: nn.Module, images: np.ndarray, labels: np.ndarray, hp: TrainConfig, seed: int,
                progress: bool = True, desc: str = "train") -> np.ndarray:
    """Update after exactly `hp.steps` minibatch steps (cycling through the data as needed)."""
    epochs = math.ceil(hp.steps * hp.batch_size / max(1, len(labels)))
    return train_local(model, images, labels, epochs=epochs, batch_size=hp.batch_size, lr=hp.lr, seed=seed,
                       progress=progress, momentum=hp.momentum, desc=desc, max_steps=hp.steps)
