"""Reference semantics of the verification pipeline in plain float64 (fedchain.verification.policy).

Runs the same registered checks (fedchain_mpc.checks) as the MPC driver, stage by stage over the
rows still eligible, with the same public randomness (pass MPCResult.seed) and the same quantized
unit reference; the only differences are fixed-point rounding (2^-16) of inputs and intermediate
values. Used by tests, benchmarks and simulations (through the CLI layer).
"""

from __future__ import annotations

import numpy as np
from fedchain.sharing import field_modulus
from fedchain.verification import VerificationPolicy

from fedchain_mpc import field as ff
from fedchain_mpc.checks import InferenceInputs, PlainRound
from fedchain_mpc.pipeline import (
    OK,
    OUT_OF_RANGE,
    TOO_FEW,
    active_checks,
    aggregate_is_sane,
    require_inference,
)


def evaluate(updates: np.ndarray, n_samples: list[int], policy: VerificationPolicy,
             reference: np.ndarray | None, seed: str,
             consistent: np.ndarray | None = None, *,
             inference: InferenceInputs | None = None) -> tuple[list[tuple[bool, str]], np.ndarray]:
    """Verdicts [(accept, reason)] and the weighted average of accepted updates (float64; zeros if
    fewer than min_accepted were accepted)."""
    verdicts, agg, _ = evaluate_round(updates, n_samples, policy, reference, seed, consistent,
                                      inference=inference)
    return verdicts, agg


def evaluate_round(updates: np.ndarray, n_samples: list[int], policy: VerificationPolicy,
                   reference: np.ndarray | None, seed: str, consistent: np.ndarray | None = None, *,
                   inference: InferenceInputs | None = None) -> tuple[list[tuple[bool, str]], np.ndarray, str]:
    """(verdicts, aggregate, outcome) with outcome ok | too_few_accepted | aggregate_out_of_range.

    inference: the model spec, base model and validation batch; required if policy.inference_enabled."""
    require_inference(policy, inference)
    x = np.asarray(updates, dtype=np.float64)
    n, d = x.shape
    ref = ff.quantized_reference(reference) / 2.0 ** 16 if reference is not None else None
    rnd = PlainRound(x=x, policy=policy, seed=seed, reference=ref, consistent=consistent, inference=inference)
    reasons: list[str | None] = [None] * n
    rows = np.arange(n)
    checks = active_checks(policy)
    for stage in sorted({c.stage for c in checks}):
        group = [c for c in checks if c.stage == stage]
        results = [(c, c.plaintext(rnd, rows)) for c in group]
        for c, passed in results:
            for i in rows:
                if reasons[i] is None and not passed[i]:
                    reasons[i] = c.reason
        rows = np.array([i for i in rows if reasons[i] is None], dtype=np.int64)
    verdicts = [(r is None, r or "ok") for r in reasons]
    w = np.array([min(int(s), policy.sample_cap) if ok else 0 for s, (ok, _) in zip(n_samples, verdicts, strict=True)],
                 dtype=np.float64)
    if sum(ok for ok, _ in verdicts) < policy.min_accepted:
        return verdicts, np.zeros(d), TOO_FEW
    agg = (w @ x) / w.sum()
    return verdicts, agg, OK if aggregate_is_sane(agg, policy) else OUT_OF_RANGE


def decode_field_rows(rows: np.ndarray, f: int = 16) -> np.ndarray:
    """Field elements (ints mod p, object array) → the real values they stand for (signed, / 2^f).
    A crafted element (a fraction mod p) decodes to a huge value: the ideal rule then rejects it."""
    p = field_modulus()
    v = np.asarray(rows, dtype=object) % p
    signed = np.where(v > p // 2, v - p, v)
    return signed.astype(np.float64) / 2.0 ** f
