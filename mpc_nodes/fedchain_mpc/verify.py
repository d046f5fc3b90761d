"""Verification + aggregation inside MPyC: the MPC driver of the check pipeline (fedchain_mpc.checks).

Order of work (every party calls verify_and_aggregate with its own share rows):
1. Joint randomness: the nodes open random field elements generated jointly (PRSS) and hash them
   with the ledger context into the round's seed. The inputs are sealed (share hashes on the
   ledger, round CLOSED) before this runs, so no hospital can predict or re-roll the public random
   vectors, coefficients and masks the checks derive from it.
2. Local products: X·X^T and X·(public rows of every enabled check)^T, exactly, with float64 BLAS
   on 20-bit limbs (field.local_products); only n×n and n×q values ever enter MPyC.
3. Stages in order (checks/__init__.py): each stage's checks return fail terms; the stage opens
   only the first failing check per row (mpcops.open_stage), so a stage reveals exactly the reason
   codes; later stages see only rows that passed (public), so masks are local and medians are over
   valid updates.
4. Privacy floor: the aggregate of fewer than policy.min_accepted accepted updates is NOT opened
   (outcome "too_few_accepted").
5. Aggregate: public integer weights (capped n_samples × accept bit) make it a local linear map;
   one opening with vectorized limb arithmetic (opening.py).
6. Defence in depth: an opened aggregate that a weighted mean of accepted, checked updates cannot
   produce (non-finite, ||.|| above the bound every accepted update met) gives outcome
   "aggregate_out_of_range": the nodes attest no model and the round ends DISPUTED.

Security model: MPyC's (passive, honest majority t < m/2; malicious nodes are out of scope for
privacy and correctness). What a peer sends is decoded by safe_wire, never unpickled, so a malicious
node cannot run code on the others.
Revealed: the seed (public randomness, after sealing), per hospital one reason code, and the
aggregate (if outcome ok).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np
from fedchain.verification import VerificationPolicy
from mpyc.runtime import mpc

from fedchain_mpc import field as ff
from fedchain_mpc import mpcops, rounds
from fedchain_mpc import opening as op
from fedchain_mpc.checks import Check, InferenceInputs
from fedchain_mpc.checks.consistency import degree_ok
from fedchain_mpc.pipeline import (
    OK,
    OUT_OF_RANGE,
    TOO_FEW,
    active_checks,
    aggregate_is_sane,
    require_inference,
)
from fedchain_mpc.safe_wire import require_hardened

__all__ = ["MPCResult", "degree_ok", "verify_and_aggregate"]


@dataclass
class MPCResult:
    verdicts: list[tuple[bool, str]]
    aggregate: np.ndarray  # float64 weighted average of accepted updates (zeros if not opened)
    total_weight: int
    outcome: str = OK  # ok | too_few_accepted | aggregate_out_of_range
    seed: str = ""  # the public randomness the checks used (joint, after sealing)
    phases: dict[str, float] = dc_field(default_factory=dict)
    phases_cpu: dict[str, float] = dc_field(default_factory=dict)
    # sequential MPyC communication rounds per phase (fedchain_mpc.rounds; zeros unless the counter is installed)
    phase_rounds: dict[str, int] = dc_field(default_factory=dict)
    phase_bytes: dict[str, int] = dc_field(default_factory=dict)  # bytes this party sent per phase (same)
    stats: dict[str, object] = dc_field(default_factory=dict)  # public cost figures of the checks (no data)


class _Clock:
    """Wall and CPU seconds and sequential rounds per phase (CPU time is the load-independent figure;
    rounds decide the cost at a WAN round-trip time)."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.rounds: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self._t = time.perf_counter()
        self._c = time.process_time()
        self._r, self._b = rounds.depth(), rounds.sent()

    def lap(self, name: str) -> None:
        now, cnow, rnow, bnow = time.perf_counter(), time.process_time(), rounds.depth(), rounds.sent()
        self.phases[name] = self.phases.get(name, 0.0) + now - self._t
        self.cpu[name] = self.cpu.get(name, 0.0) + cnow - self._c
        self.rounds[name] = self.rounds.get(name, 0) + rnow - self._r
        self.bytes[name] = self.bytes.get(name, 0) + bnow - self._b
        self._t, self._c, self._r, self._b = now, cnow, rnow, bnow


