"""What the explorer shows, read through the gateway: the FL contract's queries and qscc's blocks.

Blocks never change once committed, so each is fetched once and kept as a small summary (a block
that carries a multi-MB model is not kept whole). Everything else (rounds, participants) is asked
from the contract on each page view: those queries are cheap and always current. Nothing here
submits a transaction.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedchain.canonical import sha256_hex
from fedchain.fl_client import FLClient, ModelIntegrityError
from fedchain.gateway.errors import chaincode_refusal
from fedchain.records import FINALIZED, Consortium, Participant, Round, RoundId

# FL functions whose first argument names the round (as a JSON object or as a bare number)
_ROUND_IN_JSON = ("CreateRound", "SubmitUpdate", "AttestResult")
_ROUND_AS_ARG = ("CloseRound", "PublishModel", "PublishReference", "PublishValidationBatch")
_MODEL_PUBLISH = ("PublishModel", "PublishGenesisModel")


class NotFound(Exception):
    """The thing asked for is not on the ledger (a 404 for the page)."""


class IntegrityError(Exception):
    """Bytes from the ledger do not hash to the value the ledger recorded (a 502 for the page)."""


@dataclass(frozen=True)
class TxSummary:
    block: int
    index: int
    tx_id: str
    type_name: str
    code: str
    timestamp: float | None
    chaincode: str = ""
    function: str = ""
    round_id: RoundId | None = None
    creator_msp: str = ""
    creator_cn: str = ""
    creator_role: str | None = None
    endorsers: tuple[tuple[str, str], ...] = ()  # (MSP id, common name)
    model_sha256: str | None = None  # PublishModel / PublishGenesisModel: hash of the bytes in the transaction
    model_size: int | None = None

    @property
    def valid(self) -> bool:
        return self.code == "VALID"


@dataclass(frozen=True)
class BlockSummary:
    number: int
    header_hash: str
    previous_hash: str
    data_hash: str
    transactions: tuple[TxSummary, ...] = ()

    @property
    def timestamp(self) -> float | None:
        stamps = [t.timestamp for t in self.transactions if t.timestamp is not None]
        return max(stamps) if stamps else None


def _round_of(function: str, args: tuple[bytes, ...]) -> RoundId | None:
    """The round a transaction names (its arguments are whatever the client sent: any may be malformed)."""
    try:
        if function in _ROUND_IN_JSON and args:
            value = json.loads(args[0]).get("round_id")
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        if function in _ROUND_AS_ARG and args:
            return RoundId(int(args[0]))
        if function == "PublishGenesisModel":
            return RoundId(0)
    except (ValueError, AttributeError, TypeError):
        return None
    return None


def _model_digest(function: str, args: tuple[bytes, ...]) -> tuple[str | None, int | None]:
    if function not in _MODEL_PUBLISH or len(args) < 2:
        return None, None
    try:
        raw = base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        return None, None
    return sha256_hex(raw), len(raw)


@dataclass
class AuditRun:
    report: dict[str, Any]
    started: float
    seconds: float


@dataclass
class _Cache:
    blocks: dict[int, BlockSummary] = field(default_factory=dict)
    tx_index: dict[str, tuple[int, int]] = field(default_factory=dict)  # tx id -> (block, index)
    names: dict[bytes, tuple[str, str | None]] = field(default_factory=dict)  # cert PEM -> (CN, role)
    orgs: list[str] | None = None


class LedgerView:
    """The explorer's only access to the ledger: a gateway connection as one wallet identity."""

    def __init__(self, network_dir: str | Path | None, identity: str) -> None:
        from fedchain.netconfig import load_network

        self.config = load_network(network_dir)
        self.identity = identity
        self.gateway = self.config.connect(identity)
        self.network = self.gateway.network(self.config.channel)
        self.fl = FLClient(self.network.contract(self.config.chaincode))
        self._cache = _Cache()
        self._lock = threading.Lock()
        self._audit_lock = threading.Lock()
        self.last_audit: AuditRun | None = None

    def close(self) -> None:
        self.gateway.close()

    # ------------------------------------------------------------------ contract
    def consortium(self) -> Consortium:
        return self.fl.get_consortium()

    def network_info(self) -> dict[str, Any]:
        """What the consortium page shows besides the ledger's record: the channel's organisations and how
        this explorer reaches the network."""
        return {"orgs": self.orgs(), "channel": self.config.channel, "chaincode": self.config.chaincode,
                "gateway": self.config.gateway.endpoint, "kind": self.config.kind, "viewer": self.identity}

    def participants(self) -> list[Participant]:
        return sorted(self.fl.list_participants(), key=lambda p: (p.role, _natural(p.id)))

    def rounds(self) -> list[Round]:
        return sorted(self.fl.list_rounds(), key=lambda r: r.round_id)

    def round(self, round_id: RoundId) -> dict[str, Any]:
        """The round record, its updates and every transaction that named it (valid or not)."""
        rnd = next((r for r in self.rounds() if r.round_id == round_id), None)
        if rnd is None:
            raise NotFound(f"there is no round {round_id} on the ledger")
        updates = self.fl.get_updates(round_id) if round_id > 0 else []
        txs = [t for b in self.blocks_upto_head() for t in b.transactions
               if t.round_id == round_id and t.chaincode == self.config.chaincode]
        return {"round": rnd, "updates": sorted(updates, key=lambda u: _natural(u.hospital)), "transactions": txs,
                "outcome": round_outcome(rnd)}

    def lineage(self) -> list[dict[str, Any]]:
        """Genesis, then every FINALIZED round: its model hash, the model it was built on, the bytes published."""
        published: dict[RoundId, TxSummary] = {}
        for b in self.blocks_upto_head():
            for t in b.transactions:
                if (t.valid and t.chaincode == self.config.chaincode and t.function in _MODEL_PUBLISH
                        and t.round_id is not None):
                    published.setdefault(t.round_id, t)
        out = []
        for rnd in self.rounds():
            if rnd.state != FINALIZED:
                continue
            model_hash = rnd.finalized.model_hash if rnd.finalized is not None else None
            tx = published.get(rnd.round_id)
            same_as = None
            if tx is None and rnd.round_id > 0 and model_hash == rnd.base_model_hash:
                same_as = rnd.base_round_id  # unchanged model: the ledger points at the base's bytes
            out.append({
                "round_id": rnd.round_id, "model_hash": model_hash, "base_model_hash": rnd.base_model_hash,
                "base_round_id": rnd.base_round_id, "finalized_at": rnd.finalized_at,
                "accepted": len(rnd.finalized.accepted if rnd.finalized is not None else ()),
                "publish_tx": tx, "published_hash": tx.model_sha256 if tx else None,
                "size": tx.model_size if tx else None, "same_bytes_as": same_as,
                "matches": (tx.model_sha256 == model_hash) if tx else (same_as is not None),
            })
        return out

    def model(self, round_id: RoundId) -> tuple[bytes, str]:
        """The model bytes of a FINALIZED round, checked against the hash its attestation quorum agreed on."""
        rnd = next((r for r in self.rounds() if r.round_id == round_id), None)
        if rnd is None:
            raise NotFound(f"there is no round {round_id} on the ledger")
        if rnd.state != FINALIZED:
            raise NotFound(f"round {round_id} is {rnd.state}: only a FINALIZED round has a model")
        want = rnd.finalized.model_hash if rnd.finalized is not None else None
        from fedchain.gateway import GatewayError

        try:
            rec = self.fl.get_model(round_id)
        except ModelIntegrityError as exc:
            raise IntegrityError(str(exc)) from None
        except GatewayError as exc:
            refusal = chaincode_refusal(exc)
            if refusal is not None and refusal.status == 404:
                raise NotFound(f"the model of round {round_id} is finalized but not published yet") from None
            raise
        digest = sha256_hex(rec.model)
        if digest != want:
            raise IntegrityError(f"the model of round {round_id} hashes to {digest}, the ledger's finalized hash is "
                                 f"{want}")
        return rec.model, digest

    # --------------------------------------------------------------------- qscc
    def height(self) -> int:
        from fedchain.gateway import qscc

        return qscc.chain_info(self.network).height

    def orgs(self) -> list[str]:
        """Application organisations from the channel's config block (block 0)."""
        if self._cache.orgs is None:
            from fedchain.audit.channel_config import channel_orgs
            from fedchain.gateway import qscc

            self._cache.orgs = channel_orgs(qscc.block_by_number(self.network, 0)).application_msp_ids
        return self._cache.orgs

    def block(self, number: int) -> BlockSummary:
        cached = self._cache.blocks.get(number)
        if cached is not None:
            return cached
        if number < 0 or number >= self.height():
            raise NotFound(f"there is no block {number} (the chain has {self.height()} blocks, 0 to "
                           f"{self.height() - 1})")
        from fedchain.gateway import qscc

        summary = self._summarize(qscc.block_by_number(self.network, number))
        with self._lock:
            self._cache.blocks[number] = summary
            for t in summary.transactions:
                self._cache.tx_index.setdefault(t.tx_id, (t.block, t.index))
        return summary

    def blocks(self, first: int, last: int) -> list[BlockSummary]:
        """Blocks first..last inclusive, newest first."""
        return [self.block(n) for n in range(last, first - 1, -1)]

    def blocks_upto_head(self) -> list[BlockSummary]:
        return [self.block(n) for n in range(self.height())]

    def transaction(self, tx_id: str) -> TxSummary:
        where = self._cache.tx_index.get(tx_id)
        if where is None:
            self.blocks_upto_head()
            where = self._cache.tx_index.get(tx_id)
        if where is None:
            raise NotFound(f"there is no transaction {tx_id} on the channel")
        return self.block(where[0]).transactions[where[1]]

    def _summarize(self, block: Any) -> BlockSummary:
        from fedchain.ledger import TxParseError, block_header_hash, parse_envelope, tx_validation_codes
        from fedchain.ledger.blocks import validation_code_name

        number = block.header.number
        try:
            codes = tx_validation_codes(block)
        except Exception:  # noqa: BLE001 - a block without flags still lists its transactions
            codes = [-1] * len(block.data.data)
        txs = []
        for i, (raw, code) in enumerate(zip(block.data.data, codes, strict=False)):
            code_name = validation_code_name(code) if code >= 0 else "?"
            try:
                info = parse_envelope(raw)
            except TxParseError:
                txs.append(TxSummary(number, i, "", "unparsable", code_name, None))
                continue
            cn, role = self._name(info.creator_msp_id, info.creator_cert_pem)
            fn = info.function
            digest, size = _model_digest(fn, info.args)
            txs.append(TxSummary(
                number, i, info.tx_id, info.type_name, code_name,
                info.timestamp.timestamp() if info.timestamp else None, info.chaincode, fn,
                _round_of(fn, info.args), info.creator_msp_id, cn, role,
                tuple((e.msp_id, self._name(e.msp_id, e.cert_pem)[0]) for e in info.endorsements), digest, size))
        return BlockSummary(number, block_header_hash(block.header).hex(), bytes(block.header.previous_hash).hex(),
                            bytes(block.header.data_hash).hex(), tuple(txs))

    def _name(self, msp_id: str, cert_pem: bytes) -> tuple[str, str | None]:
        """(common name, role attribute) of a certificate; parsed once per certificate."""
        if not cert_pem:
            return "", None
        cached = self._cache.names.get(cert_pem)
        if cached is None:
            from fedchain.identity import Identity

            try:
                ident = Identity(msp_id, cert_pem)
                cached = (ident.common_name, ident.role)
            except Exception:  # noqa: BLE001 - an unreadable certificate is shown as such
                cached = ("<unreadable certificate>", None)
            self._cache.names[cert_pem] = cached
        return cached

    # -------------------------------------------------------------------- audit
    def run_audit(self) -> AuditRun:
        """`fedchain audit verify` over this connection (one at a time); the result is kept for the page."""
        from fedchain.audit.report import run_audit

        with self._audit_lock:
            t0, started = time.perf_counter(), time.time()
            report = run_audit(self.network, self.config.chaincode)
            self.last_audit = AuditRun(report, started, time.perf_counter() - t0)
            return self.last_audit


def round_outcome(rnd: Round) -> dict[str, Any]:
    """Accepted and rejected hospitals (with reason codes) once the MPC nodes agreed, and why a round ended."""
    agreed = rnd.finalized or rnd.agreed
    return {
        "accepted": list(agreed.accepted) if agreed else [], "rejected": dict(agreed.rejected) if agreed else {},
        "model_hash": rnd.finalized.model_hash if rnd.finalized is not None else None,
        "reason": rnd.failure_reason or rnd.dispute_reason,
        "over": rnd.over,
    }


def iso(ts: Any) -> str:
    """UTC time of a ledger timestamp; '-' for a missing or odd value (pages must not fail on one field)."""
    if not isinstance(ts, int | float) or isinstance(ts, bool):
        return "-"
    try:
        return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + " UTC"
    except (ValueError, OverflowError, OSError):
        return "-"


def _natural(text: str) -> tuple[str, int, str]:
    """hospital2 before hospital10."""
    head = text.rstrip("0123456789")
    tail = text[len(head):]
    return (head, int(tail) if tail else -1, text)
