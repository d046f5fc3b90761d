"""Benchmark of the encrypted-inference check: three MPyC party processes on 127.0.0.1.

The parent (torch allowed) builds a round: a base model warmed up on the public root set, a
class-balanced validation batch drawn from it (fedchain.validation_batch), and N updates: honest ones
(local SGD on each hospital's shard) and planted degraded ones (label-flipped training, its own
update scaled by -8, Gaussian noise of 0.2 per weight). It Shamir-shares every update exactly as hospitals do, writes one input file per
party (npz, no pickle) and starts the parties (`python -m fedchain_mpc.bench_inference -P ... -I i`,
input file in the environment). Every party runs verify_and_aggregate with the range check and the
inference check only (so the inference stage sees every row), and reports wall and CPU seconds per
layer (the inference stage's own figures) plus its process CPU.

Report: per layer seconds / CPU seconds (max over parties) and comparisons; the stage's wall and CPU
seconds; the same batch's plaintext torch inference time for the N candidate models and the ratio;
and whether the MPC verdicts equal plaintext.evaluate_round (the fixed-point twin) with the same seed.
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

INPUT_ENV = "FEDCHAIN_INFER_BENCH"
KINDS = ("honest", "label_flip", "scaled", "noised")


def bench_policy(batch: int, margin: float = 0.1) -> Any:
    """Range check (required before inference) and the inference check; the others off."""
    from fedchain.verification import VerificationPolicy

    return VerificationPolicy(norm_enabled=False, cosine_enabled=False, outlier_enabled=False, min_accepted=1,
                              inference_enabled=True, inference_batch=batch, inference_margin=margin)


def make_round(hospitals: int, batch: int, arch: str, seed: int, dataset: str | None = None,
               degraded: int = 3, steps: int = 40) -> dict[str, Any]:
    """Base model, validation batch and updates (float64) with planted degraded ones first."""
    from fedchain.data import dirichlet_split, load_npz, synthesize
    from fedchain.models import ModelSpec, build_model, flatten, unflatten
    from fedchain.reference import root_dataset
    from fedchain.training import TrainConfig, train_local, train_steps
    from fedchain.validation_batch import draw_validation_batch

    if dataset:
        ds = load_npz(dataset)
        tr_x, tr_y = ds.train.images, ds.train.labels.reshape(-1)
        va_x, va_y = ds.val.images, ds.val.labels.reshape(-1)
        ncls, ch = ds.n_classes, ds.channels
    else:
        ncls, ch = 4, 1
        tr_x, tr_y = synthesize(3000, n_classes=ncls, channels=ch, seed=seed)
        va_x, va_y = synthesize(600, n_classes=ncls, channels=ch, seed=seed + 1)
        tr_y, va_y = np.asarray(tr_y).reshape(-1), np.asarray(va_y).reshape(-1)
    spec = ModelSpec(arch=arch, in_channels=ch, n_classes=ncls)
    model = build_model(spec, seed=seed)
    root_x, root_y = root_dataset(va_x, va_y, 200, seed=seed)
    w = train_local(model, root_x, root_y, epochs=5, batch_size=64, lr=0.05, seed=seed, progress=False)
    unflatten(model, flatten(model) + w)
    base = flatten(model)
    images, labels = draw_validation_batch(root_x, root_y, batch, seed=seed)
    shards = dirichlet_split(tr_y, hospitals, 1.0, seed=seed, min_size=32)
    hp = TrainConfig(steps=steps, batch_size=32, lr=0.05, momentum=0.9)
    rng = np.random.default_rng(seed + 7)
    ups, kinds = [], []
    for i, idx in enumerate(shards):
        kind = KINDS[1 + i % 3] if i < degraded else "honest"
        y = tr_y[idx]
        if kind == "label_flip":
            y = (ncls - 1) - y
        u = train_steps(model, tr_x[idx], y, hp, seed=seed * 1000 + i, progress=False)
        if kind == "scaled":
            u = -8.0 * u
        elif kind == "noised":
            u = u + rng.normal(0.0, 0.2, u.shape)
        ups.append(np.asarray(u, dtype=np.float64))
        kinds.append(kind)
    return {"spec": spec, "base": base, "images": np.asarray(images, dtype=np.uint8),
            "labels": np.asarray(labels, dtype=np.int64).reshape(-1), "updates": np.stack(ups), "kinds": kinds}


def torch_seconds(spec: Any, base: np.ndarray, updates: np.ndarray, images: np.ndarray) -> float:
    """Plaintext float32 torch inference of the N candidate models on the batch (1 thread)."""
    import torch
    from fedchain.models import build_model, unflatten
    from fedchain.training import to_tensor

    torch.set_num_threads(1)
    model = build_model(spec)
    x = to_tensor(images)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        with torch.no_grad():
            for u in updates:
                unflatten(model, (base + u).astype(np.float32))
                model(x)
        best = min(best, time.perf_counter() - t)
    return best


def write_inputs(workdir: Path, rnd: dict[str, Any], policy: Any, seed: str, m: int = 3, t: int = 1) -> list[Path]:
    from fedchain.sharing import encode, split

    shares = [split(encode(u), t, m) for u in rnd["updates"]]
    paths = []
    for j in range(m):
        p = workdir / f"party{j}.npz"
        np.savez(p, hi=np.stack([s[j].hi for s in shares]), lo=np.stack([s[j].lo for s in shares]),
                 base=rnd["base"], images=rnd["images"], labels=rnd["labels"],
                 spec=np.array(rnd["spec"].to_json()), policy=np.array(policy.to_json()), seed=np.array(seed),
                 out=np.array(str(workdir / f"out{j}.json")))
        paths.append(p)
    return paths


def run_parties(inputs: list[Path], timeout: float = 1800.0) -> list[dict[str, Any]]:
    from fedchain_mpc.bench import launch_parties

    launch_parties("fedchain_mpc.bench_inference", [{INPUT_ENV: str(p)} for p in inputs], timeout)
    outs = []
    for p in inputs:
        with np.load(p, allow_pickle=False) as z:
            outs.append(json.loads(Path(str(z["out"])).read_text()))
    return outs


def run(hospitals: int = 8, batch: int = 32, arch: str = "cnn_pool", seed: int = 0, dataset: str | None = None,
        degraded: int = 3) -> dict[str, Any]:
    """The benchmark report (JSON-serializable)."""
    from fedchain_mpc import plaintext
    from fedchain_mpc.checks import InferenceInputs
    from fedchain_mpc.inference.plan import borderline

    rnd = make_round(hospitals, batch, arch, seed, dataset, degraded=degraded)
    policy = bench_policy(batch)
    with tempfile.TemporaryDirectory(prefix="fc-infer-") as tmp:
        inputs = write_inputs(Path(tmp), rnd, policy, f"bench-inference-{seed}")
        started = time.perf_counter()
        outs = run_parties(inputs)
        wall = time.perf_counter() - started
    inf = InferenceInputs(rnd["spec"], rnd["base"], rnd["images"], rnd["labels"])
    n = hospitals
    pt, _, _ = plaintext.evaluate_round(rnd["updates"], [100] * n, policy, None, outs[0]["seed"], inference=inf)
    mpc_v = [tuple(v) for v in outs[0]["verdicts"]]
    border = borderline(rnd["updates"], inf, policy)
    layers = []
    for k, row in enumerate(outs[0]["stats"]["inference"]["layers"]):
        per = [o["stats"]["inference"]["layers"][k] for o in outs]
        layers.append({**row, "seconds": max(r["seconds"] for r in per),
                       "cpu_seconds": max(r["cpu_seconds"] for r in per),
                       "cpu_seconds_all_parties": sum(r["cpu_seconds"] for r in per)})
    stage = max(o["phases"]["inference"] for o in outs)
    stage_cpu = max(o["phases_cpu"]["inference"] for o in outs)
    t_torch = torch_seconds(rnd["spec"], rnd["base"], rnd["updates"], rnd["images"])
    return {
        "hospitals": n, "batch": batch, "arch": arch, "model_spec": json.loads(rnd["spec"].to_json()),
        "parameters": int(rnd["base"].size), "kinds": rnd["kinds"], "dataset": dataset or "synthetic",
        "inference_stage_s": stage, "inference_stage_cpu_s_max_party": stage_cpu,
        "inference_stage_cpu_s_all_parties": sum(o["phases_cpu"]["inference"] for o in outs),
        "layers": layers, "comparisons": outs[0]["stats"]["inference"]["comparisons"],
        "round_wall_s": wall, "process_cpu_s": [o["cpu_s"] for o in outs],
        "bytes_sent": [o["bytes_sent"] for o in outs],
        "peak_rss_mb": [o["peak_rss_mb"] for o in outs],
        "torch_s": t_torch, "ratio_mpc_to_torch": stage / t_torch if t_torch > 0 else None,
        "verdicts_mpc": [list(v) for v in mpc_v], "verdicts_plaintext": [list(v) for v in pt],
        "verdicts_equal_plaintext": all(b or m == tuple(v) for m, v, b in zip(mpc_v, pt, border, strict=True)),
        "borderline_rows": [int(i) for i in np.flatnonzero(border)],  # compared rows exclude these near-ties
        "nodes_agree": all(o["verdicts"] == outs[0]["verdicts"] for o in outs),
        "load_avg": os.getloadavg()[0],
    }


def table(r: dict[str, Any]) -> str:
    lines = [f"inference check: {r['hospitals']} hospitals x batch {r['batch']}, arch {r['arch']} "
             f"({r['parameters']} parameters, {r['dataset']}), load avg {r['load_avg']:.2f}",
             f"{'layer':<14}{'seconds':>9}{'CPU s':>9}{'comparisons':>13}{'truncations':>13}{'l':>4}"]
    for ly in r["layers"]:
        lines.append(f"{ly['layer']:<14}{ly['seconds']:>9.2f}{ly['cpu_seconds']:>9.2f}{ly['comparisons']:>13}"
                     f"{ly['truncations']:>13}{ly['cmp_bits']:>4}")
    lines.append(f"inference stage: {r['inference_stage_s']:.2f} s wall, {r['inference_stage_cpu_s_max_party']:.2f} "
                 f"CPU s (busiest party), {r['inference_stage_cpu_s_all_parties']:.2f} CPU s (3 parties)")
    lines.append(f"plaintext torch, same {r['hospitals']} models on the batch: {r['torch_s'] * 1000:.1f} ms; "
                 f"MPC / torch = {r['ratio_mpc_to_torch']:.0f}x")
    lines.append("verdicts: " + ", ".join(f"{k}:{v[1]}" for k, v in zip(r["kinds"], r["verdicts_mpc"], strict=True)))
    lines.append(f"MPC verdicts == plaintext fixed-point twin: {r['verdicts_equal_plaintext']}; "
                 f"parties agree: {r['nodes_agree']}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ party
async def _party(path: str) -> None:
    from fedchain.verification import VerificationPolicy
    from mpyc.runtime import mpc

    from fedchain_mpc.checks import InferenceInputs
    from fedchain_mpc.verify import verify_and_aggregate

    with np.load(path, allow_pickle=False) as z:
        hi, lo = z["hi"], z["lo"]
        spec = _Spec.from_json(str(z["spec"]))
        inf = InferenceInputs(spec, z["base"], z["images"], z["labels"])
        policy = VerificationPolicy.from_json(str(z["policy"]))
        seed, out = str(z["seed"]), Path(str(z["out"]))
    await mpc.start()
    res = await verify_and_aggregate(hi, lo, [100] * lo.shape[0], policy, None, seed, inference=inf)
    nbytes = sum(p.protocol.nbytes_sent for p in mpc.parties if p.pid != mpc.pid and p.protocol is not None)
    await mpc.shutdown()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({"verdicts": res.verdicts, "seed": res.seed, "phases": res.phases,
                               "phases_cpu": res.phases_cpu, "stats": res.stats, "bytes_sent": nbytes,
                               "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024.0}))


class _Spec:
    """ModelSpec's fields without importing torch (the parties stay torch-free, like the nodes)."""

    def __init__(self, d: dict[str, Any]) -> None:
        self.arch = str(d.get("arch", "cnn"))
        self.in_channels = int(d["in_channels"])
        self.n_classes = int(d["n_classes"])
        self.widths = tuple(int(w) for w in d.get("widths", (8, 16)))
        self.hidden = int(d.get("hidden", 32))

    @classmethod
    def from_json(cls, text: str) -> _Spec:
        return cls(json.loads(text))


if __name__ == "__main__":
    from mpyc.runtime import mpc as _mpc

    from fedchain_mpc.safe_wire import harden

    harden()  # no pickle between parties (every party of the run)
    _mpc.run(_party(os.environ[INPUT_ENV]))
