"""The hospital client: take part in a round from the ledger's description of it.

Per round: read the round (GetRound) → fetch the base model from the ledger (GetModel checks
the bytes against the recorded SHA-256; we also require it to be the round's base_model_hash)
→ train locally with the round's hyperparameters → Δ = w_local − w_base → fixed-point encode,
Shamir-split, PERSIST shares → send share j to MPC node j over mutual TLS (signed receipts,
checked against the node identities registered on the ledger) → SubmitUpdate(share hashes,
n_samples, dim). Restarts consult the ledger (GetUpdates) and the local state first, so a
hospital never submits twice and never makes a second, different set of shares.
Before each round the client checks its ledger watermark: a ledger that went backwards or forked
since this hospital last looked (restored from an older copy) is refused with LedgerRollback.
Before training it checks that its data fits the round's model (labels below n_classes, image
channels), so a wrong dataset is a clear refusal and not a torch error. Once a round is over
(FINALIZED, FAILED, DISPUTED) its shares are deleted (`forget_finished_rounds`), never earlier.

`prepare` (train + persist) and `deliver` (send + commit) are separate so a caller can train
several hospitals one after another and deliver concurrently (the demo does).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from fedchain.fl_client import FLClient, ModelIntegrityError
from fedchain.gateway import GatewayError
from fedchain.gateway.watermark import LedgerRollback, LedgerWatermark, NetworkHeads
from fedchain.identity import Identity, SigningIdentity
from fedchain.models import ModelSpec, load_model_bytes
from fedchain.records import OPEN, Hyperparameters, ModelSpecRecord, Round, RoundId, Update
from fedchain.sharing import FixedPoint, ShareHeader, encode, share_bytes, split
from fedchain.training import TrainConfig, train_steps

from .state import PREPARED, SUBMITTED, HospitalState, RoundState

log = logging.getLogger(__name__)



class RoundRefused(Exception):
    """This hospital cannot (or must not) take part in the round; the message says why."""


class DataMismatch(RoundRefused):
    """This hospital's data cannot train the round's model (labels or image channels do not fit)."""


@dataclass
class RoundOutcome:
    round_id: int
    status: str  # "submitted", "already_submitted"
    share_hashes: list[str]
    n_samples: int
    timings_s: dict[str, float] = field(default_factory=dict)
    tx_id: str | None = None


@dataclass
class Prepared:
    """A round's update, shared and persisted, not yet (known to be) committed."""

    state: RoundState
    shares: list[bytes]
    timings_s: dict[str, float] = field(default_factory=dict)


def model_spec_of(spec: Round | ModelSpecRecord) -> ModelSpec:
    """A round's (or a model's) model_spec, which also carries param_count for the chaincode, as a ModelSpec."""
    return ModelSpec.from_ledger(spec.model_spec if isinstance(spec, Round) else spec)


def train_config_of(hyper: Round | Hyperparameters) -> TrainConfig:
    """The training settings of a round's hyperparameters (the other keys are the reference's and the
    validation batch's)."""
    hp = (hyper.hyper if isinstance(hyper, Round) else hyper).to_json()
    return TrainConfig.from_json({k: v for k, v in hp.items() if k in TrainConfig.__dataclass_fields__})


def check_data_fits(images: np.ndarray, labels: np.ndarray, spec: ModelSpec, round_id: RoundId) -> None:
    """Refuse (DataMismatch) data the round's model cannot train on, before any training starts."""
    channels = 1 if images.ndim == 3 else int(images.shape[-1])
    if channels != spec.in_channels:
        raise DataMismatch(f"round {round_id}: the model takes {spec.in_channels}-channel images, this hospital's "
                           f"images have {channels} channel(s): --data is not the consortium's task")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataMismatch(f"round {round_id}: labels must be integer class numbers, got {labels.dtype}")
    outside = int(np.count_nonzero((labels < 0) | (labels >= spec.n_classes)))
    if outside:
        raise DataMismatch(f"round {round_id}: the model has {spec.n_classes} classes (labels 0..{spec.n_classes - 1}); "
                           f"{outside} of this hospital's {len(labels)} labels are outside that (they run from "
                           f"{int(labels.min())} to {int(labels.max())}): --data is not the consortium's task")


