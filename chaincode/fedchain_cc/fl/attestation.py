"""Attestation and finalization: AttestResult, and the round's move to FINALIZED, FAILED or DISPUTED.

MVCC: every attestation also writes the round record, so concurrent attestations conflict and the
retried one sees the others: a quorum is never missed by parallel commits.
"""

from __future__ import annotations

from typing import Any

from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.blobs import point_model_at_base
from fedchain_cc.fl.rules import CLOSED, DISPUTE_DIFFER, DISPUTED, FAILED, FINALIZED, MAX_HOSPITALS_PER_ROUND
from fedchain_cc.fl.tx import Tx
from fedchain_cc.fl.updates import submitted_hospitals
from fedchain_cc.fl.validate import Fields
from fedchain_cc.shim.contract import ContractError, transaction


def _min_accepted(rnd: dict[str, Any]) -> int:
    """The round's privacy floor (CreateRound stores it in the policy; rounds created before the field: none)."""
    value = (rnd.get("policy") or {}).get("min_accepted")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _claim_of(record: dict[str, Any]) -> dict[str, Any]:
    """What the nodes must agree on; records written before `outcome` existed claimed "ok"."""
    return {"model_hash": record["model_hash"], "accepted": record["accepted"],
            "outcome": record.get("outcome", v.OUTCOME_OK)}


def _parse_attestation(arg: str) -> tuple[int, str, list[str], dict[str, str], str, str]:
    """(round_id, model_hash, accepted, rejected, report_hash, outcome), each checked on its own."""
    f = Fields(v.obj(arg, "attestation"), "attestation")
    round_id = f.integer("round_id", 1, v.MAX_ROUND_ID)
    model_hash = f.match("model_hash", v.HEX64_RE, "a lowercase hex SHA-256")
    accepted = f.array("accepted", MAX_HOSPITALS_PER_ROUND)
    for i, hid in enumerate(accepted):
        if not isinstance(hid, str) or not v.ID_RE.match(hid):
            raise ContractError(f"attestation: accepted[{i}] must be a participant id")
    rejected = f.object("rejected", required=False) or {}
    for hid, reason in rejected.items():
        if not v.ID_RE.match(hid):
            raise ContractError(f"attestation: rejected key {hid[:40]!r} must be a participant id")
        if not isinstance(reason, str) or not v.REASON_RE.match(reason):
            raise ContractError(f"attestation: reason for {hid} must match {v.REASON_HINT}")
    report_hash = f.match("report_hash", v.HEX64_RE, "a lowercase hex SHA-256")
    outcome = f.text("outcome", 32, required=False, default=v.OUTCOME_OK)
    if outcome not in v.OUTCOMES:
        raise ContractError(f"attestation: field 'outcome' must be one of {', '.join(v.OUTCOMES)}, "
                            f"got {outcome[:40]!r}")
    f.done()
    if len(set(accepted)) != len(accepted):
        raise ContractError("attestation: accepted lists a hospital twice")
    both = sorted(set(accepted) & set(rejected))
    if both:
        raise ContractError(f"attestation: {', '.join(both)} both accepted and rejected")
    return round_id, model_hash, accepted, rejected, report_hash, outcome


def _check_claim(rnd: dict[str, Any], model_hash: str, accepted: list[str], outcome: str) -> None:
    """The rules between a claim and its round: outcome vs the privacy floor, no model without enough updates."""
    min_accepted = _min_accepted(rnd)
    if outcome != v.OUTCOME_OK and model_hash != rnd["base_model_hash"]:
        raise ContractError(f"attestation: outcome {outcome!r} publishes no model: model_hash must be the base "
                            f"model {rnd['base_model_hash']}")
    if outcome == v.OUTCOME_OK and len(accepted) < min_accepted:
        raise ContractError(f"attestation: only {len(accepted)} accepted update(s), fewer than the round's "
                            f"policy.min_accepted {min_accepted}: the aggregate must not be opened (attest "
                            f"outcome {v.OUTCOME_TOO_FEW!r})")
    if outcome == v.OUTCOME_TOO_FEW and len(accepted) >= min_accepted:
        raise ContractError(f"attestation: outcome {outcome!r} with {len(accepted)} accepted update(s), at least "
                            f"the round's policy.min_accepted {min_accepted}")
    if len(accepted) < rnd["min_updates"] and model_hash != rnd["base_model_hash"]:
        raise ContractError(f"only {len(accepted)} accepted update(s), fewer than min_updates "
                            f"{rnd['min_updates']}: the model must stay the base model {rnd['base_model_hash']}")


