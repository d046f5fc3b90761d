"""Replay the FL contract's transactions from the blocks and check the protocol was followed.

Works on the VALID transactions of the chain audit (already signature- and policy-checked):
who called what (role attribute of the signing certificate), the round state machine
(OPEN -> CLOSED -> FINALIZED | FAILED | DISPUTED), attestation quorums over the claim
(model_hash, accepted set, outcome), the privacy floor (an "ok" aggregate of at least the round's
min_accepted accepted updates), that a FAILED or out-of-range round attested and published no model
(the head stays at the last FINALIZED model, which the next round must build on), and that every
published model's bytes hash to the attested value.
The ledger's world state is not trusted here: everything is recomputed from transaction
arguments, which the endorsed read/write sets committed to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fedchain.audit.chain import ChainAudit, Finding, TxRecord
from fedchain.identity import Identity, IdentityError

TERMINAL = ("FINALIZED", "FAILED", "DISPUTED")
OUTCOMES = ("ok", "too_few_accepted", "aggregate_out_of_range")
DEFAULT_MIN_ACCEPTED = 3  # the chaincode's default when InitConsortium names none
DISPUTE_DIFFER = "attestations differ"

ROLE_OF_FUNCTION = {
    "InitConsortium": {"operator"},
    "RegisterParticipant": {"operator"},
    "PublishGenesisModel": {"operator"},
    "CreateRound": {"operator"},
    "SubmitUpdate": {"hospital"},
    "AttestResult": {"mpc_node"},
    "PublishModel": {"mpc_node"},
}


@dataclass
class RoundAudit:
    round_id: int
    created: dict[str, Any] | None = None
    updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed: dict[str, Any] | None = None
    attestations: dict[str, dict[str, Any]] = field(default_factory=dict)
    published_hash: str | None = None
    state: str = "NONE"
    finalized_hash: str | None = None
    accepted: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)
    outcome: str | None = None  # the quorum's outcome once the round ended by agreement
    reason: str | None = None  # FAILED: failure reason; DISPUTED: "attestations differ" or the outcome
    min_accepted: int | None = None
    min_updates: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "round_id": self.round_id, "state": self.state, "created_at": (self.created or {}).get("time"),
            "submitted": sorted(self.updates), "closed_at": (self.closed or {}).get("time"),
            "attested_by": sorted(self.attestations), "finalized_hash": self.finalized_hash,
            "published_hash": self.published_hash, "accepted": self.accepted, "rejected": self.rejected,
            "outcome": self.outcome, "reason": self.reason, "min_accepted": self.min_accepted,
        }


@dataclass
class FLAudit:
    rounds: dict[int, RoundAudit] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    genesis_hash: str | None = None
    quorum: int | None = None
    min_accepted: int | None = None  # the consortium's privacy floor
    default_policy: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "genesis_model_hash": self.genesis_hash, "quorum": self.quorum, "min_accepted": self.min_accepted,
            "calls": dict(sorted(self.calls.items())),
            "rounds": [r.as_dict() for _, r in sorted(self.rounds.items())],
            "findings": [f.as_dict() for f in self.findings], "ok": not self.findings,
        }


def _json_arg(rec: TxRecord, i: int) -> Any:
    try:
        return json.loads(rec.info.args[i])
    except (IndexError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _model_hash(b64: bytes) -> str | None:
    try:
        return hashlib.sha256(base64.b64decode(b64, validate=True)).hexdigest()
    except (binascii.Error, ValueError):
        return None


class FLAuditor:
    def __init__(self, chaincode: str = "fedchain") -> None:
        self.chaincode = chaincode
        self.result = FLAudit()

    def _find(self, rec: TxRecord, problem: str) -> None:
        self.result.findings.append(Finding(rec.block, rec.info.tx_id, problem))

    def _round(self, rid: int) -> RoundAudit:
        return self.result.rounds.setdefault(rid, RoundAudit(rid))

    def run(self, chain: ChainAudit) -> FLAudit:
        for rec in chain.transactions:
            if rec.code_name == "VALID" and rec.info.chaincode == self.chaincode:
                self._replay(rec)
        for rnd in self.result.rounds.values():
            # a round that kept its base model needs no PublishModel: the bytes are already on the ledger
            if rnd.state == "FINALIZED" and rnd.published_hash is None and rnd.finalized_hash == self._base_hash(rnd):
                rnd.published_hash = rnd.finalized_hash
        return self.result

    def _base_hash(self, rnd: RoundAudit) -> str | None:
        return (rnd.created or {}).get("base_model_hash")

    def _replay(self, rec: TxRecord) -> None:
        fn = rec.info.function
        self.result.calls[fn] = self.result.calls.get(fn, 0) + 1
        try:
            role = Identity(rec.info.creator_msp_id, rec.info.creator_cert_pem).role
        except IdentityError:
            role = None
        allowed = ROLE_OF_FUNCTION.get(fn)
        if allowed is not None and role not in allowed:
            self._find(rec, f"{fn} committed for a creator with role {role!r} (allowed: {sorted(allowed)})")
        when = rec.info.timestamp.isoformat() if rec.info.timestamp else None
        handler = getattr(self, f"_on_{fn}", None)
        if handler is not None:
            handler(rec, when)

    def _on_InitConsortium(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802 - Fabric function names
        cfg = _json_arg(rec, 0) or {}
        self.result.quorum = int(cfg.get("quorum", 0)) or None
        self.result.min_accepted = _int_or_none(cfg.get("min_accepted")) or DEFAULT_MIN_ACCEPTED
        policy = cfg.get("default_policy")
        self.result.default_policy = policy if isinstance(policy, dict) else {}

    def _on_PublishGenesisModel(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        if len(rec.info.args) > 1:
            self.result.genesis_hash = _model_hash(rec.info.args[1])
            r0 = self._round(0)
            r0.state, r0.finalized_hash, r0.published_hash = "FINALIZED", self.result.genesis_hash, self.result.genesis_hash

    def _on_CreateRound(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        spec = _json_arg(rec, 0) or {}
        rid = int(spec.get("round_id", -1))
        rnd = self._round(rid)
        if rnd.created is not None:
            self._find(rec, f"round {rid} created twice")
        previous = [r for r in self.result.rounds.values() if r.round_id < rid and r.round_id > 0]
        if any(r.state not in TERMINAL for r in previous):
            self._find(rec, f"round {rid} created while an earlier round was still open")
        finalized = [r for r in self.result.rounds.values() if r.state == "FINALIZED" and r.round_id < rid]
        if finalized:
            last = max(finalized, key=lambda r: r.round_id)
            if spec.get("base_model_hash") != last.finalized_hash:
                self._find(rec, f"round {rid} builds on {spec.get('base_model_hash')}, not the last finalized "
                                f"model {last.finalized_hash} (round {last.round_id})")
        rnd.created = {"time": when, "base_model_hash": spec.get("base_model_hash"), "tx_id": rec.info.tx_id}
        rnd.state = "OPEN"
        # the round's privacy floor as the chaincode fixes it: the round policy's, else the consortium's
        policy = spec.get("policy")
        policy = policy if isinstance(policy, dict) else self.result.default_policy
        floor = self.result.min_accepted or DEFAULT_MIN_ACCEPTED
        own = _int_or_none(policy.get("min_accepted"))
        if own is not None and own < floor:
            self._find(rec, f"round {rid}'s policy.min_accepted {own} is below the consortium's minimum {floor}")
        rnd.min_accepted = floor if own is None or own < floor else own
        rnd.min_updates = _int_or_none(spec.get("min_updates"))

    def _on_SubmitUpdate(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        u = _json_arg(rec, 0) or {}
        rnd = self._round(int(u.get("round_id", -1)))
        if rnd.state != "OPEN":
            self._find(rec, f"update committed to round {rnd.round_id} while {rnd.state}")
        hospital = rec.info.creator_cert_pem and Identity(rec.info.creator_msp_id, rec.info.creator_cert_pem).fabric_id
        if hospital in rnd.updates:
            self._find(rec, f"second update by the same hospital in round {rnd.round_id}")
        rnd.updates[hospital] = {"time": when, "tx_id": rec.info.tx_id, "share_hashes": u.get("share_hashes")}

    def _on_CloseRound(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        try:
            rid = int(rec.info.args[0])
        except (IndexError, ValueError):
            self._find(rec, "CloseRound without a round id")
            return
        rnd = self._round(rid)
        if rnd.state != "OPEN":
            self._find(rec, f"round {rid} closed while {rnd.state}")
        rnd.closed, rnd.state = {"time": when, "tx_id": rec.info.tx_id}, "CLOSED"

    def _on_AttestResult(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        a = _json_arg(rec, 0) or {}
        rnd = self._round(int(a.get("round_id", -1)))
        node = Identity(rec.info.creator_msp_id, rec.info.creator_cert_pem).fabric_id
        if rnd.state not in ("CLOSED", "FINALIZED", "FAILED", "DISPUTED"):
            self._find(rec, f"attestation for round {rnd.round_id} while {rnd.state}")
        if node in rnd.attestations:
            self._find(rec, f"node attested round {rnd.round_id} twice")
        outcome = a.get("outcome") or "ok"
        accepted = a.get("accepted") or []
        self._check_claim(rec, rnd, a.get("model_hash"), accepted, outcome)
        key = (a.get("model_hash"), tuple(sorted(accepted)), outcome)
        rnd.attestations[node] = {"key": key, "rejected": a.get("rejected") or {}, "time": when}
        if rnd.state == "CLOSED":
            keys = [x["key"] for x in rnd.attestations.values()]
            if len(set(keys)) > 1:
                rnd.state, rnd.reason = "DISPUTED", DISPUTE_DIFFER
            elif self.result.quorum and keys.count(key) >= self.result.quorum:
                rnd.outcome = outcome
                rnd.accepted, rnd.rejected = list(key[1]), dict(a.get("rejected") or {})
                if outcome == "ok":
                    rnd.state, rnd.finalized_hash = "FINALIZED", key[0]
                elif outcome == "too_few_accepted":
                    rnd.state, rnd.reason = "FAILED", outcome
                else:
                    rnd.state, rnd.reason = "DISPUTED", outcome

    def _check_claim(self, rec: TxRecord, rnd: RoundAudit, model_hash: Any, accepted: list[Any],
                     outcome: Any) -> None:
        """One node's claim against the round's rules (the chaincode enforces them: a hit means it did not)."""
        rid, base = rnd.round_id, self._base_hash(rnd)
        if outcome not in OUTCOMES:
            self._find(rec, f"attestation for round {rid} with unknown outcome {str(outcome)[:40]!r}")
            return
        if outcome != "ok" and model_hash != base:
            self._find(rec, f"attestation for round {rid} with outcome {outcome!r} names model {model_hash}, not "
                            f"the base model {base}: a round without an aggregate publishes no model")
        floor = rnd.min_accepted
        if floor is not None and outcome == "ok" and len(accepted) < floor:
            self._find(rec, f"attestation for round {rid} claims an aggregate (outcome 'ok') of {len(accepted)} "
                            f"accepted update(s), below the round's min_accepted {floor}")
        if floor is not None and outcome == "too_few_accepted" and len(accepted) >= floor:
            self._find(rec, f"attestation for round {rid} claims too_few_accepted with {len(accepted)} accepted "
                            f"update(s), at least the round's min_accepted {floor}")
        if rnd.min_updates is not None and len(accepted) < rnd.min_updates and model_hash != base:
            self._find(rec, f"attestation for round {rid} changes the model with {len(accepted)} accepted "
                            f"update(s), fewer than min_updates {rnd.min_updates}")

    def _on_PublishModel(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        try:
            rid = int(rec.info.args[0])
        except (IndexError, ValueError):
            self._find(rec, "PublishModel without a round id")
            return
        rnd = self._round(rid)
        digest = _model_hash(rec.info.args[1]) if len(rec.info.args) > 1 else None
        if rnd.state != "FINALIZED":
            self._find(rec, f"model published for round {rid} while {rnd.state}")
        elif digest != rnd.finalized_hash:
            self._find(rec, f"published model of round {rid} hashes to {digest}, attested {rnd.finalized_hash}")
        if rnd.published_hash is None:
            rnd.published_hash = digest