def training_seed(rnd: Round, participant_id: str) -> int:
    """Deterministic per (round, hospital): a rerun trains exactly the same update."""
    base = rnd.hyper.seed if rnd.hyper.seed is not None else 0
    digest = hashlib.sha256(f"{base}:{rnd.round_id}:{participant_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class HospitalClient:
    """One hospital: its identity, its gateway connection, its training data and its state folder."""

    def __init__(self, net: Any, identity: SigningIdentity, participant_id: str, images: np.ndarray,
                 labels: np.ndarray, state_dir: str | Path, *, progress: bool = True,
                 fixed_point: FixedPoint | None = None) -> None:
        self.net = net
        self.identity = identity
        self.participant_id = participant_id
        self.images = images
        self.labels = np.asarray(labels).reshape(-1)
        if len(self.images) != len(self.labels) or len(self.labels) == 0:
            raise ValueError(f"{participant_id}: need matching, non-empty images and labels")
        self.state = HospitalState(state_dir)
        self.watermark = LedgerWatermark(self.state.watermark_path)
        self.progress = progress
        self.fp = fixed_point or FixedPoint()
        self._gateway = None
        self._fl: FLClient | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    @property
    def gateway(self):
        with self._lock:
            if self._gateway is None:
                self._gateway = self.net.connect(self.identity)
            return self._gateway

    @property
    def fl(self) -> FLClient:
        if self._fl is None:
            self._fl = FLClient(self.net.contract(self.gateway))
        return self._fl

    def close(self) -> None:
        with self._lock:
            if self._gateway is not None:
                self._gateway.close()
            self._gateway, self._fl = None, None

    def __enter__(self) -> HospitalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_ledger(self) -> None:
        """Raise LedgerRollback if the ledger went backwards or forked since this hospital last looked."""
        try:
            self.watermark.check(NetworkHeads(self.gateway.network(self.net.channel)))
        except LedgerRollback as exc:
            raise LedgerRollback(self.watermark.explain(exc)) from None

    def ledger_update(self, round_id: RoundId) -> Update | None:
        return next((u for u in self.fl.get_updates(round_id) if u.hospital == self.participant_id), None)

    # ------------------------------------------------------------------ steps
    def fetch_base_model(self, rnd: Round) -> tuple[nn.Module, bytes]:
        """The round's base model from the ledger, hash-checked twice (record and round)."""
        if rnd.base_round_id is None:
            raise RoundRefused(f"round {rnd.round_id} is the genesis round: it has no base model")
        try:
            rec = self.fl.get_model(rnd.base_round_id)
        except ModelIntegrityError as exc:
            raise RoundRefused(f"round {rnd.round_id}: {exc}") from exc
        if rec.sha256 != rnd.base_model_hash:
            raise RoundRefused(f"round {rnd.round_id}: the ledger's model of round {rnd.base_round_id} is "
                               f"{rec.sha256}, the round says its base is {rnd.base_model_hash}")
        return load_model_bytes(rec.model, model_spec_of(rnd)), rec.model

    def compute_update(self, rnd: Round, model: nn.Module) -> np.ndarray:
        """Honest local training: Δ after the round's fixed number of SGD steps."""
        try:
            return train_steps(model, self.images, self.labels, train_config_of(rnd),
                               seed=training_seed(rnd, self.participant_id), progress=self.progress,
                               desc=f"{self.participant_id} round {rnd.round_id}")
        except FloatingPointError as exc:  # diverged with the round's hyperparameters: nothing to send
            raise RoundRefused(f"round {rnd.round_id}: {exc}") from None

    def n_samples(self) -> int:
        cap = int(self.fl.get_participant(self.participant_id).sample_cap or len(self.labels))
        return min(len(self.labels), cap)

    def make_shares(self, rnd: Round, update: np.ndarray) -> list[bytes]:
        m = len((rnd.mpc.nodes if rnd.mpc is not None else ()) or self.net.mpc_nodes)
        t = rnd.mpc.threshold if rnd.mpc is not None else (m - 1) // 2
        if m != len(self.net.mpc_nodes):
            raise RoundRefused(f"round {rnd.round_id} has {m} MPC nodes, network.json lists "
                               f"{len(self.net.mpc_nodes)}")
        parts = split(encode(update, self.fp), t, m, self.fp)
        return [share_bytes(parts[j], ShareHeader(str(rnd.round_id), self.participant_id, j, len(update),
                                                  l=self.fp.l, f=self.fp.f, t=t, m=m)) for j in range(m)]

    # ------------------------------------------------------------------ round
    def prepare(self, round_id: RoundId, update_fn: Callable[[Round, nn.Module], np.ndarray] | None = None,
                ) -> Prepared | RoundOutcome:
        """Train and persist shares, or return an outcome if this round needs nothing more from us.

        `update_fn(round, base_model)` replaces `compute_update` (evaluation only: the demo's
        malicious hospitals); honest hospitals never pass it.
        """
        self.check_ledger()
        rnd = self.fl.get_round(round_id)
        done = self._already_done(rnd)
        if done is not None:
            return done
        if rnd.state != OPEN:
            raise RoundRefused(f"round {round_id} is {rnd.state}: too late to take part")
        st = self.state.load(round_id)
        if st is not None and st.base_model_hash == rnd.base_model_hash:
            log.info("%s: round %d: re-using the shares persisted before a restart", self.participant_id, round_id)
            return Prepared(st, self.state.load_shares(st))
        if update_fn is None:
            check_data_fits(self.images, self.labels, model_spec_of(rnd), round_id)
        t0 = time.perf_counter()
        model, _ = self.fetch_base_model(rnd)
        update = np.asarray((update_fn or self.compute_update)(rnd, model), dtype=np.float32)
        if update.shape != (rnd.model_spec.param_count,):
            raise RoundRefused(f"round {round_id}: update has shape {update.shape}, the model has "
                               f"{rnd.model_spec.param_count} parameters")
        t1 = time.perf_counter()
        shares = self.make_shares(rnd, update)
        hashes = self.state.save_shares(round_id, shares)
        st = RoundState(round_id=round_id, participant_id=self.participant_id,
                        base_model_hash=rnd.base_model_hash or "", share_hashes=hashes, n_samples=self.n_samples(),
                        dim=len(update))
        self.state.save(st)
        return Prepared(st, shares, {"train": t1 - t0, "share": time.perf_counter() - t1})

    def deliver(self, prepared: Prepared) -> RoundOutcome:
        """Shares to the nodes (idempotent), then the commitment on the ledger (exactly once)."""
        from fedchain.mpc_client import endpoints_from_network, send_shares

        st = prepared.state
        timings = dict(prepared.timings_s)
        t0 = time.perf_counter()
        self.check_own_certificate()
        receipts = send_shares(st.round_id, prepared.shares, endpoints_from_network(self.net), self.identity,
                               hospital=self.participant_id, trust=self._node_trust())
        st.receipts = [r.to_json() for r in receipts]
        self.state.save(st)
        t1 = time.perf_counter()
        timings["share"] = timings.get("share", 0.0) + (t1 - t0)
        update = {"round_id": st.round_id, "share_hashes": st.share_hashes, "n_samples": st.n_samples,
                  "dim": st.dim}
        try:
            res = self.fl.submit_update(update)
            st.tx_id = getattr(res, "tx_id", None)
        except Exception:
            # A crash between commit and our bookkeeping, or a retry after a lost reply: the ledger decides.
            if self.ledger_update(st.round_id) is None:
                raise
        st.status = SUBMITTED
        self.state.save(st)
        timings["ledger"] = time.perf_counter() - t1
        log.info("%s: round %d: update committed (%s)", self.participant_id, st.round_id, st.tx_id)
        return RoundOutcome(st.round_id, "submitted", st.share_hashes, st.n_samples, timings, st.tx_id)

    def participate(self, round_id: RoundId) -> RoundOutcome:
        prepared = self.prepare(round_id)
        return prepared if isinstance(prepared, RoundOutcome) else self.deliver(prepared)

    # ------------------------------------------------------------------ shares of ended rounds
    def forget_shares_if_over(self, round_id: RoundId) -> bool:
        """Delete a round's shares if the ledger says the round is over; True if files were deleted."""
        if not self.state.share_files(round_id):
            return False
        rnd = self.fl.get_round(round_id)
        state = rnd.state
        if not rnd.over:
            return False
        deleted = self.state.delete_shares(round_id)
        if deleted:
            log.info("%s: round %d is %s: its shares are deleted (hashes and receipts kept)", self.participant_id,
                     round_id, state)
        return deleted

    def forget_finished_rounds(self) -> list[RoundId]:
        """Delete the shares of every past round that is over; rounds the ledger cannot tell about stay."""
        done = []
        for round_id in self.state.rounds_with_shares():
            try:
                if self.forget_shares_if_over(round_id):
                    done.append(round_id)
            except GatewayError as exc:
                log.warning("%s: round %d: cannot tell whether it is over (%s); its shares stay for now",
                            self.participant_id, round_id, exc)
        return done

    def _already_done(self, rnd: Round) -> RoundOutcome | None:
        rid = rnd.round_id
        st = self.state.load(rid)
        on_ledger = self.ledger_update(rid)
        if on_ledger is None:
            if st is not None and st.status == SUBMITTED:
                raise RoundRefused(f"round {rid}: local state says submitted but the ledger has no update from "
                                   f"{self.participant_id} (different network or ledger reset?)")
            return None
        if st is not None and st.share_hashes != list(on_ledger.share_hashes):
            log.warning("%s: round %d: the ledger holds an update with other share hashes than ours "
                        "(another client with this identity?)", self.participant_id, rid)
        if st is not None and st.status == PREPARED:
            st.status, st.tx_id = SUBMITTED, on_ledger.tx_id
            self.state.save(st)
        return RoundOutcome(rid, "already_submitted", list(on_ledger.share_hashes), on_ledger.n_samples,
                            tx_id=on_ledger.tx_id)

    def check_own_certificate(self) -> None:
        """The MPC nodes accept only certificates their consortium's CAs issued: say so plainly before
        connecting (a node that refuses a certificate only closes the TLS connection)."""
        from fedchain.identity import IdentityError

        msp = self._msp_manager()
        if msp is None:
            return
        try:
            msp.validate(self.identity.serialize())
        except IdentityError as exc:
            raise RoundRefused(f"this hospital's certificate would be rejected by the MPC nodes: {exc}") from None

    def _node_trust(self) -> Callable[[Identity, int], None]:
        """Receipt j must be signed by MPC node j as registered on the ledger (GetConsortium) and, where
        the consortium's MSP folders are at hand (D/crypto), by a certificate its org's CA issued."""
        from fedchain.mpc_client import consortium_trust

        return consortium_trust(self.fl.get_consortium(), self._msp_manager())

    def _msp_manager(self) -> Any:
        from fedchain.identity import Consortium, IdentityError

        crypto = Path(self.net.directory) / "crypto"
        if not (crypto / "consortium.json").is_file():
            return None
        try:
            return Consortium.load(crypto).msp_manager()
        except (IdentityError, OSError, ValueError) as exc:
            log.warning("%s: cannot load the consortium MSPs from %s (%s); receipts are checked against the "
                        "ledger's node identities only", self.participant_id, crypto, exc)
            return None
