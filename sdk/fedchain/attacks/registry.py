"""Attack implementations and the `ATTACKS` registry (evaluation only; see package docstring)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import numpy as np


@dataclass
class AttackContext:
    """What a (colluding) attacker knows in a round."""

    honest_updates: list[np.ndarray]  # honest updates of this round (omniscient attacks only)
    n_clients: int  # total participants this round
    n_malicious: int
    rng: np.random.Generator
    n_classes: int = 0
    params: dict[str, Any] = field(default_factory=dict)


class AttackParamError(ValueError):
    """An `--attack-param` the chosen attack does not take, or a value it cannot use; the message says which."""


@dataclass(frozen=True)
class AttackParam:
    """One tunable of an attack, declared so that a mistyped name or value is refused instead of ignored."""

    meaning: str
    default: str  # what the attack uses when the parameter is not given (for messages and help)
    kind: type = float  # float, int or str
    low: float | None = None  # numbers: inclusive lower bound (exclusive when low_open)
    high: float | None = None  # numbers: inclusive upper bound
    low_open: bool = False
    choices: tuple[str, ...] = ()  # str: the accepted values

    def rule(self) -> str:
        """The accepted values in words, e.g. '> 0 and <= 1000'."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        what = "an integer" if self.kind is int else "a number"
        return what + (" " + " and ".join(parts) if parts else "")

    def parse(self, text: str) -> Any:
        """The value of `text`; AttackParamError (without the parameter's name) when it is not acceptable."""
        if self.kind is str:
            if text not in self.choices:
                raise AttackParamError(f"must be {self.rule()}")
            return text
        try:
            value = self.kind(text)
        except ValueError:
            raise AttackParamError(f"must be {self.rule()}") from None
        low_bad = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if not math.isfinite(value) or low_bad or (self.high is not None and value > self.high):
            raise AttackParamError(f"must be {self.rule()}")
        return value


@dataclass(frozen=True)
class Attack:
    name: str
    level: str  # "data" (poison the training set) or "update" (rewrite the update)
    description: str
    apply_data: Callable[[np.ndarray, np.ndarray, AttackContext], tuple[np.ndarray, np.ndarray]] | None = None
    apply_update: Callable[[np.ndarray, AttackContext], np.ndarray] | None = None
    omniscient: bool = False  # needs the honest updates of the round
    params: dict[str, AttackParam] = field(default_factory=dict)  # what ctx.params may hold

    def describe_params(self) -> str:
        """'factor (a number > 0; default 1)' for each parameter, or that there is none."""
        if not self.params:
            return f"{self.name} takes no parameters"
        return f"{self.name}'s parameters: " + "; ".join(
            f"{name} ({p.rule()}, default {p.default}: {p.meaning})" for name, p in self.params.items())

    def parse_params(self, items: list[str]) -> dict[str, Any]:
        """`K=V` strings → {K: value}, every K one of this attack's parameters, given once, with a usable value."""
        out: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            name = name.strip()
            if not sep or not name:
                raise AttackParamError(f"--attack-param {item!r}: expected NAME=VALUE; {self.describe_params()}")
            if name not in self.params:
                raise AttackParamError(f"--attack-param {item}: {self.name} has no parameter {name!r}; "
                                       f"{self.describe_params()}")
            if name in out:
                raise AttackParamError(f"--attack-param {name} is given twice")
            try:
                out[name] = self.params[name].parse(text.strip())
            except AttackParamError as exc:
                raise AttackParamError(f"--attack-param {item}: {name} {exc}") from None
        return out


def _label_flip(images: np.ndarray, labels: np.ndarray, ctx: AttackContext) -> tuple[np.ndarray, np.ndarray]:
    """y → C−1−y (Tolpegin et al. 2020 style all-class flip)."""
    c = ctx.n_classes or int(labels.max()) + 1
    return images, (c - 1 - np.asarray(labels)).astype(labels.dtype)


