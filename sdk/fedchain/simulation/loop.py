"""Plaintext FL rounds: the same data, model, training, attacks and policy as the real
system, without ledger or MPC. Used to choose demo defaults and to compare defenses quickly.

Round r: every hospital trains from the global model for `steps` SGD steps on its
Dirichlet(α) shard (a fixed step count keeps honest update norms comparable to the
reference update trained on the public root set); malicious hospitals poison; the strategy
returns the aggregate and verdicts; global ← global + server_lr · aggregate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..attacks import AttackContext, get_attack
from ..data import Dataset, dirichlet_split, load_npz, synthesize
from ..data.npz import Split
from ..demo.report import RoundRecord, build_report, hospital_ids
from ..models import ModelSpec, build_model, flatten, model_hash, to_safetensors_bytes, unflatten
from ..reference import reference_update, root_dataset
from ..training import TrainConfig, evaluate, train_local, train_steps
from ..validation_batch import draw_validation_batch
from .config import SimConfig
from .strategy import Strategy


def load_data(cfg: SimConfig) -> Dataset:
    if cfg.dataset:
        return load_npz(cfg.dataset)
    tr = synthesize(cfg.n_train, n_classes=cfg.n_classes, channels=cfg.channels, seed=cfg.seed * 1000)
    va = synthesize(max(cfg.root_size * 2, 200), n_classes=cfg.n_classes, channels=cfg.channels,
                    seed=cfg.seed * 1000 + 1)
    te = synthesize(cfg.n_test, n_classes=cfg.n_classes, channels=cfg.channels, seed=cfg.seed * 1000 + 2)
    mk = [Split(i, y.reshape(-1)) for i, y in (tr, va, te)]
    return Dataset(mk[0], mk[1], mk[2], cfg.n_classes, cfg.channels, "synthetic")


def pick_malicious(cfg: SimConfig) -> list[int]:
    if cfg.malicious > cfg.hospitals:
        raise ValueError("more malicious hospitals than hospitals")
    rng = np.random.default_rng(cfg.seed + 7919)
    return sorted(int(i) for i in rng.choice(cfg.hospitals, cfg.malicious, replace=False))


@dataclass
class SimResult:
    records: list[RoundRecord]
    report: dict[str, Any]
    hospitals: list[str]


def run_simulation(cfg: SimConfig, strategy: Strategy, *, progress: bool = False,
                   on_round: Any = None) -> SimResult:
    """Run `cfg.rounds` plaintext rounds with `strategy`; returns issue-5 style records and report."""
    data = load_data(cfg)
    spec = ModelSpec(in_channels=data.channels, n_classes=data.n_classes, widths=tuple(cfg.widths),
                     hidden=cfg.hidden)
    model = build_model(spec, seed=cfg.seed)
    shards = dirichlet_split(data.train.labels, cfg.hospitals, cfg.alpha, seed=cfg.seed, min_size=cfg.batch_size)
    ids = hospital_ids(cfg.hospitals)
    bad = set(pick_malicious(cfg)) if cfg.attack and cfg.malicious else set()
    attack = get_attack(cfg.attack) if bad else None
    root_x, root_y = root_dataset(data.val.images, data.val.labels, cfg.root_size, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed + 104729)
    hp = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.warmup_epochs:
        w = train_local(model, root_x, root_y, epochs=cfg.warmup_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                        seed=cfg.seed, progress=False, momentum=cfg.momentum)
        unflatten(model, flatten(model) + w)
    acc0, _ = evaluate(model, data.test.images, data.test.labels)
    records: list[RoundRecord] = []
    for r in range(1, cfg.rounds + 1):
        t0 = time.perf_counter()
        base = flatten(model)

        def train(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
            return train_steps(model, x, y, hp, seed=seed, progress=progress)

        updates: dict[int, np.ndarray] = {}
        for i, idx in enumerate(shards):
            x, y = data.train.images[idx], data.train.labels[idx]
            if i in bad and attack is not None and attack.level == "data":
                ctx = AttackContext([], cfg.hospitals, len(bad), rng, data.n_classes, cfg.attack_params)
                x, y = attack.apply_data(x, y, ctx)  # type: ignore[misc]
            elif i in bad and attack is not None and attack.omniscient:
                continue  # crafted from the honest updates below
            updates[i] = train(x, y, seed=cfg.seed * 100003 + r * 1009 + i)
        honest = [updates[i] for i in range(cfg.hospitals) if i not in bad]
        for i in sorted(bad):
            if attack is not None and attack.level == "update":
                ctx = AttackContext(honest, cfg.hospitals, len(bad), rng, data.n_classes, cfg.attack_params)
                updates[i] = attack.apply_update(updates.get(i, honest[0]), ctx)  # type: ignore[misc]
        t_train = time.perf_counter() - t0
        ref_vec = reference_update(model, root_x, root_y, hp, seed=cfg.seed * 7 + r).vector
        t1 = time.perf_counter()
        ups = [updates[i] for i in range(cfg.hospitals)]
        n_samples = [len(s) for s in shards]
        extra: dict[str, Any] = {}
        if cfg.inference_check:  # the encrypted-inference check's inputs (docs/inference.md)
            bx, by = draw_validation_batch(root_x, np.asarray(root_y).reshape(-1), cfg.inference_batch, seed=r)
            extra["validation"] = {"spec": spec, "base": base, "images": bx,
                                   "labels": np.asarray(by, dtype=np.int64).reshape(-1)}
        delta, verdicts = strategy.aggregate(ups, n_samples, reference=ref_vec, **extra)
        unflatten(model, base + cfg.server_lr * delta)
        t_agg = time.perf_counter() - t1
        acc, loss = evaluate(model, data.test.images, data.test.labels)
        rec = RoundRecord(
            round=r, accuracy=acc, loss=loss,
            accepted=[ids[i] for i, v in enumerate(verdicts) if v.accept],
            rejected={ids[i]: v.reason for i, v in enumerate(verdicts) if not v.accept},
            malicious=[ids[i] for i in sorted(bad)],
            model_hash=model_hash(to_safetensors_bytes(model)),
            timings_s={"train": t_train, "share": 0.0, "mpc": t_agg, "ledger": 0.0,
                       "total": time.perf_counter() - t0},
        )
        records.append(rec)
        if on_round is not None:
            on_round(rec)
    config = cfg.as_dict() | {"defense": strategy.name, "model_spec": spec.to_json()}
    return SimResult(records, build_report(config, records, baseline_accuracy=acc0), ids)
