"""The federated-learning contract: the consortium's source of truth (DESIGN.md sections 2.2-2.3).

Entry point: `fedchain_cc.fl.contract:FLContract`. Every argument is a JSON string (or a bare
round id / participant id); every result is canonical JSON (`fedchain_cc.canonical`: UTF-8).

Modules (one concern each; `FLContract` is the one class the server registers):
- `contract`: FLContract = the transaction groups below + the shim's `Contract` (one dispatcher,
  one `transaction` decorator, one `ContractError`), the FL error wording and the `Tx` context.
- `consortium`: InitConsortium, GetConsortium, RegisterParticipant, GetParticipant, ListParticipants.
- `blobs`: chunked storage; PublishGenesisModel, PublishModel, GetModel, PublishReference,
  GetReference, PublishValidationBatch, GetValidationBatch.
- `rounds`: CreateRound, GetRound, ListRounds, CloseRound (who may close when).
- `updates`: SubmitUpdate, GetUpdates.    `attestation`: AttestResult and finalization.
- `history`: GetHistory.    `tx`: the per-transaction context (buffered writes, caller, records).
- `validate`: argument checks.    `rules`: roles, states, limits, events.    `keys`: the key layout.
Why mixins: the shim's `Contract` collects `@transaction` methods along the MRO, so each group is a
plain class in its own module and `FLContract` just lists them: no second registry to keep in step.
Groups share functions and `Tx`, never state.

Roles and bindings
- A caller is a participant when its (MSP id, Fabric client id "x509::<subject>::<issuer>") is
  registered on the ledger AND its certificate's `fedchain.role` attribute equals the registered
  role. Both must agree: the CA vouches for the role, the consortium decides who takes part.
- InitConsortium(config) is called once by an identity whose certificate role is `operator`; it
  registers that caller as operator `config.operator_id` (default "operator") and every MPC node of
  `config.mpc_nodes` (role mpc_node, node_index = position: share_hashes[j] belongs to node j).
  config = {"mpc_nodes": [{"id", "msp_id", "identity"}...], "threshold": t (1 <= t, 2t < m),
  "quorum": q (t+1 <= q <= m), "default_policy": {...}, "max_model_bytes": N (<= 6 MiB),
  "min_accepted"? (1..10000, default 3), "name"?, "operator_id"?}. min_accepted is the privacy floor:
  the MPC nodes never open an aggregate of fewer accepted updates (the aggregate of one update IS that
  update). It is stored in the consortium record; a default_policy.min_accepted below it is refused.
- RegisterParticipant({"id", "role", "msp_id", "identity", "sample_cap" (hospitals only)}) by an
  operator; roles hospital, auditor, operator. MPC nodes are fixed at InitConsortium.
- Queries need a registered caller of any role. Participant ids match [A-Za-z0-9_.-]{1,64}.

Rounds: OPEN -> CLOSED -> FINALIZED | FAILED | DISPUTED (all three terminal; round 0 = genesis,
FINALIZED at birth). Only FINALIZED moves the head model; after FAILED or DISPUTED the next round
builds on the last finalized model.
- PublishGenesisModel(spec, model_b64) (operator, once): spec is a JSON object with param_count.
- CreateRound({"round_id", "base_model_hash", "model_spec" {param_count,...}, "hyperparameters"?,
  "policy"? (default: consortium default_policy), "deadline" (unix s), "min_updates"}) by an
  operator: ids strictly increase, one round at a time (the previous one FINALIZED, FAILED or
  DISPUTED), base = the last finalized model, whose bytes must be published, param_count unchanged.
  The stored policy always has "min_accepted": the consortium's when the policy has none; a policy
  min_accepted that is not an integer or is below the consortium's is refused (400).
- SubmitUpdate({"round_id", "share_hashes" [m hex], "n_samples" (<= sample_cap), "dim"}) by a
  registered hospital, once per round, while OPEN and while tx time < deadline.
- CloseRound(round_id): operator any time, any registered participant once tx time >= deadline.
  Records the submitted hospital ids.
- AttestResult({"round_id", "model_hash", "accepted" [ids], "rejected" {id: reason code},
  "report_hash", "outcome"?}) by an MPC node, once per node per round, when CLOSED (or FINALIZED /
  FAILED: a late node's attestation is recorded; if its claim differs it is listed in
  round.dissent). accepted and rejected must partition exactly the submitted hospitals.
  outcome (default "ok"):
    "ok"                     the aggregate of the accepted updates was opened: needs at least the
                             round's policy.min_accepted accepted updates;
    "too_few_accepted"       fewer than policy.min_accepted accepted: the nodes did not open it;
    "aggregate_out_of_range" the opened aggregate failed the nodes' sanity check: not published.
  Any outcome but "ok" publishes no model: model_hash must equal the round's base_model_hash.
  If fewer than min_updates are accepted the model must stay the base model. The claim compared
  between nodes is (model_hash, accepted set, outcome). When q nodes make the same claim:
    "ok"                     -> FINALIZED (finalized = claim + rejected + report_hash; head moves);
    "too_few_accepted"       -> FAILED, failure_reason "too_few_accepted", agreed = the claim
                                (+ rejected, report_hash); event RoundFailed; head unchanged;
    "aggregate_out_of_range" -> DISPUTED, dispute_reason "aggregate_out_of_range", agreed = the
                                claim; event RoundDisputed; head unchanged.
  Any two differing claims before that make it DISPUTED with dispute_reason "attestations differ"
  (deterministic honest nodes never differ). Attestation records store the outcome.
  An unchanged model (= base) is "published" at finalization by pointing at the stored bytes.
- PublishModel(round_id, model_b64) by an MPC node after finalization: kept only if its SHA-256
  equals the finalized hash and its size is within max_model_bytes; stored in 1 MiB chunks.

- PublishReference(round_id, reference_b64) by an operator while the round is OPEN (or CLOSED before
  any attestation: the hash was fixed at CreateRound): the FLTrust
  reference update (float32 little-endian vector of param_count values) whose SHA-256 the round
  declared in hyperparameters.reference_sha256; GetReference(round_id) returns it. MPC nodes use it
  for the cosine check; auditors can recompute it from the public root dataset.
- PublishValidationBatch(round_id, validation_b64) by an operator, under the same rules (OPEN, or
  CLOSED before any attestation; once): the public validation batch of the encrypted-inference
  check (fedchain.validation_batch: safetensors with exactly images uint8 B x 28 x 28 [x 3] and
  labels int64 B, B = policy.inference_batch (default 32) when the policy enables the check, at most
  that otherwise) whose SHA-256 the round declared in
  hyperparameters.validation_sha256; size at most max_model_bytes and what B images can take.
  CreateRound refuses a policy with inference_enabled (a boolean) and no validation_sha256, and a
  validation_sha256 that is not a lowercase hex SHA-256. GetValidationBatch(round_id) ->
  {round_id, sha256, size, batch, validation_b64}. MPC nodes run the check on it; auditors can
  redraw it from the root set.

Queries: GetConsortium (config + head pointer), GetParticipant(id), ListParticipants([role]),
GetRound(id), ListRounds, GetUpdates(round_id), GetModel(round_id) -> {sha256, size, model_spec,
model_b64}, GetReference(round_id), GetValidationBatch(round_id), GetHistory(kind, id) with kind in
round | participant | update ("round/hospital") | model | consortium | attestation ("round/node id")
-> [{tx_id, timestamp, is_delete, creator, function, value}], newest first (Fabric 2.x order).
Every stored record carries last_tx_creator {msp_id, participant} and last_tx_function, so the
history shows who did what.

Events (one per transaction): RoundCreated, UpdateSubmitted, RoundClosed, RoundFinalized,
RoundDisputed {round_id, reason, attestations}, RoundFailed {round_id, reason, accepted, rejected};
payload JSON with round_id.

MVCC: hospitals write only update~round~hospital (plus reads), so concurrent submissions never
conflict; round records and the head pointer are written only by operators and MPC nodes.
Every AttestResult writes the round record, so concurrent attestations conflict on MVCC and a
retried one sees the others: MPC nodes retry on MVCC_READ_CONFLICT / PHANTOM_READ_CONFLICT.
Key layout: see fedchain_cc.fl.keys.

Determinism: time is the transaction timestamp; JSON is written canonically (sorted keys);
lists are sorted; no randomness, wall clock or dict-order dependence.

Errors: "<Function>: <what is wrong>" with status 400 (bad input), 403 (not allowed),
404 (missing), 409 (wrong state); nothing is written unless the whole call succeeds.
"""

from fedchain_cc.fl.contract import EVENTS, FLContract

__all__ = ["EVENTS", "FLContract"]
