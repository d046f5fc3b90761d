"""The operator's side of the ledger: one FL client, the ledger watermark, and writes that survive a lost race.

Every write first checks the operator's ledger watermark (a ledger that went backwards or forked is
refused: fedchain.gateway.watermark). Writes that another party may already have made are judged by
the ledger afterwards, not by the error: a CloseRound refused because an MPC node closed the round at
its deadline, a PublishReference (or PublishValidationBatch) refused because an earlier (killed) run of this
operator published it,
a CreateRound or CloseRound invalidated by MVCC. That is what makes the round driver restartable.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from fedchain.canonical import sha256_hex
from fedchain.fl_client import FLClient, ModelIntegrityError
from fedchain.gateway.errors import chaincode_refusal
from fedchain.gateway.watermark import LedgerRollback, LedgerWatermark, NetworkHeads
from fedchain.models import vector_hash
from fedchain.records import (
    DISPUTED,
    FAILED,
    OPEN,
    OUTCOME_OUT_OF_RANGE,
    TERMINAL_STATES,
    Head,
    ModelRecord,
    Round,
    RoundId,
)

log = logging.getLogger(__name__)


class RoundDisputed(RuntimeError):
    """The MPC nodes attested different results for a round (not the agreed 'aggregate out of range')."""

    def __init__(self, rnd: Round) -> None:
        self.round = rnd
        super().__init__(f"round {rnd.round_id} is DISPUTED: MPC nodes attested different results "
                         f"({json.dumps(rnd.to_json().get('attestations'))[:400]})")


def retry_mvcc(action: Callable[[], Any], done: Callable[[], bool] | None = None, attempts: int = 4) -> None:
    """Run a ledger write; retry if Fabric invalidated it with MVCC_READ_CONFLICT (nothing was written).

    Why: the last MPC node's attestation of the previous round can land after the quorum finalized it,
    concurrently with the operator's next CreateRound, which reads that round (seen in the e2e test).
    `done()` says whether a retry is still needed (e.g. another attempt already committed).
    """
    for attempt in range(attempts):
        if attempt and done is not None and done():
            return
        try:
            action()
            return
        except Exception as exc:
            if getattr(exc, "validation_code_name", None) != "MVCC_READ_CONFLICT" or attempt == attempts - 1:
                raise
            log.warning("ledger write invalidated by a concurrent one (MVCC); retrying")
            time.sleep(0.3 * (attempt + 1))


def reference_dirs(net: Any) -> list[Path]:
    """Reference folders of the MPC nodes this machine runs (from D/mpc/node*.json)."""
    out = []
    for cfg in sorted((Path(net.directory) / "mpc").glob("node*.json")):
        ref = json.loads(cfg.read_text()).get("reference_dir")
        if ref:
            out.append(Path(ref))
    return out


def publish_reference(net: Any, fl: FLClient, round_id: RoundId, vector: np.ndarray) -> str:
    """Hand the round's reference update to the MPC nodes through the ledger (PublishReference; the
    nodes fetch it with GetReference and check it against reference_sha256). Returns its SHA-256.

    Fallback for a contract without PublishReference: `<sha256>.npz` in the reference folder of
    each MPC node this machine runs (D/mpc/node*.json).
    """
    vec = np.ascontiguousarray(np.asarray(vector, dtype="<f4"))
    sha = vector_hash(vec)
    try:
        fl.publish_reference(round_id, vec.tobytes())
        return sha
    except Exception as exc:
        # any answer of the contract to PublishReference (e.g. "unknown function"), not an outage
        if net is None or chaincode_refusal(exc) is None or not reference_dirs(net):
            raise
        log.warning("PublishReference refused (%s); handing the reference to the local MPC nodes' folders", exc)
    for d in reference_dirs(net):
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{sha}.npz"
        if not path.exists():
            tmp = d / f".{sha}.npz.tmp"
            with open(tmp, "wb") as fh:
                np.savez(fh, delta=vec.astype(np.float64))
            tmp.replace(path)
    return sha


def outcome_note(rnd: Round) -> str:
    """One line on a round that ended without a new model (FAILED, or DISPUTED over its aggregate)."""
    if rnd.state == DISPUTED:
        return (f"round {rnd.round_id} DISPUTED ({rnd.dispute_reason}): the MPC nodes refused to "
                f"publish its aggregate; no new model, the next round builds on round "
                f"{rnd.base_round_id}'s model")
    accepted = rnd.agreed.accepted if rnd.agreed is not None else ()
    return (f"round {rnd.round_id} FAILED ({rnd.failure_reason}): {len(accepted)} "
            f"update(s) accepted, the privacy floor is {rnd.policy.min_accepted}; no new model, the next round "
            f"builds on round {rnd.base_round_id}'s model")


class OperatorLedger:
    """Operator actions through its own gateway connection.

    `watermark` is None for an operator built around a bare FLClient (in-memory ledgers in tests): no
    blocks to compare, so no rollback check.
    """

    net: Any = None
    gateway: Any = None
    watermark: LedgerWatermark | None = None

    def __init__(self, net: Any, identity: str = "operator", watermark_path: Path | None = None) -> None:
        self.net = net
        self.gateway = net.connect(identity)
        self.fl = FLClient(net.contract(self.gateway))
        # the newest block this operator saw: a ledger that went backwards or forked is refused
        self.watermark = LedgerWatermark(watermark_path or Path(net.directory) / "operator" / f"{identity}.watermark.json")

    @classmethod
    def over(cls, fl: FLClient) -> OperatorLedger:
        """An operator on a bare FL client (no gateway, no watermark): for in-memory ledgers."""
        op = cls.__new__(cls)
        op.fl = fl
        return op

    def check_ledger(self) -> None:
        """Raise LedgerRollback if the ledger went backwards or forked since this operator last looked."""
        if self.watermark is None:
            return
        try:
            self.watermark.check(NetworkHeads(self.gateway.network(self.net.channel)))
        except LedgerRollback as exc:
            raise LedgerRollback(self.watermark.explain(exc)) from None

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()

    # ---------------------------------------------------------------- reads
    def head(self) -> Head:
        return self.fl.head()

    def state_of(self, round_id: RoundId) -> str | None:
        try:
            return self.fl.get_round(round_id).state
        except Exception:
            return None

    def reference_published(self, round_id: RoundId) -> bool:
        """Whether the round's FLTrust reference is on the ledger (GetReference answers 404 if not)."""
        return self._published(self.fl.get_reference, round_id)

    def validation_published(self, round_id: RoundId) -> bool:
        """Whether the round's validation batch is on the ledger (GetValidationBatch answers 404 if not)."""
        return self._published(self.fl.get_validation_batch, round_id)

    @staticmethod
    def _published(fetch: Callable[[RoundId], Any], round_id: RoundId) -> bool:
        """True if `fetch` returns the blob, False on the contract's 404 (not published yet); a hash mismatch
        (ModelIntegrityError) and every other error propagate."""
        try:
            fetch(round_id)
            return True
        except ModelIntegrityError:
            raise
        except Exception as exc:
            refusal = chaincode_refusal(exc)
            if refusal is not None and refusal.status == 404:
                return False
            raise

    # ---------------------------------------------------------------- writes
    def ensure_genesis(self, spec: dict[str, Any], model: bytes) -> bool:
        """Publish the genesis model unless the ledger has one; True if published now."""
        self.check_ledger()
        if self.fl.head().model_hash is not None:
            return False
        try:
            self.fl.publish_genesis_model(spec, model)
        except Exception:
            if self.fl.head().model_hash is None:
                raise
            return False  # an earlier run of this operator published it meanwhile
        return True

    def create_round(self, round_id: RoundId, base_hash: str, spec: dict[str, Any], hyper: dict[str, Any],
                     policy: dict[str, Any], deadline_s: float, min_updates: int,
                     now: float | None = None) -> Round:
        """CreateRound with deadline = now (default: this machine's clock) + deadline_s."""
        self.check_ledger()
        start = time.time() if now is None else now
        body = {"round_id": round_id, "base_model_hash": base_hash, "model_spec": spec, "hyperparameters": hyper,
                "policy": policy, "min_updates": min_updates, "deadline": round(start + deadline_s, 3)}
        retry_mvcc(lambda: self.fl.create_round(body), done=lambda: self.state_of(round_id) is not None)
        return self.fl.get_round(round_id)

    def publish_reference(self, round_id: RoundId, vector: np.ndarray) -> str:
        """PublishReference; 'already published' (by an earlier run) is success."""
        self.check_ledger()
        try:
            return publish_reference(self.net, self.fl, round_id, vector)
        except Exception:
            if self.reference_published(round_id):
                return vector_hash(np.ascontiguousarray(np.asarray(vector, dtype="<f4")))
            raise

    def publish_validation_batch(self, round_id: RoundId, data: bytes) -> str:
        """PublishValidationBatch; 'already published' (by an earlier run) is success. Returns its SHA-256."""
        self.check_ledger()
        try:
            self.fl.publish_validation_batch(round_id, data)
        except Exception:
            if not self.validation_published(round_id):
                raise
        return sha256_hex(data)

    def close_round(self, round_id: RoundId) -> None:
        """CloseRound; a round that is no longer OPEN (an MPC node closed it at its deadline: the
        contract answers 409 'round is CLOSED') counts as closed."""
        self.check_ledger()
        try:
            retry_mvcc(lambda: self.fl.close_round(round_id), done=lambda: self.state_of(round_id) != OPEN)
        except Exception:
            if self.state_of(round_id) in (None, OPEN):
                raise

    def wait_published(self, round_id: RoundId, timeout_s: float) -> tuple[Round, ModelRecord | None]:
        """(round record, model record with hash-checked bytes) once the round is final and its model out.

        A FAILED round (fewer accepted updates than the privacy floor: the MPC nodes did not aggregate)
        and a round DISPUTED because the nodes agree its aggregate failed their sanity check have no
        model: (round record, None); the next round builds on the last finalized model. A round
        DISPUTED because the nodes attested different results raises RoundDisputed (one line)."""
        rnd = self.fl.wait_for_state(round_id, TERMINAL_STATES, timeout_s=timeout_s, poll_s=0.25)
        if rnd.state == FAILED or rnd.dispute_reason == OUTCOME_OUT_OF_RANGE:
            return rnd, None
        if rnd.state == DISPUTED:
            raise RoundDisputed(rnd)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return rnd, self.fl.get_model(round_id)
            except ModelIntegrityError:
                raise
            except Exception:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"round {round_id} finalized but its model was not published in "
                                       f"{timeout_s:g} s") from None
                time.sleep(0.25)
