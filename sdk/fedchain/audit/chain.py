"""Re-validate a channel's blocks from outside: hash chain, signatures, policy, MVCC replay.

An auditor should not believe a peer's validation flags: every transaction's creator and
endorser signatures are checked against the channel's MSPs (from block 0), the endorsement
policy is re-evaluated, and the read/write sets are replayed so that a VALID flag on a
transaction whose reads were stale (or an MVCC_READ_CONFLICT flag on one whose reads were
fresh) is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2
from fabric_protos.peer import transaction_pb2

from fedchain.audit.channel_config import ChannelOrgs, channel_orgs
from fedchain.identity import IdentityError
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

    @property
    def ok(self) -> bool:
        return not self.findings

    def summary(self) -> dict:
        return {
            "height": self.height, "head_hash": self.head_hash, "transactions": len(self.transactions),
            "validation_codes": dict(sorted(self.codes.items())), "application_orgs": self.orgs,
            "findings": [f.as_dict() for f in self.findings], "ok": self.ok,
        }


def policy_satisfied(policy: str | list[str], endorsing_orgs: set[str], all_orgs: list[str]) -> bool:
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


class ChainAuditor:
    """Feed blocks in order (from 0); findings accumulate instead of stopping at the first."""

    def __init__(self, policies: dict[str, str | list[str]] | None = None, default_policy: str = "MAJORITY"):
        self.policies = policies or {}
        self.default_policy = default_policy
        self.result = ChainAudit()
        self._prev: common_pb2.Block | None = None
        self._orgs: ChannelOrgs | None = None
        self._versions: dict[tuple[str, str], tuple[int, int]] = {}
        self._tx_ids: set[str] = set()

    def feed_all(self, blocks: Iterable[common_pb2.Block | bytes]) -> ChainAudit:
        for block in blocks:
            self.feed(block)
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
        if number == 0:
            try:
                self._orgs = channel_orgs(block)
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

    def _check_block_signature(self, block: common_pb2.Block) -> None:
        if self._orgs is None or not self._orgs.orderer:
            return
        meta = block.metadata.metadata
        if len(meta) <= SIGNATURES or not meta[SIGNATURES]:
            self._find(block.header.number, "", "block carries no orderer signature")
            return
        md = common_pb2.Metadata.FromString(meta[SIGNATURES])
        mgr = self._orgs.msp_manager()
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
        if self._orgs is None:
            return
        mgr = self._orgs.msp_manager()
        try:
            mgr.verify(info.creator, info.signature, info.signed_payload)
        except IdentityError as exc:
            self._find(number, info.tx_id, f"creator: {exc}")
        endorsing: set[str] = set()
        for e in info.endorsements:
            try:
                ident = mgr.verify(e.endorser, e.signature, e.signed_data)
            except IdentityError as exc:
                self._find(number, info.tx_id, f"endorsement: {exc}")
                continue
            if mgr.node_ou(ident) != "peer":
                self._find(number, info.tx_id, f"endorsement by {ident.common_name}, which is not a peer")
                continue
            endorsing.add(ident.msp_id)
        policy = self.policies.get(info.chaincode, self.default_policy)
        if info.type_name == "ENDORSER_TRANSACTION" and not policy_satisfied(
            policy, endorsing, self._orgs.application_msp_ids
        ):
            self._find(number, info.tx_id, f"flagged VALID but endorsed by {sorted(endorsing)}: "
                                           f"does not satisfy {policy}")
        if not self._reads_fresh(info):
            self._find(number, info.tx_id, "flagged VALID but read a stale version (MVCC replay)")
        for ns in info.rwset:
            for w in ns.writes:
                if w.is_delete:
                    self._versions.pop((ns.namespace, w.key), None)
                else:
                    self._versions[(ns.namespace, w.key)] = (number, index)

    def _reads_fresh(self, info: TxInfo) -> bool:
        return all(
            self._versions.get((ns.namespace, r.key)) == r.version for ns in info.rwset for r in ns.reads
        )