def _dispute(tx: Tx, record: dict[str, Any], reason: str) -> None:
    record["state"] = DISPUTED
    record["disputed_at"] = tx.timestamp
    record["dispute_reason"] = reason
    tx.event("RoundDisputed", {"round_id": record["round_id"], "reason": reason,
                               "attestations": record["attestations"]})


def _finalize(tx: Tx, rnd: dict[str, Any], model_hash: str) -> None:
    """Move the head to the round's model; an unchanged model (= base) is published by pointing at its bytes."""
    head = tx.head()
    tx.put_json(keys.HEAD, {**head, "finalized_round_id": rnd["round_id"], "model_hash": model_hash})
    if model_hash == rnd["base_model_hash"]:
        point_model_at_base(tx, rnd)


class AttestationTransactions:
    """MPC nodes' attestations; the quorum's common claim decides the round's terminal state."""

    @transaction("AttestResult")
    def attest_result(self, tx: Tx, attestation_json: str) -> dict[str, Any]:
        me = tx.require("mpc_node")
        round_id, model_hash, accepted, rejected, report_hash, outcome = _parse_attestation(attestation_json)
        rnd = tx.round_record(round_id)
        if rnd["state"] not in (CLOSED, FINALIZED, FAILED):
            raise ContractError(f"round {round_id} is {rnd['state']}; attestations are accepted once it is CLOSED", 409)
        if tx.get_json(keys.attestation(round_id, me["node_index"])) is not None:
            raise ContractError(f"MPC node {me['id']} already attested round {round_id}", 409)
        submitted = submitted_hospitals(tx, round_id)
        verdicts = sorted([*accepted, *rejected])
        if verdicts != submitted:
            missing = sorted(set(submitted) - set(verdicts))
            extra = sorted(set(verdicts) - set(submitted))
            raise ContractError(f"attestation must give a verdict for exactly the submitted updates "
                                f"(missing: {missing or 'none'}; not submitted: {extra or 'none'})")
        _check_claim(rnd, model_hash, accepted, outcome)
        accepted = sorted(accepted)
        attestation = {"round_id": round_id, "node": me["id"], "node_index": me["node_index"],
                       "model_hash": model_hash, "accepted": accepted, "rejected": rejected, "outcome": outcome,
                       "report_hash": report_hash, "attested_at": tx.timestamp, "tx_id": tx.tx_id}
        tx.put_json(keys.attestation(round_id, me["node_index"]), attestation)
        claim = {"model_hash": model_hash, "accepted": accepted, "outcome": outcome}
        # Every attestation also writes the round record: concurrent attestations then conflict on MVCC
        # and the retried one sees the others, so a quorum is never missed by parallel commits.
        record = {**rnd, "attestations": {**rnd["attestations"], me["id"]: {**claim, "tx_id": tx.tx_id}}}
        if rnd["state"] in (FINALIZED, FAILED):  # a late node: recorded, listed as dissent if it differs
            agreed = rnd["finalized"] if rnd["state"] == FINALIZED else rnd["agreed"]
            if claim != _claim_of(agreed):
                record["dissent"] = sorted({*rnd["dissent"], me["id"]})
            return tx.put_json(keys.round_(round_id), record)
        claims = [_claim_of(a) for a in record["attestations"].values()]
        result = {**claim, "rejected": rejected, "report_hash": report_hash}
        if any(c != claim for c in claims):
            _dispute(tx, record, DISPUTE_DIFFER)
        elif len(claims) < rnd["mpc"]["quorum"]:
            pass  # waiting for more nodes
        elif outcome == v.OUTCOME_OK:
            record["state"] = FINALIZED
            record["finalized_at"] = tx.timestamp
            record["finalized"] = result
            _finalize(tx, rnd, model_hash)
            tx.event("RoundFinalized", {"round_id": round_id, "model_hash": model_hash, "accepted": accepted,
                                        "rejected": rejected})
        elif outcome == v.OUTCOME_TOO_FEW:  # terminal, no model: the head stays, the next round builds on it
            record["state"] = FAILED
            record["failed_at"] = tx.timestamp
            record["failure_reason"] = outcome
            record["agreed"] = result
            tx.event("RoundFailed", {"round_id": round_id, "reason": outcome, "accepted": accepted,
                                     "rejected": rejected})
        else:  # aggregate_out_of_range: the nodes agree the aggregate is unusable; no model, the head stays
            record["agreed"] = result
            _dispute(tx, record, outcome)
        return tx.put_json(keys.round_(round_id), record)
