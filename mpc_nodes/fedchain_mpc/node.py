"""The MPC node: round processing (agree on inputs, run MPC, attest, publish) and the service loop.

Round processing is a function of the ledger plus the node's own files, so it can be re-run
after any crash and converges (every step is idempotent):

1. CLOSED round, not attested by this node: seal the round locally (intake refuses more shares),
   read the committed updates (GetUpdates), ask every node which shares it holds for the round
   (GetHoldings: sealed, so final). A hospital is in the run only if every node holds a share
   whose SHA-256 equals the one committed for that node; the others are rejected with
   "missing_share" at every node alike, so all nodes give MPyC the same hospital list.
2. Run this node's MPyC party (party_launcher.py, an MPCJob of job.py) with the round's policy, the base model from the
   ledger (hash checked), the FLTrust reference (reference_dir or GetReference, hash checked),
   the public validation batch when the policy runs the encrypted-inference check
   (GetValidationBatch, hash checked, decoded strictly; declared but not yet published: wait like
   for the reference; not declared or unusable: every update rejected "no_validation_batch")
   and the public ledger context (committed share hashes; the checks' random values are generated
   jointly inside the run, after sealing); retried with backoff on failure, abandoned if the
   round is finalized by the other nodes meanwhile.
3. Fewer accepted than the policy's min_accepted (privacy floor: the run did not open the
   aggregate) or an aggregate that failed the sanity check: attest the base model with that
   outcome (the round ends FAILED / DISPUTED, nothing is published). Fewer accepted than the
   round's min_updates: the model stays the base model (chaincode rule).
   Save the new model, write the report, attest (AttestResult; 'already attested' is success).
4. FINALIZED round: publish the model if nobody has (PublishModel; 'already published' is success).
Progress lives in NodeState (SQLite), so a restarted node resumes where it stopped.

Ledger memory (guard.py): before acting, the node checks that the ledger did not go backwards or
fork since it last looked, and that a round it already worked on is still the round it knew (the
transaction that created it). Otherwise it refuses to act, loudly, instead of skipping or redoing.
Deadlines: an OPEN round whose deadline passed on the node's clock is closed by the node
(CloseRound; MPC nodes may close at the deadline, hospitals only after deadline + clock skew), so an
update committed after the deadline, whatever timestamp its proposal claims, finds the round closed.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fedchain.canonical import canonical_json, sha256_hex
from fedchain.durable import write_durably
from fedchain.identity import SigningIdentity
from fedchain.mpc_client import IntakeError, NodeEndpoint, get_holdings
from fedchain.records import CLOSED, DISPUTED, FAILED, FINALIZED, OPEN, Round, RoundId, Update

from fedchain_mpc.guard import LedgerGuard, LedgerMismatch, check_same_round
from fedchain_mpc.job import JobResult, MPCJob, ShareInput
from fedchain_mpc.ledger_adapter import LedgerError, LedgerView
from fedchain_mpc.party_launcher import MPCAborted, MPCRunError, RunnerSettings, run_with_retries
from fedchain_mpc.store import ATTESTED, PUBLISHED, RUNNING, NodeState, ShareStore
from fedchain_mpc.store import FAILED as RUN_FAILED

log = logging.getLogger(__name__)

MISSING_SHARE = "missing_share"
NO_REFERENCE = "no_reference"  # the round's policy checks cosine similarity but it declared no reference
# the round's policy runs the encrypted-inference check but declared no validation batch, or the one it
# published cannot be used (not a canonical batch for the round's model): no update can be judged
NO_VALIDATION_BATCH = "no_validation_batch"
VALIDATION_FILE = "validation.safetensors"
DONE = (PUBLISHED, "disputed", "round_failed")  # round_failed: the ledger's FAILED (not a local run failure)
ROUND_EVENTS = ("RoundClosed", "RoundFinalized", "RoundDisputed")  # chaincode events that ask a node to act


class RoundError(Exception):
    """A round cannot be processed now (the message says why); it is retried later."""


@dataclass
class RoundContext:
    node_id: str
    node_index: int
    m: int
    t: int
    l: int  # noqa: E741
    f: int
    data_dir: Path
    reference_dir: Path | None = None
    holdings_timeout_s: float = 120.0


def _reject_all(present: list[Update], rejected: dict[str, str], reason: str) -> list[Update]:
    """Record every present update as rejected for `reason`; nothing is left to run."""
    rejected.update({u.hospital: reason for u in present})
    return []


def _outcome(rnd: Round, result: JobResult | None, accepted: list[str]) -> str:
    """No aggregate below the privacy floor (the MPC run did not open it); an aggregate that failed the
    sanity check is not published: both attest the base model with the outcome. A policy without
    min_accepted: at least one accepted update."""
    outcome = result.outcome if result is not None else "too_few_accepted"
    floor = rnd.policy.min_accepted if rnd.policy.min_accepted is not None else 1
    if outcome == "ok" and len(accepted) < floor:
        outcome = "too_few_accepted"
    return outcome


class UnusableValidationBatch(Exception):
    """The round's published validation batch is not one the check can run on (same bytes at every node,
    so every node decides alike: its updates are rejected as no_validation_batch)."""


class RoundProcessor:
    """Does whatever the ledger's state of a round asks of this node; safe to call again and again."""

    def __init__(self, ctx: RoundContext, ledger: LedgerView, store: ShareStore, state: NodeState,
                 runner: RunnerSettings, signer: SigningIdentity, peers: Sequence[NodeEndpoint],
                 holdings: Callable[[NodeEndpoint, SigningIdentity, int], dict[str, str]] | None = None,
                 sleep: Callable[[float], None] = time.sleep, guard: LedgerGuard | None = None) -> None:
        self.ctx = ctx
        self.ledger = ledger
        self.store = store
        self.state = state
        self.runner = runner
        self.signer = signer
        self.peers = sorted(peers, key=lambda p: p.index)
        self._holdings = holdings or (lambda node, ident, rid: get_holdings(node, ident, rid, retries=0))
        self.sleep = sleep
        self.guard = guard

    # ------------------------------------------------------------------------ paths
    def _dir(self, kind: str, round_id: RoundId) -> Path:
        return self.ctx.data_dir / kind / str(round_id)

    def model_path(self, round_id: RoundId) -> Path:
        return self.ctx.data_dir / "models" / f"{round_id}.safetensors"

    def report_path(self, round_id: RoundId) -> Path:
        return self.ctx.data_dir / "reports" / f"{round_id}.json"

    # ------------------------------------------------------------------------ entry
    def process(self, round_id: RoundId) -> str:
        """Advance one round as far as the ledger allows; returns this node's status for it.

        Raises LedgerMismatch (and does nothing) on a ledger that is not the one this node saw."""
        if self.guard is not None:
            self.guard.check()
        local = self.state.get(round_id)
        if local is not None and local["status"] in DONE:
            check_same_round(round_id, local.get("created_tx_id"), self.ledger.get_round(round_id))
            return local["status"]
        rnd = self.ledger.get_round(round_id, fresh=True)
        if local is not None:
            check_same_round(round_id, local.get("created_tx_id"), rnd)
        if rnd is None or rnd.genesis:
            return "unknown"
        try:
            return self._advance(round_id, rnd, local)
        finally:
            self.state.remember_creation(round_id, rnd.created_tx_id)

    def _advance(self, round_id: RoundId, rnd: Round, local: dict[str, Any] | None) -> str:
        st = rnd.state
        if st == OPEN:
            return "open"
        if st in (DISPUTED, FAILED):  # over without a model: nothing to run or publish
            status = "disputed" if st == DISPUTED else "round_failed"
            self.store.seal(round_id)
            self.state.update(round_id, status)
            (log.error if st == DISPUTED else log.warning)(
                "round %d is %s on the ledger (%s); nothing more to do here", round_id, st,
                rnd.dispute_reason or rnd.failure_reason or "-")
            return status
        if st == CLOSED and (local is None or local["status"] != ATTESTED):
            self._run_and_attest(round_id, rnd)
            return ATTESTED
        if st == FINALIZED:
            return self._publish(round_id, rnd)
        return local["status"] if local else st.lower()

    # ------------------------------------------------------------------ agreement
    def agreed_inputs(self, round_id: RoundId, updates: list[Update]) -> tuple[list[Update], dict[str, str]]:
        """(updates every node holds, {hospital: "missing_share"}) — the same at every node."""
        held: dict[int, dict[str, str]] = {self.ctx.node_index: self.store.holdings(round_id)}
        deadline = time.monotonic() + self.ctx.holdings_timeout_s
        for peer in self.peers:
            if peer.index != self.ctx.node_index:
                held[peer.index] = self._peer_holdings(peer, round_id, deadline)
        present, missing = [], {}
        for u in sorted(updates, key=lambda u: u.hospital):
            hashes = u.share_hashes
            if len(hashes) == self.ctx.m and all(held[j].get(u.hospital) == hashes[j] for j in range(self.ctx.m)):
                present.append(u)
            else:
                missing[u.hospital] = MISSING_SHARE
        return present, missing

    def _peer_holdings(self, peer: NodeEndpoint, round_id: RoundId, deadline: float) -> dict[str, str]:
        """A peer's holdings, asked again every second until `deadline` (a peer restarting comes back)."""
        while True:
            try:
                return self._holdings(peer, self.signer, round_id)
            except IntakeError as exc:
                if time.monotonic() >= deadline:
                    raise RoundError(f"round {round_id}: no holdings from MPC node {peer.index}: {exc}") from exc
            self.sleep(1.0)

    # ------------------------------------------------------------------------ run
    def _reference(self, rnd: Round, run_dir: Path) -> str | None:
        """The round's FLTrust reference as the npz the MPC program reads: from the node's reference_dir
        if the operator dropped it there, else from the ledger (GetReference); always hash-checked."""
        if not rnd.policy.cosine_enabled:
            return None
        rid = rnd.round_id
        sha = rnd.hyper.reference_sha256
        if not sha:
            raise RoundError(f"round {rid}: the policy checks cosine similarity but the round declares no "
                             "hyperparameters.reference_sha256")
        candidates = [run_dir / "reference.npz"]
        if self.ctx.reference_dir is not None:
            candidates.insert(0, self.ctx.reference_dir / f"{sha}.npz")
        for src in candidates:
            if src.is_file():
                with np.load(src, allow_pickle=False) as z:
                    vec = np.asarray(z["delta"], dtype=np.float64)
                got = sha256_hex(np.ascontiguousarray(vec, dtype="<f4").tobytes())
                if got != sha:
                    raise RoundError(f"round {rid}: reference file {src} hashes to {got}, not {sha}")
                return str(src)
        data = self._declared_file(rid, sha, self.ledger.get_reference, "reference", "reference_sha256",
                                   f"reference {sha[:16]} is neither in this node's reference_dir nor on the ledger")
        if len(data) % 4:
            raise RoundError(f"round {rid}: the ledger's reference does not match reference_sha256 {sha}")
        vec = np.frombuffer(data, dtype="<f4").astype(np.float64)
        buf = io.BytesIO()
        np.savez(buf, delta=vec)
        write_durably(run_dir / "reference.npz", buf.getvalue(), mode=0o644)
        return str(run_dir / "reference.npz")

    @staticmethod
    def _declared_file(rid: RoundId, sha: str | None, fetch: Callable[[RoundId], bytes], what: str, field: str,
                       missing: str) -> bytes:
        """A public file the round declared by hash (FLTrust reference, validation batch), from the ledger.
        RoundError (retried later) while it is not published, or if it is not the declared one."""
        try:
            data = fetch(rid)
        except LedgerError as exc:
            raise RoundError(f"round {rid}: {missing} ({exc})") from exc
        if sha256_hex(data) != sha:
            raise RoundError(f"round {rid}: the ledger's {what} does not match {field} {sha}")
        return data

    def _validation_batch(self, rnd: Round, run_dir: Path) -> str | None:
        """The round's public validation batch as the file the MPC program reads (run_dir/validation.safetensors),
        fetched from the ledger (GetValidationBatch), hash-checked against validation_sha256 and decoded strictly
        for the round's model (labels < n_classes, its channels, at most policy.inference_batch images).

        Not on the ledger yet: RoundError (retried; the operator publishes it, also after the close). Published
        but unusable: UnusableValidationBatch (the bytes are fixed by the hash, waiting cannot help)."""
        if not rnd.policy.inference_enabled:
            return None
        from types import SimpleNamespace

        from fedchain.validation_batch import ValidationBatchError, decode

        rid = rnd.round_id
        sha = rnd.hyper.validation_sha256
        path = run_dir / VALIDATION_FILE
        if path.is_file() and sha256_hex(path.read_bytes()) == sha:
            return str(path)
        data = self._declared_file(rid, sha, self.ledger.get_validation_batch, "validation batch", "validation_sha256",
                                   f"validation batch {str(sha)[:16]} is not on the ledger yet; waiting for the "
                                   "operator's PublishValidationBatch")
        spec = rnd.model_spec.to_json()
        try:
            want = SimpleNamespace(n_classes=int(spec["n_classes"]), in_channels=int(spec.get("in_channels", 1)))
            size = rnd.policy.inference_batch
            images, _ = decode(data, want, max_batch=size)
            if len(images) != size:  # the check runs on exactly policy.inference_batch images
                raise ValidationBatchError(f"it has {len(images)} images, the policy's inference_batch is {size}")
        except (KeyError, TypeError, ValueError) as exc:  # ValidationBatchError is a ValueError
            why = exc if isinstance(exc, ValidationBatchError) else f"model_spec without n_classes ({exc})"
            raise UnusableValidationBatch(f"round {rid}: the published validation batch cannot be used: {why}") from None
        write_durably(path, data, mode=0o644)
        log.info("round %d: validation batch %s fetched (%d images)", rid, sha[:16], len(images))
        return str(path)

    def _base_model(self, rnd: Round, run_dir: Path) -> Path:
        path = run_dir / "base.safetensors"
        if path.exists() and sha256_hex(path.read_bytes()) == rnd.base_model_hash:
            return path
        if rnd.base_round_id is None:
            raise RoundError(f"round {rnd.round_id} names no base round")
        data = self.ledger.get_model(rnd.base_round_id)
        if sha256_hex(data) != rnd.base_model_hash:
            raise RoundError(f"round {rnd.round_id}: base model from the ledger does not match its hash")
        write_durably(path, data)
        return path

    def _run_and_attest(self, round_id: RoundId, rnd: Round) -> None:
        """Agree on the inputs, run the MPC (if any update can be judged), attest the outcome."""
        self.store.seal(round_id)
        mine = rnd.attestations.get(self.ctx.node_id)
        if mine is not None and self.model_path(round_id).exists():
            # attested before a crash that lost the local status: the ledger is the record
            self.state.update(round_id, ATTESTED, model_hash=mine.model_hash)
            return
        present, rejected = self.agreed_inputs(round_id, self.ledger.get_updates(round_id))
        present = self._drop_unjudgeable(round_id, rnd, present, rejected)
        run_dir = self._dir("runs", round_id)
        run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        base_path = self._base_model(rnd, run_dir)
        validation_path = None
        if present:
            try:
                validation_path = self._validation_batch(rnd, run_dir)
            except UnusableValidationBatch as exc:
                log.error("%s: rejecting its %d update(s) as %s", exc, len(present), NO_VALIDATION_BATCH)
                present = _reject_all(present, rejected, NO_VALIDATION_BATCH)
        seed = sha256_hex(canonical_json({"round_id": round_id, "updates": [
            [u.hospital, list(u.share_hashes), u.n_samples] for u in present]}))
        result = None
        if present:
            job = self._job(round_id, rnd, present, run_dir, base_path, validation_path, seed)
            result = self._run_mpc(job, run_dir)
        self._attest(round_id, rnd, present, rejected, result, base_path, seed)

    @staticmethod
    def _drop_unjudgeable(round_id: RoundId, rnd: Round, present: list[Update],
                          rejected: dict[str, str]) -> list[Update]:
        """No update can be judged when the policy needs a reference or validation batch the round never
        declared (none can ever come): reject them all, so the round fails (the base model stays) instead
        of staying CLOSED forever; every node decides alike."""
        if present and rnd.policy.cosine_enabled and not rnd.hyper.reference_sha256:
            log.error("round %d checks cosine similarity but declares no reference_sha256: rejecting its %d "
                      "update(s) as %s", round_id, len(present), NO_REFERENCE)
            present = _reject_all(present, rejected, NO_REFERENCE)
        if present and rnd.policy.inference_enabled and not rnd.hyper.validation_sha256:
            log.error("round %d runs the encrypted-inference check but declares no validation_sha256: rejecting "
                      "its %d update(s) as %s", round_id, len(present), NO_VALIDATION_BATCH)
            present = _reject_all(present, rejected, NO_VALIDATION_BATCH)
        return present

    def _job(self, round_id: RoundId, rnd: Round, present: list[Update], run_dir: Path, base_path: Path,
             validation_path: str | None, seed: str) -> MPCJob:
        """This node's part of the round's MPC run (the same at every node but for party and paths)."""
        j = self.ctx.node_index
        return MPCJob(
            round_id=round_id, party=j,
            shares=tuple(ShareInput(hospital_id=u.hospital, path=str(self.store.path(round_id, u.hospital)),
                                    n_samples=u.n_samples, sha256=u.share_hashes[j]) for u in present),
            policy=rnd.policy.to_json(), reference_path=self._reference(rnd, run_dir), base_model_path=str(base_path),
            l=self.ctx.l, f=self.ctx.f, t=self.ctx.t, m=self.ctx.m, seed=seed,
            output_path=str(run_dir / "result.json"),
            # the encrypted-inference check: its public batch and the model
            validation_path=validation_path,
            model_spec=rnd.model_spec.to_json() if validation_path is not None else None,
        )

    def _run_mpc(self, job: MPCJob, run_dir: Path) -> JobResult:
        """Run this node's party (with retries); progress and failures are recorded in the node state."""
        round_id = job.round_id
        prev = self.state.get(round_id)
        attempts = prev["attempts"] if prev else 0

        def on_attempt(i: int, err: str | None) -> None:
            self.state.update(round_id, RUNNING, attempts=attempts + i + 1, last_error=err)

        try:
            return run_with_retries(job, run_dir, self.runner, sleep=self.sleep, attempt_hook=on_attempt,
                                    should_abort=lambda: self._no_longer_needed(round_id))
        except MPCAborted as exc:
            self.state.update(round_id, RUNNING, last_error=str(exc))
            raise RoundError(str(exc)) from exc
        except MPCRunError as exc:
            self.state.update(round_id, RUN_FAILED, last_error=str(exc))
            raise RoundError(str(exc)) from exc

    def _no_longer_needed(self, round_id: RoundId) -> str | None:
        """Why a run waiting for its peers should stop (the round left CLOSED), or None."""
        try:
            now = self.ledger.get_round(round_id, fresh=True)
        except LedgerError:
            return None  # cannot tell: keep waiting for the peers
        return None if now is None or now.state == CLOSED else f"round {round_id} is {now.state}"

    def _attest(self, round_id: RoundId, rnd: Round, present: list[Update], rejected: dict[str, str],
                result: JobResult | None, base_path: Path, seed: str) -> None:
        """Save the model, write the report, AttestResult ('already attested' is success), record it."""
        verdicts = result.verdicts if result is not None else {}
        accepted = sorted(h for h, v in verdicts.items() if v.accept)
        rejected.update({h: v.reason for h, v in verdicts.items() if not v.accept})
        outcome = _outcome(rnd, result, accepted)
        model = base_path.read_bytes()
        if (outcome == "ok" and result is not None and len(accepted) >= (rnd.min_updates or 1)
                and result.model_path):
            model = Path(result.model_path).read_bytes()
        model_hash = sha256_hex(model)
        write_durably(self.model_path(round_id), model, mode=0o644)
        report = {
            "round_id": round_id, "node": self.ctx.node_id, "node_index": self.ctx.node_index,
            "base_model_hash": rnd.base_model_hash, "model_hash": model_hash, "accepted": accepted,
            "rejected": dict(sorted(rejected.items())), "seed": seed, "outcome": outcome,
            "joint_seed": result.seed if result else None,
            "aggregate_sha256": result.aggregate_sha256 if result and outcome == "ok" else None,
            "n_accepted": len(accepted), "total_weight": result.total_weight if result else 0,
            "inputs": [{"hospital": u.hospital, "sha256": u.share_hashes[self.ctx.node_index]} for u in present],
        }
        report_bytes = canonical_json(report)
        write_durably(self.report_path(round_id), report_bytes, mode=0o644)
        attestation = {"round_id": round_id, "model_hash": model_hash, "accepted": accepted,
                       "rejected": dict(sorted(rejected.items())), "report_hash": sha256_hex(report_bytes)}
        if outcome != "ok":
            attestation["outcome"] = outcome
        try:
            self.ledger.attest(attestation)
        except LedgerError as exc:
            if not exc.already:
                self.state.update(round_id, RUN_FAILED, last_error=f"attest: {exc}", model_hash=model_hash)
                raise RoundError(f"round {round_id}: attestation failed: {exc}") from exc
        phases = result.phases if result else {}
        self.state.update(round_id, ATTESTED, model_hash=model_hash, last_error=None,
                          result={"accepted": accepted, "rejected": rejected, "phases": phases})
        log.info("round %d: attested model %s (%d accepted, %d rejected; MPC %.2f s)", round_id, model_hash[:16],
                 len(accepted), len(rejected), float(phases.get("total", 0.0)))

    # ---------------------------------------------------------------------- publish
    def _publish(self, round_id: RoundId, rnd: Round) -> str:
        if rnd.finalized is None:
            raise RoundError(f"round {round_id} is FINALIZED without a finalized result")
        want = rnd.finalized.model_hash
        path = self.model_path(round_id)
        if not path.exists() or sha256_hex(path.read_bytes()) != want:
            # Finalized without (or against) us: the quorum's nodes publish; nothing of ours to add.
            log.info("round %d finalized as %s; this node has no matching model, leaving publication to others",
                     round_id, want[:16])
            self.state.update(round_id, PUBLISHED, last_error="finalized without this node's model")
            return PUBLISHED
        try:
            published = self.ledger.publish(round_id, path.read_bytes())
        except LedgerError as exc:
            raise RoundError(f"round {round_id}: publish failed: {exc}") from exc
        log.info("round %d: model %s %s", round_id, want[:16], "published" if published else "already published")
        self.state.update(round_id, PUBLISHED)
        return PUBLISHED