class MPCRound:
    """What the checks of one round share: policy, types, local products and (lazily) the Gram matrix."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray, policy: VerificationPolicy, checks: list[Check],
                 seed: str, reference: np.ndarray | None, inference: InferenceInputs | None = None) -> None:
        self.policy = policy
        self.hi, self.lo = hi, lo  # this party's share rows (the inference check reads the model's weights)
        self.seed = seed
        self.inference = inference
        self.stats: dict[str, object] = {}  # public per-check cost figures (e.g. inference layer timings)
        self.field = mpc.SecFxp(32, 16).field
        self.p = self.field.modulus
        self.secint = mpc.SecInt(48, p=self.p)
        self.n, self.d = lo.shape
        self.t = mpc.threshold
        self.one = 1 << 16
        self._cols: dict[str, slice] = {}
        rows, start = [], 0
        for c in checks:
            pub = c.public_rows(policy, seed, self.d, reference)
            if pub is not None:
                self._cols[c.reason] = slice(start, start + pub.shape[0])
                start += pub.shape[0]
                rows.append(pub)
        public = np.empty((start, self.d), dtype=np.int32)  # |v| <= 2^16
        off = 0
        for pub in rows:
            public[off:off + pub.shape[0]] = pub
            off += pub.shape[0]
        self.g_loc, self.p_loc = ff.local_products(hi, lo, public, self.p)
        # Truncations of what involves only each row's own data (||x_i||^2, x_i·r) happen together at
        # first use (one opening). Cross terms x_i·x_j are truncated only for validated rows
        # (gram(rows)): a truncation opening does not hide an out-of-range value, and a crafted x_j
        # would make x_i·x_j reveal x_i to a node that colludes with the crafting hospital.
        self._norm2: Any = None
        self._xr: Any = None
        self._gram: dict[tuple[int, ...], Any] = {}
        self.prepared: dict[str, Any] = {}  # work a later check started early (Check.prepare), by reason code

    def _own_terms(self) -> None:
        """Start the one truncation opening of ||x_i||^2 and x_i·r (placeholders at once, mpcops.trunc_array):
        it runs concurrently with the consistency stage and the range check's zone test instead of
        costing a round of its own inside stage 1. The same values are opened as before (all n rows,
        as before); only the timing changes."""
        if self._norm2 is not None:
            return
        diag = np.array([self.g_loc[i, i] for i in range(self.n)], dtype=object)
        parts = [diag]
        if "cosine" in self._cols:
            parts.append(np.asarray(self.p_loc[:, self._cols["cosine"].start], dtype=object))
        both = mpcops.trunc_array(self.secint, self.field.array(np.concatenate(parts)), 2 * self.t)  # 2t: products
        self._norm2 = both[:self.n]
        self._xr = both[self.n:] if len(parts) > 1 else None

    def products(self, check: Check) -> np.ndarray:
        """(n, q) field ints: this party's shares of x_i · (the check's public rows)."""
        return self.p_loc[:, self._cols[check.reason]]

    async def reference_product(self, check: Check) -> Any:
        """x·r (secint at scale 2^16) for the check's single public row (truncated once; a placeholder)."""
        self._own_terms()
        return self._xr

    def norm2_start(self) -> Any:
        """norm2() without awaiting (a placeholder), for Check.prepare."""
        self._own_terms()
        return self._norm2

    async def norm2(self) -> Any:
        """||x_i||^2 at scale 2^16 (secint; a placeholder until the truncation's opening is back)."""
        self._own_terms()
        return self._norm2

    async def gram(self, rows: np.ndarray) -> Any:
        """x_i·x_j at scale 2^16 (secint n×n) for i, j in rows (validated: in range); 0 elsewhere."""
        return self.gram_start(rows)

    def gram_start(self, rows: np.ndarray) -> Any:
        """gram(rows) as a placeholder at once (its truncation opening runs concurrently, mpcops.trunc_array)."""
        key = tuple(int(i) for i in rows)
        if key not in self._gram:
            keep = np.zeros((self.n, self.n), dtype=bool)
            keep[np.ix_(rows, rows)] = True
            masked = np.where(keep, self.g_loc, 0)
            self._gram[key] = mpcops.trunc_array(self.secint, self.field.array(masked), 2 * self.t)
        return self._gram[key]