def _sign_flip(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """−k·Δ: push the model against the descent direction."""
    return (-float(ctx.params.get("factor", 1.0)) * u).astype(np.float32)


def _scaling(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """k·Δ (model-replacement boosting, Bagdasaryan et al. 2020); default k = number of clients."""
    return (float(ctx.params.get("factor", ctx.n_clients)) * u).astype(np.float32)


def _gaussian(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """Pure noise N(0, σ²I) in place of the update; σ set so its norm is `factor`× (default 20) the update's norm."""
    sigma = ctx.params.get("sigma")
    if sigma is None:
        sigma = float(ctx.params.get("factor", 20.0)) * float(np.linalg.norm(u)) / np.sqrt(u.size)
    return ctx.rng.normal(0.0, float(sigma), u.shape).astype(np.float32)


def _honest_stack(ctx: AttackContext, u: np.ndarray) -> np.ndarray:
    return np.stack(ctx.honest_updates).astype(np.float64) if ctx.honest_updates else u[None].astype(np.float64)


def _alie(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """A Little Is Enough (Baruch et al. 2019): μ − z·σ per coordinate, z from n and m."""
    h = _honest_stack(ctx, u)
    n, m = ctx.n_clients, ctx.n_malicious
    z = ctx.params.get("z")
    if z is None:
        s = n // 2 + 1 - m
        z = NormalDist().inv_cdf(min(max((n - s) / n, 0.5 + 1e-6), 1 - 1e-6))
    return (h.mean(0) - float(z) * h.std(0)).astype(np.float32)


def _ipm(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """Inner Product Manipulation (Xie et al. 2019): −ε·mean(honest)."""
    h = _honest_stack(ctx, u)
    return (-float(ctx.params.get("epsilon", 0.5)) * h.mean(0)).astype(np.float32)


def _min_max(u: np.ndarray, ctx: AttackContext) -> np.ndarray:
    """Min-Max (Shejwalkar & Houmansadr 2021): μ + γ·p with the largest γ whose max distance to
    any honest update stays ≤ the max pairwise honest distance; p = −std (the paper's choice)."""
    h = _honest_stack(ctx, u)
    mu = h.mean(0)
    kind = ctx.params.get("perturbation", "std")  # "std" or "unit" (the papers' unit vector)
    p = -h.std(0) if kind == "std" else -mu / (np.linalg.norm(mu) + 1e-12)
    sq = (h * h).sum(1)
    gram = h @ h.T
    max_pair = float(np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * gram, 0).max()))

    def ok(g: float) -> bool:
        return float(np.linalg.norm(h - (mu + g * p), axis=1).max()) <= max_pair

    lo, hi = 0.0, float(ctx.params.get("gamma_init", 10.0))
    while ok(hi) and hi < 1e6:  # grow until infeasible
        lo, hi = hi, hi * 2
    for _ in range(int(ctx.params.get("iters", 30))):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return (mu + lo * p).astype(np.float32)


_FACTOR_MAX = 1000.0  # beyond this the fixed-point encoding of an update overflows long before

ATTACKS: dict[str, Attack] = {
    a.name: a
    for a in (
        Attack("label_flip", "data", "train on labels y → C−1−y", apply_data=_label_flip),
        Attack("sign_flip", "update", "send −Δ", apply_update=_sign_flip,
               params={"factor": AttackParam("sends −factor·Δ", "1", low=0, low_open=True, high=_FACTOR_MAX)}),
        Attack("scaling", "update", "send k·Δ (k = number of hospitals)", apply_update=_scaling,
               params={"factor": AttackParam("sends factor·Δ", "the number of hospitals", low=0, low_open=True,
                                             high=_FACTOR_MAX)}),
        Attack("gaussian", "update", "send Gaussian noise (20× the update's norm)", apply_update=_gaussian,
               params={"factor": AttackParam("noise norm = factor × the update's norm", "20", low=0, low_open=True,
                                             high=_FACTOR_MAX),
                       "sigma": AttackParam("noise standard deviation per coordinate (overrides factor)",
                                            "from factor", low=0, low_open=True, high=_FACTOR_MAX)}),
        Attack("alie", "update", "A Little Is Enough: μ − z·σ of honest updates", apply_update=_alie,
               omniscient=True,
               params={"z": AttackParam("standard deviations below the mean", "from the hospital counts",
                                        low=-100, high=100)}),
        Attack("ipm", "update", "Inner Product Manipulation: −ε·mean(honest)", apply_update=_ipm, omniscient=True,
               params={"epsilon": AttackParam("sends −epsilon·mean(benign)", "0.5", low=0, low_open=True,
                                              high=_FACTOR_MAX)}),
        Attack("min_max", "update", "Min-Max: μ − γ·σ, γ max within honest spread", apply_update=_min_max,
               omniscient=True,
               params={"perturbation": AttackParam("direction: −std per coordinate, or −unit mean", "std", kind=str,
                                                   choices=("std", "unit")),
                       "gamma_init": AttackParam("first γ of the search", "10", low=0, low_open=True, high=1e6),
                       "iters": AttackParam("bisection steps", "30", kind=int, low=1, high=200)}),
    )
}
ALIASES = {"gaussian_noise": "gaussian", "minmax": "min_max", "min-max": "min_max", "sign-flip": "sign_flip",
           "label-flip": "label_flip"}


def get_attack(name: str) -> Attack:
    key = ALIASES.get(name, name)
    if key not in ATTACKS:
        raise KeyError(f"unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[key]
