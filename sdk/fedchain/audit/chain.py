"""Re-validate a channel's blocks from outside: hash chain, signatures, policy, MVCC replay.

An auditor should not believe a peer's validation flags: every transaction's creator and
endorser signatures are checked against the channel's MSPs (from block 0), the endorsement
policy is re-evaluated, and the read/write sets are replayed so that a VALID flag on a
transaction whose reads were stale (or an MVCC_READ_CONFLICT flag on one whose reads were
fresh) is reported.

The policy is the one Fabric applies to the transaction: the FL chaincode's (the auditor's
--policy), `_lifecycle` ApproveChaincodeDefinitionForMyOrg under the approving org's
`Endorsement`, other `_lifecycle` functions (CommitChaincodeDefinition) under the channel's
`LifecycleEndorsement`, any other chaincode under the channel's `Endorsement` policy.
Trusted checkpoints (block number -> header hash an auditor recorded earlier) catch a ledger
that was rewritten or rolled back since.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.message import DecodeError

from fedchain.audit.channel_config import ChannelOrgs, channel_orgs
from fedchain.audit.policy import DEFAULT_ENDORSEMENT, Policy, Signer, peer_of
from fedchain.identity import Identity, IdentityError, MSPManager, certs
from fedchain.ledger import (
    ChainError,
    TxInfo,
    TxParseError,
    block_header_bytes,
    block_header_hash,
    parse_envelope,
    tx_validation_codes,
    validation_code_name,
    verify_block,
)

VALID = transaction_pb2.TxValidationCode.Value("VALID")
MVCC_READ_CONFLICT = transaction_pb2.TxValidationCode.Value("MVCC_READ_CONFLICT")
SIGNATURES = common_pb2.BlockMetadataIndex.Value("SIGNATURES")
LIFECYCLE = "_lifecycle"
APPROVE = "ApproveChaincodeDefinitionForMyOrg"
IMPLICIT_ORG = "_implicit_org_"


@dataclass
class Finding:
    block: int
    tx_id: str
    problem: str

    def as_dict(self) -> dict:
        return {"block": self.block, "tx_id": self.tx_id, "problem": self.problem}


@dataclass
class TxRecord:
    block: int
    index: int
    info: TxInfo
    code: int

    @property
    def code_name(self) -> str:
        return validation_code_name(self.code)


@dataclass
class ChainAudit:
    height: int = 0
    head_hash: str = ""
    transactions: list[TxRecord] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    codes: dict[str, int] = field(default_factory=dict)
    orgs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # defaults the audit had to assume
    checkpoints: dict[int, str] = field(default_factory=dict)  # trusted block -> header hash, as checked

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict:
        return {
            "height": self.height, "head_hash": self.head_hash, "transactions": len(self.transactions),
            "validation_codes": dict(sorted(self.codes.items())), "application_orgs": self.orgs,
            "checkpoints": {str(n): h for n, h in sorted(self.checkpoints.items())}, "notes": self.notes,
            "findings": [f.as_dict() for f in self.findings], "ok": self.ok,
            "invalid": self.invalid_transactions(),
        }

    def invalid_transactions(self) -> list[dict]:
        """Every transaction the peers flagged invalid (nothing of it was written), for the report to explain."""
        return [{"block": r.block, "tx_id": r.info.tx_id, "code": r.code_name, "function": r.info.function,
                 "creator_msp_id": r.info.creator_msp_id} for r in self.transactions if r.code_name != "VALID"]


def policy_satisfied(policy: str | list[str], endorsing_orgs: set[str], all_orgs: list[str]) -> bool:
    """The auditor's --policy for the FL chaincode: MAJORITY/ANY/ALL of the channel's orgs, or every listed MSP."""
    if isinstance(policy, list):
        return set(policy) <= endorsing_orgs
    members = endorsing_orgs & set(all_orgs)
    if policy == "ANY":
        return len(members) >= 1
    if policy == "ALL":
        return members == set(all_orgs)
    if policy == "MAJORITY":
        return len(members) > len(all_orgs) // 2
    raise ValueError(f"unknown endorsement policy {policy!r}")


def implicit_collection_orgs(info: TxInfo) -> set[str]:
    """MSP ids whose implicit `_lifecycle` collection (`_implicit_org_<MSP>`) the transaction writes:
    whose approval it records, hence whose Endorsement policy Fabric applies."""
    try:
        action = proposal_pb2.ChaincodeAction.FromString(
            proposal_response_pb2.ProposalResponsePayload.FromString(info.proposal_response_payload).extension)
        rwset = rwset_pb2.TxReadWriteSet.FromString(action.results)
    except DecodeError:  # undecodable: the creator's org decides (see ChainAuditor._channel_policies)
        return set()
    return {c.collection_name.removeprefix(IMPLICIT_ORG) for ns in rwset.ns_rwset if ns.namespace == LIFECYCLE
            for c in ns.collection_hashed_rwset if c.collection_name.startswith(IMPLICIT_ORG)}


def parse_checkpoint(text: str) -> tuple[int, str]:
    """'N:HASH' (block number, hex header hash) -> (N, hash); ValueError with a readable reason."""
    number, sep, digest = text.strip().partition(":")
    if not sep or not number.strip().isdigit():
        raise ValueError(f"{text!r} is not N:HASH (a block number, a colon, the block's header hash in hex)")
    digest = digest.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{text!r}: the hash must be 64 hex digits (SHA-256 of the block header)")
    return int(number), digest


class ChainAuditor:
    """Feed blocks in order (from 0); findings accumulate instead of stopping at the first.

    `policies`: chaincode name -> MAJORITY | ANY | ALL | [MSP ids] (orgs with a peer endorsement);
    chaincodes not named there are checked under the channel's own policies (see the module doc).
    `checkpoints`: block number -> hex header hash the auditor trusts.
    """

    def __init__(self, policies: dict[str, str | list[str]] | None = None,
                 checkpoints: Mapping[int, str] | None = None) -> None:
        self.policies = policies or {}
        self.result = ChainAudit(checkpoints=dict(checkpoints or {}))
        self._prev: common_pb2.Block | None = None
        self._orgs: ChannelOrgs | None = None
        self._mgr: MSPManager | None = None
        self._signers: dict[bytes, Signer] = {}
        self._notes: set[str] = set()
        self._versions: dict[tuple[str, str], tuple[int, int]] = {}
        self._tx_ids: set[str] = set()

    def feed_all(self, blocks: Iterable[common_pb2.Block | bytes]) -> ChainAudit:
        for block in blocks:
            self.feed(block)
        return self.finish()

    def finish(self) -> ChainAudit:
        """After the last block: checkpoints beyond the head, and the notes. feed_all calls it."""
        for number, digest in sorted(self.result.checkpoints.items()):
            if number >= self.result.height:
                self._find(number, "", f"the chain has {self.result.height} block(s) but the trusted checkpoint is "
                                       f"block {number} ({digest[:16]}…): the ledger is behind the trusted "
                                       f"checkpoint: rolled back?")
        self.result.notes = sorted(self._notes)
        return self.result

    def feed(self, block: common_pb2.Block | bytes) -> None:
        if isinstance(block, (bytes, bytearray)):
            block = common_pb2.Block.FromString(block)
        number = block.header.number
        try:
            verify_block(block, self._prev)
        except ChainError as exc:
            self._find(number, "", str(exc))
        if self._prev is None and number != 0:
            self._find(number, "", "audit must start at block 0 (the channel config)")
        self._prev = block
        self.result.height = number + 1
        self.result.head_hash = block_header_hash(block.header).hex()
        self._check_checkpoint(number)
        if number == 0:
            try:
                self._orgs = channel_orgs(block)
                self._mgr = self._orgs.msp_manager()
                self.result.orgs = self._orgs.application_msp_ids
            except ValueError as exc:
                self._find(0, "", f"cannot read the channel's organisations: {exc}")
            return
        self._check_block_signature(block)
        try:
            codes = tx_validation_codes(block)
        except ChainError as exc:
            self._find(number, "", str(exc))
            return
        for index, (raw, code) in enumerate(zip(block.data.data, codes, strict=True)):
            self._check_tx(number, index, raw, code)

    # --- checks --------------------------------------------------------------
    def _find(self, block: int, tx_id: str, problem: str) -> None:
        self.result.findings.append(Finding(block, tx_id, problem))

    def _check_checkpoint(self, number: int) -> None:
        want = self.result.checkpoints.get(number)
        if want is not None and want != self.result.head_hash:
            self._find(number, "", f"block {number} has header hash {self.result.head_hash}, the trusted checkpoint "
                                   f"says {want}: the ledger forked or was rewritten before block {number}")

    def _check_block_signature(self, block: common_pb2.Block) -> None:
        if self._orgs is None or self._mgr is None or not self._orgs.orderer:
            return
        meta = block.metadata.metadata
        if len(meta) <= SIGNATURES or not meta[SIGNATURES]:
            self._find(block.header.number, "", "block carries no orderer signature")
            return
        md = common_pb2.Metadata.FromString(meta[SIGNATURES])
        mgr = self._mgr
        orderer_ids = {m.msp_id for m in self._orgs.orderer}
        for sig in md.signatures:
            shdr = common_pb2.SignatureHeader.FromString(sig.signature_header)
            data = bytes(md.value) + bytes(sig.signature_header) + block_header_bytes(block.header)
            try:
                ident = mgr.verify(shdr.creator, bytes(sig.signature), data)
            except IdentityError as exc:
                self._find(block.header.number, "", f"orderer signature: {exc}")
                continue
            if ident.msp_id in orderer_ids:
                return
        self._find(block.header.number, "", "no valid signature by an orderer organisation")

    def _check_tx(self, number: int, index: int, raw: bytes, code: int) -> None:
        self.result.codes[validation_code_name(code)] = self.result.codes.get(validation_code_name(code), 0) + 1
        try:
            info = parse_envelope(raw)
        except TxParseError as exc:
            if code == VALID:
                self._find(number, "", f"transaction {index} flagged VALID but does not parse: {exc}")
            return
        self.result.transactions.append(TxRecord(number, index, info, code))
        if code != VALID:
            if code == MVCC_READ_CONFLICT and self._reads_fresh(info):
                self._find(number, info.tx_id, "flagged MVCC_READ_CONFLICT but its reads were current")
            self._tx_ids.add(info.tx_id)
            return
        if info.tx_id in self._tx_ids:
            self._find(number, info.tx_id, "duplicate transaction id flagged VALID")
        self._tx_ids.add(info.tx_id)
        if self._orgs is None or self._mgr is None:
            return
        try:
            self._mgr.verify(info.creator, info.signature, info.signed_payload)
        except IdentityError as exc:
            self._find(number, info.tx_id, f"creator: {exc}")
        signers = self._endorsers(number, info)
        if info.type_name == "ENDORSER_TRANSACTION":
            self._check_policy(number, info, signers)
        if not self._reads_fresh(info):
            self._find(number, info.tx_id, "flagged VALID but read a stale version (MVCC replay)")
        for ns in info.rwset:
            for w in ns.writes:
                if w.is_delete:
                    self._versions.pop((ns.namespace, w.key), None)
                else:
                    self._versions[(ns.namespace, w.key)] = (number, index)

    def _endorsers(self, number: int, info: TxInfo) -> list[Signer]:
        """Endorsers whose signature verifies and who are peers (a finding names any other)."""
        assert self._mgr is not None
        out: list[Signer] = []
        for e in info.endorsements:
            try:
                ident = self._mgr.verify(e.endorser, e.signature, e.signed_data)
            except IdentityError as exc:
                self._find(number, info.tx_id, f"endorsement: {exc}")
                continue
            signer = self._signer(e.endorser, ident)
            if signer.node_ou != "peer":
                self._find(number, info.tx_id, f"endorsement by {ident.common_name}, which is not a peer")
                continue
            out.append(signer)
        return out

    def _signer(self, serialized: bytes, ident: Identity) -> Signer:
        """Cached per identity: reading OUs out of a certificate costs more than verifying a signature."""
        signer = self._signers.get(serialized)
        if signer is None:
            assert self._mgr is not None
            ous = frozenset(certs.ou_of(ident.certificate))
            signer = self._signers[serialized] = Signer(ident.msp_id, self._mgr.node_ou(ident), ous, serialized)
        return signer

    def _check_policy(self, number: int, info: TxInfo, signers: list[Signer]) -> None:
        assert self._orgs is not None
        orgs = sorted({s.msp_id for s in signers})
        rule = self.policies.get(info.chaincode)
        if rule is not None:  # the FL chaincode: the auditor's --policy over orgs with a peer endorsement
            if not policy_satisfied(rule, set(orgs), self._orgs.application_msp_ids):
                self._find(number, info.tx_id, f"flagged VALID but endorsed by {orgs}: does not satisfy {rule}")
            return
        for name, policy in self._channel_policies(info):
            if not self._orgs.policies.satisfied(policy, signers, self._orgs.application_msp_ids, self._notes):
                self._find(number, info.tx_id, f"{info.chaincode} {info.function} flagged VALID but endorsed by "
                                               f"{orgs}: does not satisfy {name} ({policy.describe()})")

    def _channel_policies(self, info: TxInfo) -> list[tuple[str, Policy]]:
        """The policies Fabric validates this (non-FL) transaction under, from the config block."""
        assert self._orgs is not None
        app = self._orgs.policies
        if info.chaincode == LIFECYCLE and info.function == APPROVE:
            out: list[tuple[str, Policy]] = []
            for org in sorted(implicit_collection_orgs(info) or {info.creator_msp_id}):
                policy = app.org_policy(org)
                if policy is None:
                    policy = peer_of(org)
                    self._notes.add(f"the config block has no /Channel/Application/{org}/Endorsement policy: "
                                    f"used {policy.describe()} (Fabric's usual one)")
                out.append((f"/Channel/Application/{org}/Endorsement", policy))
            return out
        name = "LifecycleEndorsement" if info.chaincode == LIFECYCLE else "Endorsement"
        policy = app.group.get(name)
        if policy is None:
            policy = DEFAULT_ENDORSEMENT
            self._notes.add(f"the config block has no /Channel/Application/{name} policy: used "
                            f"{policy.describe()} (Fabric's default) for {info.chaincode} transactions")
        return [(f"/Channel/Application/{name}", policy)]

    def _reads_fresh(self, info: TxInfo) -> bool:
        return all(
            self._versions.get((ns.namespace, r.key)) == r.version for ns in info.rwset for r in ns.reads
        )
