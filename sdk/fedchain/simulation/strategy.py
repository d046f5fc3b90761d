"""Aggregation strategies for the plaintext simulation (Flower-style `aggregate`).

`FedAvg` accepts everything (the "no defense" baseline). `PolicyStrategy` asks a pluggable
verdict function which updates to accept, then averages those weighted by n_samples. The
verdict function is a parameter on purpose: the real one is `fedchain_mpc.plaintext.evaluate`
(the reference semantics of the MPC checks, the same registered checks the nodes run), and
`fedchain` must not import `fedchain_mpc` (only the CLI layer wires them together:
fedchain.cli.simulate, run as `python -m fedchain.simulation`). The policy may be a fixed object or a callable
reference_norm -> policy (PolicySettings.round_policy), as the operator builds it per round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class Verdict:
    accept: bool
    reason: str = "ok"


VerdictFn = Callable[[list[np.ndarray], list[int], Any, np.ndarray | None], Any]


def normalize_verdicts(raw: Any, n: int) -> list[Verdict]:
    """Accept the shapes a verdict function may return: a sequence (by position) or a mapping
    keyed by position, of Verdict, (accept, reason), {"accept":…, "reason":…} or objects with
    .accept/.reason."""
    if isinstance(raw, Mapping):
        items = [raw[k] for k in sorted(raw, key=lambda k: int(k))]
    elif isinstance(raw, Sequence):
        items = list(raw)
    else:
        raise TypeError(f"verdict function returned {type(raw).__name__}, expected a sequence or mapping")
    if len(items) != n:
        raise ValueError(f"verdict function returned {len(items)} verdicts for {n} updates")
    out = []
    for v in items:
        if isinstance(v, Verdict):
            out.append(v)
        elif isinstance(v, Mapping):
            out.append(Verdict(bool(v["accept"]), str(v.get("reason", "ok" if v["accept"] else "rejected"))))
        elif isinstance(v, tuple | list):
            out.append(Verdict(bool(v[0]), str(v[1]) if len(v) > 1 else "ok"))
        elif isinstance(v, bool | np.bool_):
            out.append(Verdict(bool(v), "ok" if v else "rejected"))
        else:
            out.append(Verdict(bool(v.accept), str(getattr(v, "reason", "ok"))))
    return out


def weighted_average(updates: list[np.ndarray], n_samples: list[int], accepted: list[bool]) -> np.ndarray:
    """Σ n_i Δ_i / Σ n_i over accepted updates (zeros if none accepted: the model stays put)."""
    dim = updates[0].shape[0]
    w = np.array([n if a else 0 for n, a in zip(n_samples, accepted, strict=True)], dtype=np.float64)
    if w.sum() == 0:
        return np.zeros(dim, dtype=np.float32)
    stacked = np.stack(updates).astype(np.float64)
    return ((w[:, None] * stacked).sum(0) / w.sum()).astype(np.float32)


class Strategy(Protocol):
    name: str

    def aggregate(self, updates: list[np.ndarray], n_samples: list[int], *,
                  reference: np.ndarray | None = None,
                  validation: dict[str, Any] | None = None) -> tuple[np.ndarray, list[Verdict]]: ...


class FedAvg:
    """No defense: every update accepted, sample-weighted mean (McMahan et al. 2017)."""

    name = "fedavg"

    def aggregate(self, updates: list[np.ndarray], n_samples: list[int], *,
                  reference: np.ndarray | None = None,
                  validation: dict[str, Any] | None = None) -> tuple[np.ndarray, list[Verdict]]:
        verdicts = [Verdict(True)] * len(updates)
        return weighted_average(updates, n_samples, [True] * len(updates)), verdicts


class PolicyStrategy:
    """Verification policy → accept bits → sample-weighted mean of the accepted updates."""

    name = "policy"

    def __init__(self, verdict_fn: VerdictFn, policy: Any) -> None:
        self.verdict_fn = verdict_fn
        self.policy = policy

    def aggregate(self, updates: list[np.ndarray], n_samples: list[int], *,
                  reference: np.ndarray | None = None,
                  validation: dict[str, Any] | None = None) -> tuple[np.ndarray, list[Verdict]]:
        """validation (simulation.loop, SimConfig.inference_check): {spec, base, images, labels} of the round,
        passed to the verdict function as `validation=` (only then: older verdict functions work)."""
        ref = None if reference is None else reference.astype(np.float64)
        policy = self.policy
        if callable(policy):  # per round, from public data (the reference's norm)
            policy = policy(float(np.linalg.norm(ref)) if ref is not None else 1.0)
        extra = {} if validation is None else {"validation": validation}
        raw = self.verdict_fn([u.astype(np.float64) for u in updates], list(n_samples), policy, ref, **extra)
        verdicts = normalize_verdicts(raw, len(updates))
        return weighted_average(updates, n_samples, [v.accept for v in verdicts]), verdicts