class RoundWorker:
    """One thread works the queue of rounds; a failing round is retried on the next poll with backoff."""

    def __init__(self, processor: RoundProcessor, ledger: LedgerView, poll_s: float = 2.0,
                 max_backoff_s: float = 60.0, clock: Callable[[], float] = time.time,
                 close_stagger_s: float = 1.0) -> None:
        self.processor = processor
        self.clock = clock
        self.close_stagger_s = close_stagger_s
        self._refused: dict[RoundId, str] = {}
        self.ledger = ledger
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.queue: queue.Queue[tuple[RoundId, Callable[[], None] | None]] = queue.Queue()
        self._stop = threading.Event()
        self._retry_at: dict[RoundId, tuple[float, float]] = {}
        self._threads: list[threading.Thread] = []

    def reconcile(self) -> None:
        """Queue every round the ledger says needs work from us (start-up catch-up and safety net);
        close OPEN rounds whose deadline passed on this node's clock."""
        guard = self.processor.guard
        try:
            if guard is not None:
                guard.check()
            rounds = self.ledger.list_rounds()
        except LedgerMismatch:
            return  # the guard logged it; nothing is done on this ledger
        except LedgerError as exc:
            log.warning("cannot list rounds: %s", exc)
            return
        except Exception as exc:  # the ledger head could not be read (unreachable): try again next poll
            log.warning("cannot check the ledger head: %s", exc)
            return
        for rnd in rounds:
            rid = rnd.round_id
            if rnd.genesis:
                continue
            if rnd.state == OPEN:
                self._close_if_due(rnd)
                continue
            local = self.processor.state.get(rid)
            if local is None or local["status"] not in DONE:
                self.queue.put((rid, None))
            elif local.get("created_tx_id") and local["created_tx_id"] != rnd.created_tx_id:
                self.queue.put((rid, None))  # process() refuses it loudly

    def _close_if_due(self, rnd: Round) -> None:
        """Close an OPEN round once its deadline passed here (node i waits i extra seconds: one close suffices)."""
        deadline = rnd.deadline if rnd.deadline is not None else float("inf")
        if self.clock() < deadline + self.close_stagger_s * self.processor.ctx.node_index:
            return
        rid = rnd.round_id
        try:
            self.ledger.close_round(rid)
            log.info("round %d: deadline passed, closed it", rid)
        except LedgerError as exc:  # another node or the operator was first: fine
            log.debug("round %d: close at deadline: %s", rid, exc)

    def handle(self, round_id: RoundId) -> None:
        until, delay = self._retry_at.get(round_id, (0.0, 0.0))
        if time.monotonic() < until:
            return
        try:
            self.processor.process(round_id)
            self._retry_at.pop(round_id, None)
        except LedgerMismatch as exc:
            delay = self.max_backoff_s
            self._retry_at[round_id] = (time.monotonic() + delay, delay)
            if str(exc) != self._refused.get(round_id):
                log.error("round %d: REFUSING THE LEDGER: %s", round_id, exc)
                self._refused[round_id] = str(exc)
        except (RoundError, LedgerError) as exc:
            delay = min(self.max_backoff_s, max(self.poll_s, delay * 2))
            self._retry_at[round_id] = (time.monotonic() + delay, delay)
            log.warning("round %d: %s (retrying in %.0f s)", round_id, exc, delay)

    def _work(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_poll:
                self.reconcile()
                next_poll = time.monotonic() + self.poll_s
            try:
                rid, done = self.queue.get(timeout=min(0.5, self.poll_s))
            except queue.Empty:
                continue
            self.handle(rid)
            if done is not None:
                done()

    def follow_events(self, events: Callable[[], Any], checkpoint: Any) -> None:
        """Feed chaincode events into the queue; checkpoint each one once its round was handled."""
        t = threading.Thread(target=self._follow, args=(events, checkpoint), name="events", daemon=True)
        t.start()
        self._threads.append(t)

    def _follow(self, events: Callable[[], Any], checkpoint: Any) -> None:
        """The events thread: (re)open the stream from the checkpoint until the worker stops."""
        while not self._stop.is_set():
            try:
                if not self._feed(events(), checkpoint):
                    return
            except Exception as exc:  # stream broke (gateway restart): reconnect from the checkpoint
                if self._stop.is_set():
                    return
                log.warning("event stream: %s; reconnecting", exc)
            self._stop.wait(self.poll_s)

    def _feed(self, stream: Any, checkpoint: Any) -> bool:
        """Hand one stream's events to the worker; False once the worker stops."""
        for ev in stream:
            if self._stop.is_set():
                return False
            rid = ev.payload.get("round_id")
            if ev.name in ROUND_EVENTS and isinstance(rid, int) and not self._handled(RoundId(rid)):
                return False
            checkpoint.checkpoint_transaction(ev.block_number, ev.tx_id)
        return True

    def _handled(self, round_id: RoundId) -> bool:
        """Queue the round and wait until the worker handled it; False if the worker stops first."""
        handled = threading.Event()
        self.queue.put((round_id, handled.set))
        while not handled.wait(0.5):
            if self._stop.is_set():
                return False
        return True

    def start(self) -> None:
        t = threading.Thread(target=self._work, name="rounds", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        """The events thread may sit in a blocking stream read: it is a daemon, do not wait for it."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2.0 if t.name == "rounds" else 0.2)

