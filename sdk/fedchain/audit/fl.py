"""Replay the FL contract's transactions from the blocks and check the protocol was followed.

Works on the VALID transactions of the chain audit (already signature- and policy-checked) and
re-applies the contract's rules to a world rebuilt from the transactions' arguments, which the
endorsed read/write sets committed to (the peers' world state is not trusted here):

* who called what: the creator must be a registered participant (InitConsortium,
  RegisterParticipant) whose certificate role equals its registered role, and that role must be
  allowed for the function;
* the round state machine (OPEN -> CLOSED -> FINALIZED | FAILED | DISPUTED), rounds created with
  increasing ids one at a time, each on the last FINALIZED model;
* updates: n_samples within the hospital's enrolment sample_cap, dim equal to the round's
  model_spec.param_count, stamped before the round's deadline and not committed after a
  transaction stamped at or past deadline + max_clock_skew_s (back-dated);
* closing: operators any time, MPC nodes from the deadline, anyone else from deadline +
  max_clock_skew_s;
* the FLTrust reference: published by an operator while OPEN (or CLOSED before any attestation), once, hashing to the round's
  hyperparameters.reference_sha256, 4 x param_count bytes; a round checking cosine similarity
  that was attested without one is reported;
* the public validation batch of the encrypted-inference check, under the same rules
  (PublishValidationBatch: operator, while OPEN or CLOSED before any attestation, once, hashing to
  hyperparameters.validation_sha256, a canonical batch for the round's model of at most
  policy.inference_batch images); a round enabling policy.inference_enabled must declare one at
  CreateRound, and one attested without a published batch is reported (reason "inference" is a
  verdict like the others);
* attestation quorums over the claim (model_hash, accepted set, outcome), the privacy floor (an
  "ok" aggregate of at least the round's min_accepted accepted updates), that a FAILED or
  out-of-range round attested and published no model, and that every published model's bytes
  hash to the attested value.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from fedchain.audit.chain import ChainAudit, Finding, TxRecord
from fedchain.audit.participants import Caller, Registry
from fedchain.audit.timeline import LedgerClock, iso
from fedchain.canonical import sha256_hex
from fedchain.records import DEFAULT_INFERENCE_BATCH, OUTCOMES, Consortium
from fedchain.records import TERMINAL_STATES as TERMINAL

# The round states, outcomes and defaults are fedchain.records' (one definition). The audit replays the
# transactions' arguments, which a client wrote and the chaincode checked: it reads them leniently (a
# malformed value is a finding, never a crash), so it does not parse them into records.
DEFAULT_MIN_ACCEPTED = Consortium.DEFAULT_MIN_ACCEPTED  # the chaincode's default when InitConsortium names none
DEFAULT_MAX_CLOCK_SKEW_S = Consortium.DEFAULT_MAX_CLOCK_SKEW_S  # the chaincode's default: Fabric's time window
__all__ = ["DEFAULT_INFERENCE_BATCH", "OUTCOMES", "TERMINAL", "FLAudit", "FLAuditor", "RoundAudit"]
DISPUTE_DIFFER = "attestations differ"
# rejected before any check ran (MPC node rules)
UNJUDGED_REASONS = ("no_reference", "no_validation_batch", "missing_share")

ROLE_OF_FUNCTION = {
    "InitConsortium": {"operator"},
    "RegisterParticipant": {"operator"},
    "PublishGenesisModel": {"operator"},
    "CreateRound": {"operator"},
    "PublishReference": {"operator"},
    "PublishValidationBatch": {"operator"},
    "SubmitUpdate": {"hospital"},
    "CloseRound": {"operator", "hospital", "mpc_node", "auditor"},  # when: see _on_CloseRound
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
    reference: dict[str, Any] | None = None  # the first PublishReference: sha256, tx_id, matches
    validation: dict[str, Any] | None = None  # the first PublishValidationBatch: sha256, tx_id, matches, batch

    def as_dict(self) -> dict[str, Any]:
        created = self.created or {}
        return {
            "round_id": self.round_id, "state": self.state, "created_at": created.get("time"),
            "deadline": iso(created["deadline"]) if created.get("deadline") is not None else None,
            "submitted": sorted(self.updates), "closed_at": (self.closed or {}).get("time"),
            "attested_by": sorted(self.attestations), "finalized_hash": self.finalized_hash,
            "published_hash": self.published_hash, "accepted": self.accepted, "rejected": self.rejected,
            "outcome": self.outcome, "reason": self.reason, "min_accepted": self.min_accepted,
            "reference_sha256": created.get("reference_sha256"),
            "reference_published": (self.reference or {}).get("sha256"),
            "inference_enabled": bool(created.get("inference_enabled")),
            "validation_sha256": created.get("validation_sha256"),
            "validation_published": (self.validation or {}).get("sha256"),
        }


@dataclass
class FLAudit:
    rounds: dict[int, RoundAudit] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    genesis_hash: str | None = None
    param_count: int | None = None
    quorum: int | None = None
    min_accepted: int | None = None  # the consortium's privacy floor
    max_clock_skew_s: int = DEFAULT_MAX_CLOCK_SKEW_S
    mpc_nodes: int = 0
    default_policy: dict[str, Any] = field(default_factory=dict)
    registry: Registry = field(default_factory=Registry)
    calls: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "genesis_model_hash": self.genesis_hash, "quorum": self.quorum, "min_accepted": self.min_accepted,
            "max_clock_skew_s": self.max_clock_skew_s,
            "participants": {pid: p.get("role") for pid, p in sorted(self.registry.participants.items())},
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


def _number_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _b64(data: bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _model_hash(b64: bytes) -> str | None:
    raw = _b64(b64)
    return sha256_hex(raw) if raw is not None else None


def _ts(rec: TxRecord) -> float | None:
    return rec.info.timestamp.timestamp() if rec.info.timestamp else None


class FLAuditor:
    def __init__(self, chaincode: str = "fedchain") -> None:
        self.chaincode = chaincode
        self.result = FLAudit()
        self._clock = LedgerClock()
        self._witness: TxRecord | None = None  # latest-stamped VALID tx of the blocks before the current one
        self._last_created: RoundAudit | None = None
        self._last_finalized: RoundAudit | None = None
        self._who = Caller("", None, None, None)  # the creator of the transaction being replayed

    def _find(self, rec: TxRecord, problem: str) -> None:
        self.result.findings.append(Finding(rec.block, rec.info.tx_id, problem))

    def _round(self, rid: int) -> RoundAudit:
        return self.result.rounds.setdefault(rid, RoundAudit(rid))

    def run(self, chain: ChainAudit) -> FLAudit:
        for rec in chain.transactions:
            self._witness = self._clock.step(rec)
            if rec.code_name == "VALID" and rec.info.chaincode == self.chaincode:
                self._replay(rec)
        for rnd in self.result.rounds.values():
            # a round that kept its base model needs no PublishModel: the bytes are already on the ledger
            if rnd.state == "FINALIZED" and rnd.published_hash is None and rnd.finalized_hash == self._base_hash(rnd):
                rnd.published_hash = rnd.finalized_hash
            self._check_reference_used(rnd)
            self._check_validation_used(rnd)
        return self.result

    def _base_hash(self, rnd: RoundAudit) -> str | None:
        return (rnd.created or {}).get("base_model_hash")

    def _replay(self, rec: TxRecord) -> None:
        fn = rec.info.function
        self.result.calls[fn] = self.result.calls.get(fn, 0) + 1
        who = self.result.registry.caller(rec.info.creator_msp_id, rec.info.creator_cert_pem)
        self._check_caller(rec, fn, who)
        when = rec.info.timestamp.isoformat() if rec.info.timestamp else None
        handler = getattr(self, f"_on_{fn}", None)
        if handler is not None:
            self._who = who
            handler(rec, when)

    def _check_caller(self, rec: TxRecord, fn: str, who: Caller) -> None:
        """The contract's require(): registered, certificate role == registered role, role allowed."""
        allowed = ROLE_OF_FUNCTION.get(fn)
        if allowed is None:
            return  # a query submitted as a transaction: it changes nothing
        if fn == "InitConsortium":  # registers its caller: only the certificate can be checked
            if who.cert_role not in allowed:
                self._find(rec, f"{fn} committed for a creator with role {who.cert_role!r} (allowed: {sorted(allowed)})")
            return
        if who.participant is None:
            self._find(rec, f"{fn} committed for {who.name} (certificate role {who.cert_role!r}), who is not a "
                            f"registered participant")
            return
        if who.cert_role != who.participant["role"]:
            self._find(rec, f"{fn} committed for {who.name}, whose certificate role {who.cert_role!r} differs from "
                            f"its registered role {who.participant['role']!r}")
        if who.participant["role"] not in allowed:
            self._find(rec, f"{fn} committed for a creator with role {who.participant['role']!r} "
                            f"(allowed: {sorted(allowed)})")

    # --- consortium and participants --------------------------------------------------------
    def _on_InitConsortium(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802 - Fabric names
        who = self._who
        cfg = _json_arg(rec, 0) or {}
        if self.result.registry.participants:
            self._find(rec, "the consortium was initialized twice")
            return
        self.result.quorum = int(cfg.get("quorum", 0)) or None
        self.result.min_accepted = _int_or_none(cfg.get("min_accepted")) or DEFAULT_MIN_ACCEPTED
        skew = _int_or_none(cfg.get("max_clock_skew_s"))
        self.result.max_clock_skew_s = DEFAULT_MAX_CLOCK_SKEW_S if skew is None else skew
        policy = cfg.get("default_policy")
        self.result.default_policy = policy if isinstance(policy, dict) else {}
        nodes = [n for n in cfg.get("mpc_nodes") or [] if isinstance(n, dict)]
        self.result.mpc_nodes = len(nodes)
        operator = {"id": cfg.get("operator_id") or "operator", "role": "operator", "msp_id": who.msp_id,
                    "identity": who.fabric_id}
        for record in [operator, *({**n, "role": "mpc_node", "node_index": j} for j, n in enumerate(nodes))]:
            problem = self.result.registry.register(record)
            if problem:
                self._find(rec, f"InitConsortium: {problem}")

    def _on_RegisterParticipant(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        entry = _json_arg(rec, 0)
        if not isinstance(entry, dict):
            self._find(rec, "RegisterParticipant without a participant record")
            return
        if entry.get("role") == "mpc_node":
            self._find(rec, f"participant {entry.get('id')!r} registered as mpc_node: MPC nodes are fixed by "
                            f"InitConsortium")
        problem = self.result.registry.register(dict(entry))
        if problem:
            self._find(rec, problem)

    # --- models and rounds ---------------------------------------------------------------------
    def _on_PublishGenesisModel(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        if len(rec.info.args) > 1:
            self.result.genesis_hash = _model_hash(rec.info.args[1])
            self.result.param_count = _int_or_none((_json_arg(rec, 0) or {}).get("param_count"))
            r0 = self._round(0)
            r0.state, r0.finalized_hash, r0.published_hash = "FINALIZED", self.result.genesis_hash, self.result.genesis_hash
            self._last_finalized = r0

    def _on_CreateRound(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        spec = _json_arg(rec, 0) or {}
        rid = int(spec.get("round_id", -1))
        rnd = self._round(rid)
        last = self._last_created
        if rnd.created is not None:
            self._find(rec, f"round {rid} created twice")
        elif last is not None and rid < last.round_id:
            self._find(rec, f"round ids must increase: round {rid} created after round {last.round_id}")
        if last is not None and last is not rnd and last.state not in TERMINAL:
            self._find(rec, f"round {rid} created while an earlier round was still open")
        final = self._last_finalized
        if final is not None and spec.get("base_model_hash") != final.finalized_hash:
            self._find(rec, f"round {rid} builds on {spec.get('base_model_hash')}, not the last finalized "
                            f"model {final.finalized_hash} (round {final.round_id})")
        model_spec = spec.get("model_spec") if isinstance(spec.get("model_spec"), dict) else {}
        hyper = spec.get("hyperparameters") if isinstance(spec.get("hyperparameters"), dict) else {}
        policy = spec.get("policy")
        policy = policy if isinstance(policy, dict) else self.result.default_policy
        rnd.created = {"time": when, "base_model_hash": spec.get("base_model_hash"), "tx_id": rec.info.tx_id,
                       "deadline": _number_or_none(spec.get("deadline")),
                       "param_count": _int_or_none(model_spec.get("param_count")),
                       "reference_sha256": hyper.get("reference_sha256"),
                       "cosine_enabled": policy.get("cosine_enabled", True) is not False,
                       "inference_enabled": policy.get("inference_enabled") is True,
                       "inference_batch": _int_or_none(policy.get("inference_batch")) or DEFAULT_INFERENCE_BATCH,
                       "validation_sha256": hyper.get("validation_sha256"),
                       "n_classes": _int_or_none(model_spec.get("n_classes")),
                       "in_channels": _int_or_none(model_spec.get("in_channels"))}
        rnd.state = "OPEN"
        self._last_created = rnd
        if rnd.created["inference_enabled"] and not rnd.created["validation_sha256"]:
            self._find(rec, f"round {rid} enables the encrypted-inference check (policy inference_enabled) but "
                            f"declares no hyperparameters.validation_sha256")
        deadline, stamp = rnd.created["deadline"], _ts(rec)
        if deadline is not None and stamp is not None and deadline <= stamp:
            self._find(rec, f"round {rid} created with deadline {iso(deadline)}, not after its transaction time "
                            f"{iso(stamp)}")
        # the round's privacy floor as the chaincode fixes it: the round policy's, else the consortium's
        floor = self.result.min_accepted or DEFAULT_MIN_ACCEPTED
        own = _int_or_none(policy.get("min_accepted"))
        if own is not None and own < floor:
            self._find(rec, f"round {rid}'s policy.min_accepted {own} is below the consortium's minimum {floor}")
        rnd.min_accepted = floor if own is None or own < floor else own
        rnd.min_updates = _int_or_none(spec.get("min_updates"))

    def _round_arg(self, rec: TxRecord) -> RoundAudit | None:
        """The round named by the transaction's first argument; a finding (and None) when it names none."""
        rid = _round_id(rec)
        if rid is None:
            self._find(rec, f"{rec.info.function} without a round id")
            return None
        return self._round(rid)

    def _check_publication(self, rec: TxRecord, rnd: RoundAudit, what: str, hash_field: str, again: bool,
                           got: str | None, want: str | None) -> None:
        """The contract's rules for a public input CreateRound declared (reference, validation batch): OPEN,
        or CLOSED until a node attests (the hash was fixed by CreateRound); once; the declared bytes."""
        rid = rnd.round_id
        if rnd.state not in ("OPEN", "CLOSED") or rnd.attestations:
            self._find(rec, f"{what} published for round {rid} while {rnd.state}"
                            f"{' after an attestation' if rnd.attestations else ''}")
        if again:
            self._find(rec, f"{what} of round {rid} published twice")
        if not want:
            self._find(rec, f"{what} published for round {rid}, which declares no hyperparameters.{hash_field}")
        elif got != want:
            self._find(rec, f"{what} published for round {rid} hashes to {got}, not the round's declared "
                            f"{hash_field} {want}")

    def _judged_without(self, rnd: RoundAudit, flag: str, published: object, message: str) -> None:
        """A finding when a round whose policy sets `flag` was attested with judged updates (not only
        unjudged rejections such as a missing share) but its public input was never published."""
        if rnd.round_id <= 0 or not (rnd.created or {}).get(flag) or not rnd.attestations or published is not None:
            return
        judged = any(a["key"][1] or any(r not in UNJUDGED_REASONS for r in a["rejected"].values())
                     for a in rnd.attestations.values())
        if judged:
            first = min(rnd.attestations.values(), key=lambda a: a["block"])
            self.result.findings.append(Finding(first["block"], first["tx_id"], message))

    def _on_PublishReference(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        rnd = self._round_arg(rec)
        if rnd is None:
            return
        rid = rnd.round_id
        data = _b64(rec.info.args[1]) if len(rec.info.args) > 1 else None
        got = sha256_hex(data) if data is not None else None
        created = rnd.created or {}
        want, param_count = created.get("reference_sha256"), created.get("param_count")
        self._check_publication(rec, rnd, "reference", "reference_sha256", rnd.reference is not None, got, want)
        if data is not None and param_count is not None and len(data) != 4 * param_count:
            self._find(rec, f"reference of round {rid} has {len(data)} bytes; a float32 vector of {param_count} "
                            f"parameters has {4 * param_count}")
        if rnd.reference is None:
            rnd.reference = {"sha256": got, "tx_id": rec.info.tx_id, "matches": bool(want) and got == want}

    def _check_reference_used(self, rnd: RoundAudit) -> None:
        """Cosine verdicts are only as good as the reference they compared with: it must be on the ledger
        (a round whose every update was rejected unjudged, e.g. no reference declared, had no cosine verdicts)."""
        self._judged_without(rnd, "cosine_enabled", rnd.reference, (
            f"round {rnd.round_id} checks cosine similarity (policy cosine_enabled) and was attested, but no "
            f"reference was published for it: its cosine verdicts had no audited reference"))

    def _on_PublishValidationBatch(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        """Like PublishReference; the bytes must also be a canonical batch the round's model can be run on."""
        rnd = self._round_arg(rec)
        if rnd is None:
            return
        rid = rnd.round_id
        data = _b64(rec.info.args[1]) if len(rec.info.args) > 1 else None
        got = sha256_hex(data) if data is not None else None
        created = rnd.created or {}
        want = created.get("validation_sha256")
        self._check_publication(rec, rnd, "validation batch", "validation_sha256", rnd.validation is not None,
                                got, want)
        batch = None
        if data is not None:
            batch, problem = _decode_batch(data, created)
            if problem:
                self._find(rec, f"validation batch of round {rid} is not usable: {problem}")
        if rnd.validation is None:
            rnd.validation = {"sha256": got, "tx_id": rec.info.tx_id, "matches": bool(want) and got == want,
                              "batch": batch}

    def _check_validation_used(self, rnd: RoundAudit) -> None:
        """Inference verdicts are only as good as the batch they ran on: it must be on the ledger."""
        self._judged_without(rnd, "inference_enabled", rnd.validation, (
            f"round {rnd.round_id} runs the encrypted-inference check (policy inference_enabled) and was "
            f"attested, but no validation batch was published for it: its inference verdicts had no audited "
            f"batch"))

    # --- updates and closing ------------------------------------------------------------------
    def _on_SubmitUpdate(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        who = self._who
        u = _json_arg(rec, 0) or {}
        rnd = self._round(int(u.get("round_id", -1)))
        rid = rnd.round_id
        if rnd.state != "OPEN":
            self._find(rec, f"update committed to round {rid} while {rnd.state}")
        if who.name in rnd.updates:
            self._find(rec, f"second update by the same hospital in round {rid}")
        rnd.updates[who.name] = {"time": when, "tx_id": rec.info.tx_id, "share_hashes": u.get("share_hashes")}
        self._check_update_fields(rec, rnd, who, u)
        self._check_update_time(rec, rnd, who)

    def _check_update_fields(self, rec: TxRecord, rnd: RoundAudit, who: Caller, u: dict[str, Any]) -> None:
        n_samples, dim = _int_or_none(u.get("n_samples")), _int_or_none(u.get("dim"))
        cap = _int_or_none((who.participant or {}).get("sample_cap"))
        if n_samples is None or n_samples < 1:
            self._find(rec, f"update by {who.name} to round {rnd.round_id} has no valid n_samples "
                            f"({str(u.get('n_samples'))[:20]})")
        elif cap is not None and n_samples > cap:
            self._find(rec, f"update by {who.name} to round {rnd.round_id} claims n_samples {n_samples}, above its "
                            f"enrolment sample_cap {cap}")
        param_count = (rnd.created or {}).get("param_count")
        if param_count is not None and dim != param_count:
            self._find(rec, f"update by {who.name} to round {rnd.round_id} has dim {u.get('dim')}, the round's "
                            f"model_spec.param_count is {param_count}")

    def _check_update_time(self, rec: TxRecord, rnd: RoundAudit, who: Caller) -> None:
        deadline, stamp = (rnd.created or {}).get("deadline"), _ts(rec)
        if deadline is None or stamp is None:
            return
        if stamp >= deadline:
            self._find(rec, f"update by {who.name} to round {rnd.round_id} stamped {iso(stamp)}, at or after the "
                            f"round's deadline {iso(deadline)}")
            return
        w = self._witness
        limit = deadline + self.result.max_clock_skew_s
        if w is not None and (seen := _ts(w)) is not None and seen >= limit:
            self._find(rec, f"update by {who.name} to round {rnd.round_id} committed after the round's deadline: "
                            f"block {w.block} already held tx {w.info.tx_id} stamped {iso(seen)}, at or after the "
                            f"deadline {iso(deadline)} + max_clock_skew_s {self.result.max_clock_skew_s} s; the "
                            f"update (stamped {iso(stamp)}) was back-dated")

    def _on_CloseRound(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        who = self._who
        rnd = self._round_arg(rec)
        if rnd is None:
            return
        rid = rnd.round_id
        if rnd.state != "OPEN":
            self._find(rec, f"round {rid} closed while {rnd.state}")
        self._check_close_time(rec, rnd, who)
        rnd.closed, rnd.state = {"time": when, "tx_id": rec.info.tx_id}, "CLOSED"

    def _check_close_time(self, rec: TxRecord, rnd: RoundAudit, who: Caller) -> None:
        """Operators close any time; MPC nodes from the deadline; anyone else from deadline + the clock skew,
        so that a forward-dated proposal cannot close a round before its deadline."""
        deadline, stamp = (rnd.created or {}).get("deadline"), _ts(rec)
        if who.role == "operator" or deadline is None or stamp is None:
            return
        skew = 0 if who.role == "mpc_node" else self.result.max_clock_skew_s
        if stamp < deadline + skew:
            rule = "the deadline" if who.role == "mpc_node" else f"the deadline + max_clock_skew_s {skew} s"
            self._find(rec, f"early close: {who.name} ({who.role}) closed round {rnd.round_id} at {iso(stamp)}, before "
                            f"{rule} ({iso(deadline + skew)}); only operators may close a round early")

    # --- attestations and models ----------------------------------------------------------------
    def _on_AttestResult(self, rec: TxRecord, when: str | None) -> None:  # noqa: N802
        who = self._who
        a = _json_arg(rec, 0) or {}
        rnd = self._round(int(a.get("round_id", -1)))
        node = who.name
        if rnd.state not in ("CLOSED", "FINALIZED", "FAILED", "DISPUTED"):
            self._find(rec, f"attestation for round {rnd.round_id} while {rnd.state}")
        if node in rnd.attestations:
            self._find(rec, f"node attested round {rnd.round_id} twice")
        outcome = a.get("outcome") or "ok"
        accepted = a.get("accepted") or []
        self._check_claim(rec, rnd, a.get("model_hash"), accepted, outcome)
        key = (a.get("model_hash"), tuple(sorted(accepted)), outcome)
        rnd.attestations[node] = {"key": key, "rejected": a.get("rejected") or {}, "time": when,
                                  "block": rec.block, "tx_id": rec.info.tx_id}
        if rnd.state == "CLOSED":
            keys = [x["key"] for x in rnd.attestations.values()]
            if len(set(keys)) > 1:
                rnd.state, rnd.reason = "DISPUTED", DISPUTE_DIFFER
            elif self.result.quorum and keys.count(key) >= self.result.quorum:
                rnd.outcome = outcome
                rnd.accepted, rnd.rejected = list(key[1]), dict(a.get("rejected") or {})
                if outcome == "ok":
                    rnd.state, rnd.finalized_hash = "FINALIZED", key[0]
                    if self._last_finalized is None or rnd.round_id > self._last_finalized.round_id:
                        self._last_finalized = rnd
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
        rnd = self._round_arg(rec)
        if rnd is None:
            return
        rid = rnd.round_id
        digest = _model_hash(rec.info.args[1]) if len(rec.info.args) > 1 else None
        if rnd.state != "FINALIZED":
            self._find(rec, f"model published for round {rid} while {rnd.state}")
        elif digest != rnd.finalized_hash:
            self._find(rec, f"published model of round {rid} hashes to {digest}, attested {rnd.finalized_hash}")
        if rnd.published_hash is None:
            rnd.published_hash = digest


def _decode_batch(data: bytes, created: dict[str, Any]) -> tuple[int | None, str | None]:
    """(images in the batch, None) or (None, why it is no canonical batch for the round's model)."""
    from types import SimpleNamespace

    from fedchain.validation_batch import ValidationBatchError, decode

    n_classes, channels = created.get("n_classes"), created.get("in_channels")
    spec: Any = n_classes
    if n_classes is not None and channels is not None:
        spec = SimpleNamespace(n_classes=n_classes, in_channels=channels)
    size = int(created.get("inference_batch") or DEFAULT_INFERENCE_BATCH)
    try:
        _, labels = decode(data, spec, max_batch=size)
    except ValidationBatchError as exc:
        return None, str(exc)
    if created.get("inference_enabled") and len(labels) != size:
        return len(labels), f"it has {len(labels)} images, the round's policy.inference_batch is {size}"
    return len(labels), None


def _round_id(rec: TxRecord) -> int | None:
    try:
        return int(rec.info.args[0])
    except (IndexError, ValueError):
        return None