async def verify_and_aggregate(hi: np.ndarray, lo: np.ndarray, n_samples: list[int],
                               policy: VerificationPolicy, reference: np.ndarray | None,
                               context: str, *, joint_randomness: bool = True,
                               inference: InferenceInputs | None = None) -> MPCResult:
    """Run the round's checks and the aggregation; every party calls this with its share rows.

    hi/lo: (n, d) uint64 share rows (this party's shares; the secrets themselves with one party).
    context: public ledger context (round, committed share hashes) mixed into the joint seed;
    joint_randomness=False uses it as the seed itself (tests that need a fixed seed only).
    inference: the round's model spec, base model and public validation batch (checks/inference.py);
    required if policy.inference_enabled (ValueError otherwise, before any MPC work).
    Must be called between mpc.start() and mpc.shutdown(), with safe_wire.harden() done before the
    start when there are peers (RuntimeError otherwise: MPyC would unpickle what they send).
    """
    require_hardened(mpc)
    require_inference(policy, inference)
    clock = _Clock()
    n, d = lo.shape
    policy.check_scale(n)
    secint = mpc.SecInt(48, p=mpc.SecFxp(32, 16).field.modulus)
    seed = await mpcops.joint_seed(secint, context) if joint_randomness else context
    clock.lap("seed")
    checks = active_checks(policy)
    rnd = MPCRound(hi, lo, policy, checks, seed, reference, inference)
    rnd._own_terms()  # starts now, overlaps the consistency stage (see MPCRound._own_terms)
    clock.lap("local_products")

    reasons: list[str | None] = [None] * n
    rows = np.arange(n)
    for stage in sorted({c.stage for c in checks}):
        group = [c for c in checks if c.stage == stage]
        outs = [await c.mpc(rnd, rows) for c in group]
        # keyed by position in the stage: two checks may share a reason code (norm cap and relative norm)
        secret = [(j, o) for j, o in enumerate(outs) if not isinstance(o, np.ndarray) and o]
        passed_by_check: dict[int, np.ndarray] = {j: o for j, o in enumerate(outs) if isinstance(o, np.ndarray)}
        if secret:
            opened = await mpcops.open_stage(secint, [o for _, o in secret], n, rows)
            passed_by_check.update({j: passed for (j, _), passed in zip(secret, opened, strict=True)})
        for j, c in enumerate(group):  # cumulative: first failing check of the stage names the reason
            passed = passed_by_check.get(j)
            if passed is None:
                continue
            for i in rows:
                if reasons[i] is None and not passed[i]:
                    reasons[i] = c.reason
        rows = np.array([i for i in rows if reasons[i] is None], dtype=np.int64)
        for c in checks:  # later stages may start work that is safe for the rows known now (Check.prepare)
            if c.stage > stage:
                c.prepare(rnd, rows, stage)
        clock.lap("+".join(c.reason for c in group))

    verdicts = [(r is None, r or "ok") for r in reasons]
    w = np.array([min(int(s), policy.sample_cap) if ok else 0 for s, (ok, _) in zip(n_samples, verdicts, strict=True)],
                 dtype=np.int64)
    total = int(w.sum())
    n_acc = sum(ok for ok, _ in verdicts)
    agg = np.zeros(d, dtype=np.float64)
    outcome = OK
    if n_acc < policy.min_accepted:
        outcome, total = TOO_FEW, 0
    else:
        agg = await _open_aggregate(hi, lo, w, total, rnd)
        if not aggregate_is_sane(agg, policy):
            outcome = OUT_OF_RANGE
    clock.lap("aggregate")
    return MPCResult(verdicts=verdicts, aggregate=agg, total_weight=total, outcome=outcome, seed=seed,
                     phases=clock.phases, phases_cpu=clock.cpu, phase_rounds=clock.rounds,
                     phase_bytes=clock.bytes, stats=rnd.stats)


async def _open_aggregate(hi: np.ndarray, lo: np.ndarray, w: np.ndarray, total: int, rnd: MPCRound) -> np.ndarray:
    """Σ w_i x_i / Σ w_i: public integer weights → local linear map, one opening."""
    p, d, one = rnd.p, rnd.d, float(rnd.one)
    fold = op.fold_constant(p)
    if fold is not None:  # vectorized opening (see opening.py), same values revealed
        mine = op.share_bytes(op.weighted_sum_parts(hi, lo, w), fold)
        shares = await mpc.transfer(mine, senders=list(range(rnd.t + 1)))  # points 1..t+1
        return op.recombine(shares, d, p, fold) / (one * total)
    s_loc = ff.weighted_sum(hi, lo, w, p)
    opened = await mpc.output(rnd.secint.array(rnd.field.array(s_loc)))  # signed ints
    return np.asarray(opened, dtype=object).astype(np.float64) / (one * total)
