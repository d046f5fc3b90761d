"""The consortium operator's part of a demo round: genesis, FLTrust reference, policy, create/close.

The reference update is computed by the operator from the public root set and the round's
base model; its SHA-256 goes into the round's hyperparameters (`reference_sha256`) and the
bytes onto the ledger (PublishReference), so every MPC node and auditor uses the same vector.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from fedchain.fl_client import TERMINAL_STATES, FLClient, ModelIntegrityError
from fedchain.gateway.watermark import LedgerRollback, LedgerWatermark, NetworkHeads
from fedchain.models import vector_hash

log = logging.getLogger(__name__)

def reference_dirs(net: Any) -> list[Path]:
    """Reference folders of the MPC nodes this machine runs (from D/mpc/node*.json)."""
    out = []
    for cfg in sorted((Path(net.directory) / "mpc").glob("node*.json")):
        ref = json.loads(cfg.read_text()).get("reference_dir")
        if ref:
            out.append(Path(ref))
    return out


def publish_reference(net: Any, fl: FLClient, round_id: int, vector: np.ndarray) -> str:
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
        if "PublishReference" not in str(exc) or not reference_dirs(net):
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


def retry_mvcc(action: Any, done: Any = None, attempts: int = 4) -> None:
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
            if "MVCC_READ_CONFLICT" not in str(exc) or attempt == attempts - 1:
                raise
            log.warning("ledger write invalidated by a concurrent one (MVCC); retrying")
            time.sleep(0.3 * (attempt + 1))


class Operator:
    """Operator actions through its own gateway connection."""

    def __init__(self, net: Any, identity: str = "operator", watermark_path: Path | None = None) -> None:
        self.net = net
        self.gateway = net.connect(identity)
        self.fl = FLClient(net.contract(self.gateway))
        # the newest block this operator saw: a ledger that went backwards or forked is refused
        self.watermark = LedgerWatermark(watermark_path or Path(net.directory) / "operator" / f"{identity}.watermark.json")

    def check_ledger(self) -> None:
        """Raise LedgerRollback if the ledger went backwards or forked since this operator last looked."""
        try:
            self.watermark.check(NetworkHeads(self.gateway.network(self.net.channel)))
        except LedgerRollback as exc:
            raise LedgerRollback(self.watermark.explain(exc)) from None

    def close(self) -> None:
        self.gateway.close()

    def ensure_genesis(self, spec: dict[str, Any], model: bytes) -> bool:
        """Publish the genesis model unless the ledger has one; True if published now."""
        if self.fl.head().get("model_hash") is not None:
            return False
        self.fl.publish_genesis_model(spec, model)
        return True

    def create_round(self, round_id: int, base_hash: str, spec: dict[str, Any], hyper: dict[str, Any],
                     policy: dict[str, Any], deadline_s: float, min_updates: int) -> dict[str, Any]:
        self.check_ledger()
        retry_mvcc(lambda: self.fl.create_round({"round_id": round_id, "base_model_hash": base_hash, "model_spec": spec,
                              "hyperparameters": hyper, "policy": policy, "min_updates": min_updates,
                              "deadline": round(time.time() + deadline_s, 3)}),
                   done=lambda: self._round_exists(round_id))
        return self.fl.get_round(round_id)

    def _round_exists(self, round_id: int) -> bool:
        try:
            self.fl.get_round(round_id)
            return True
        except Exception:
            return False

    def wait_published(self, round_id: int, timeout_s: float) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(round record, model record with hash-checked bytes) once the round is final and its model out.

        A FAILED round (fewer accepted updates than the privacy floor: the MPC nodes did not aggregate)
        and a round DISPUTED because the nodes agree its aggregate failed their sanity check have no
        model: (round record, None); the next round builds on the last finalized model. A round
        DISPUTED because the nodes attested different results raises RuntimeError (one line)."""
        rnd = self.fl.wait_for_state(round_id, TERMINAL_STATES, timeout_s=timeout_s, poll_s=0.25)
        if rnd["state"] == "FAILED" or rnd.get("dispute_reason") == "aggregate_out_of_range":
            return rnd, None
        if rnd["state"] == "DISPUTED":
            raise RuntimeError(f"round {round_id} is DISPUTED: MPC nodes attested different results "
                               f"({json.dumps(rnd.get('attestations'))[:400]})")
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
