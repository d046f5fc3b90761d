"""Hospitals' updates: SubmitUpdate, GetUpdates, and the list of submitted hospitals other groups read.

MVCC: SubmitUpdate reads consortium, participant and round but writes only update~round~hospital,
so concurrent hospitals never collide.
"""

from __future__ import annotations

from typing import Any

from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.rules import MAX_MPC_NODES, MAX_PARAM_COUNT, MAX_SAMPLE_CAP, OPEN
from fedchain_cc.fl.tx import Tx
from fedchain_cc.fl.validate import Fields
from fedchain_cc.shim.contract import ContractError, transaction


def round_updates(tx: Tx, round_id: int) -> list[dict[str, Any]]:
    """The round's update records in key order (= hospital id order)."""
    return [rec for _, rec in tx.range_json("update", [keys.rnd(round_id)])]


def submitted_hospitals(tx: Tx, round_id: int) -> list[str]:
    """Sorted ids of the hospitals that submitted to the round (what CloseRound records and verdicts cover)."""
    return sorted(rec["hospital"] for rec in round_updates(tx, round_id))


class UpdateTransactions:
    """One update per (round, hospital): share hashes (one per MPC node), sample count, dimension."""

    @transaction("SubmitUpdate")
    def submit_update(self, tx: Tx, update: str) -> dict[str, Any]:
        """Reads consortium/participant/round, writes only update~round~hospital: hospitals never collide."""
        me = tx.require("hospital")
        cons = tx.consortium()
        f = Fields(v.obj(update, "update"), "update")
        round_id = f.integer("round_id", 1, v.MAX_ROUND_ID)
        m = len(cons["mpc_nodes"])
        hashes = f.array("share_hashes", MAX_MPC_NODES)
        if len(hashes) != m:
            raise ContractError(f"update: share_hashes must hold one hash per MPC node ({m}), got {len(hashes)}")
        for j, h in enumerate(hashes):
            if not isinstance(h, str) or not v.HEX64_RE.match(h):
                raise ContractError(f"update: share_hashes[{j}] must be a lowercase hex SHA-256")
        n_samples = f.integer("n_samples", 1, MAX_SAMPLE_CAP)
        dim = f.integer("dim", 1, MAX_PARAM_COUNT)
        f.done()
        if n_samples > me["sample_cap"]:
            raise ContractError(f"update: n_samples {n_samples} exceeds the enrolment cap {me['sample_cap']} of "
                                f"{me['id']}")
        rnd = tx.round_record(round_id)
        if rnd["state"] != OPEN:
            raise ContractError(f"round {round_id} is {rnd['state']}, updates are accepted only while OPEN", 409)
        if tx.timestamp >= rnd["deadline"]:
            raise ContractError(f"round {round_id}'s deadline {rnd['deadline']} has passed "
                                f"(transaction time {tx.timestamp})", 409)
        want_dim = rnd["model_spec"]["param_count"]
        if dim != want_dim:
            raise ContractError(f"update: dim {dim} differs from the model's parameter count {want_dim}")
        if tx.get_json(keys.update(round_id, me["id"])) is not None:
            raise ContractError(f"{me['id']} already submitted an update to round {round_id}", 409)
        record = {"round_id": round_id, "hospital": me["id"], "msp_id": me["msp_id"], "share_hashes": hashes,
                  "n_samples": n_samples, "dim": dim, "submitted_at": tx.timestamp, "tx_id": tx.tx_id}
        tx.event("UpdateSubmitted", {"round_id": round_id, "hospital": me["id"], "tx_id": tx.tx_id})
        return tx.put_json(keys.update(round_id, me["id"]), record)

    @transaction("GetUpdates")
    def get_updates(self, tx: Tx, round_arg: str) -> list[dict[str, Any]]:
        tx.require()
        round_id = v.round_id(round_arg)
        tx.round_record(round_id)
        return round_updates(tx, round_id)
