"""The channel ledger: hash-chained blocks on disk, state/history in SQLite, commit notifications.

Commit order per block: validate → append + fsync the block → apply state in one SQLite
transaction (savepoint = block number) → notify waiters. At start the whole chain is
verified (data hash, previous-hash link, orderer signature, commit hash); a bad block
stops the start with an error naming it, and blocks newer than the state savepoint
(crash between append and state commit) are replayed. Then the state DB must equal what
the blocks' valid write sets imply (integrity.check_state), or the start is refused.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path

from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.peer import chaincode_event_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from fedchain.identity import IdentityError, MSPManager, SigningIdentity
from fedchain.ledger import ChainError, block_data_hash, block_header_bytes, block_header_hash, verify_block

from fedchain_devnet.blockstore import BlockStore
from fedchain_devnet.integrity import ExpectedState, LedgerCorrupt, block_effects, check_state
from fedchain_devnet.statedb import StateDB
from fedchain_devnet.validator import BlockResult, Validator

log = logging.getLogger(__name__)
IDX = common_pb2.BlockMetadataIndex
SIGNATURES = IDX.Value("SIGNATURES")
TRANSACTIONS_FILTER = IDX.Value("TRANSACTIONS_FILTER")
COMMIT_HASH = IDX.Value("COMMIT_HASH")
LAST_CONFIG = IDX.Value("LAST_CONFIG")
N_METADATA = len(IDX.values())
VALID = transaction_pb2.TxValidationCode.Value("VALID")


def commit_hash(previous: bytes, header: common_pb2.BlockHeader, flags: bytes) -> bytes:
    """Devnet commit hash: chains each block's validation flags, which no header hash covers.

    sha256(previous commit hash || header hash || TRANSACTIONS_FILTER). Like Fabric's own commit
    hash it is peer-local metadata (Fabric hashes its state updates instead, which only a peer
    with the same state DB can recompute); here it lets start-up detect edited validation flags.
    """
    return hashlib.sha256(previous + block_header_hash(header) + flags).digest()


class Ledger:
    def __init__(self, data_dir: Path, channel: str, validator_factory, msps: MSPManager,
                 orderer: SigningIdentity, orderer_msp_ids: set[str]) -> None:
        self.channel = channel
        self.msps = msps
        self.orderer = orderer
        self.orderer_msp_ids = orderer_msp_ids
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        self.blocks = BlockStore(data_dir / "blocks.bin")
        self.state = self._open_state(data_dir / "state.sqlite")
        self.validator: Validator = validator_factory(self.state)
        self._cv = threading.Condition()
        self._recent: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self._events: OrderedDict[int, list[tuple[int, chaincode_event_pb2.ChaincodeEvent]]] = OrderedDict()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._last_header: common_pb2.BlockHeader | None = None
        self._last_commit_hash = b""
        self.closed = False

    # --- start-up ----------------------------------------------------------------------
    @staticmethod
    def _open_state(path: Path) -> StateDB:
        """The state DB, or LedgerCorrupt naming it (a damaged file is rebuilt from the blocks once deleted)."""
        try:
            return StateDB(path)
        except sqlite3.DatabaseError as exc:
            raise LedgerCorrupt(f"state database {path} cannot be opened ({exc}); delete {path.name}* to rebuild "
                                "it from the blocks at the next start") from None

    def open(self, genesis_envelope) -> None:
        """Verify the chain, create block 0 if the ledger is new, replay what state lacks, prove the state DB."""
        savepoint = self.state.savepoint()
        if savepoint >= self.blocks.height:
            raise LedgerCorrupt(f"state database {self.state.path} has applied block {savepoint} but the block file "
                                f"{self.blocks.path} holds only {self.blocks.height} blocks: wrong or lost block file")
        expected = ExpectedState()
        if self.blocks.height == 0:
            env = genesis_envelope()
            block = self._append([env], [VALID], BlockResult(flags=[VALID]))
            expected.add_block(0, *block_effects(block))
            check_state(self.state, expected)  # a new ledger starts from an empty state
            log.info("created channel %s: genesis block written", self.channel)
            return
        t0 = time.monotonic()
        prev = None
        prev_commit = b""
        for n in range(self.blocks.height):
            block = self._read_verified(n, prev, prev_commit)
            prev, prev_commit = block, self._commit_hash_of(block)
            writes, txids = block_effects(block)
            expected.add_block(n, writes, txids)
            if n > savepoint:  # crash between append and state commit: the block file is the record
                self.state.apply_block(n, writes, txids)
                log.info("replayed block %d into state (%d writes)", n, len(writes))
        t1 = time.monotonic()
        check_state(self.state, expected)
        self._last_header = prev.header
        self._last_commit_hash = prev_commit
        log.info("verified %d blocks in %.2f s and the state DB against them in %.2f s (%d keys; state savepoint "
                 "was %d)", self.blocks.height, t1 - t0, time.monotonic() - t1, len(expected.state), savepoint)

    @staticmethod
    def _meta(block: common_pb2.Block, index: int) -> bytes:
        meta = block.metadata.metadata
        return bytes(meta[index]) if len(meta) > index else b""

    @classmethod
    def _commit_hash_of(cls, block: common_pb2.Block) -> bytes:
        try:
            return bytes(common_pb2.Metadata.FromString(cls._meta(block, COMMIT_HASH)).value)
        except Exception:
            return b""

    def _read_verified(self, n: int, prev: common_pb2.Block | None, prev_commit: bytes) -> common_pb2.Block:
        try:
            block = common_pb2.Block.FromString(self.blocks.get(n))
        except Exception as exc:
            raise LedgerCorrupt(f"block {n} in {self.blocks.path} does not decode: {exc}") from None
        try:
            if block.header.number != n:
                raise ChainError(n, f"header says block {block.header.number}")
            verify_block(block, prev)
            self._verify_orderer_signature(block)
            flags = self._meta(block, TRANSACTIONS_FILTER)
            if len(flags) != len(block.data.data):
                raise ChainError(n, "transactions filter does not match the transaction count")
            if self._commit_hash_of(block) != commit_hash(prev_commit, block.header, flags):
                raise ChainError(n, "commit hash does not match (validation flags were altered)")
        except ChainError as exc:
            raise LedgerCorrupt(f"ledger {self.blocks.path} is corrupt at block {n}: {exc.reason}") from None
        return block

    def _verify_orderer_signature(self, block: common_pb2.Block) -> None:
        n = block.header.number
        try:
            md = common_pb2.Metadata.FromString(self._meta(block, SIGNATURES))
        except Exception:
            raise ChainError(n, "orderer signature metadata does not decode") from None
        header_bytes = block_header_bytes(block.header)
        for sig in md.signatures:
            try:
                shdr = common_pb2.SignatureHeader.FromString(sig.signature_header)
                ident = self.msps.verify(bytes(shdr.creator), bytes(sig.signature),
                                         bytes(md.value) + bytes(sig.signature_header) + header_bytes)
            except (IdentityError, Exception):
                continue
            if ident.msp_id in self.orderer_msp_ids:
                return
        raise ChainError(n, "no valid orderer signature over the block header")

    # --- commit (one committer thread) ----------------------------------------------------
    def commit(self, envelopes: list[bytes]) -> common_pb2.Block:
        number = self.blocks.height
        result = self.validator.validate_block(number, envelopes)
        block = self._append(envelopes, result.flags, result)
        if log.isEnabledFor(logging.DEBUG):
            invalid = len(result.flags) - result.flags.count(VALID)
            log.debug("committed block %d: %d transactions, %d invalid", number, len(envelopes), invalid)
        return block

    def _append(self, envelopes: list[bytes], flags: list[int], result: BlockResult) -> common_pb2.Block:
        number = self.blocks.height
        header = common_pb2.BlockHeader(
            number=number, previous_hash=block_header_hash(self._last_header) if self._last_header else b"",
            data_hash=block_data_hash(envelopes))
        value = common_pb2.OrdererBlockMetadata(last_config=common_pb2.LastConfig(index=0)).SerializeToString()
        shdr = common_pb2.SignatureHeader(creator=self.orderer.serialize(), nonce=os.urandom(24)).SerializeToString()
        signature = self.orderer.sign(value + shdr + block_header_bytes(header))
        metadata = [b""] * N_METADATA
        metadata[SIGNATURES] = common_pb2.Metadata(value=value, signatures=[
            common_pb2.MetadataSignature(signature_header=shdr, signature=signature)]).SerializeToString()
        flag_bytes = bytes(flags)
        metadata[TRANSACTIONS_FILTER] = flag_bytes
        chash = commit_hash(self._last_commit_hash, header, flag_bytes)
        metadata[COMMIT_HASH] = common_pb2.Metadata(value=chash).SerializeToString()  # Fabric wraps it likewise
        metadata[LAST_CONFIG] = common_pb2.Metadata(
            value=common_pb2.LastConfig(index=0).SerializeToString()).SerializeToString()
        block = common_pb2.Block(header=header, data=common_pb2.BlockData(data=envelopes),
                                 metadata=common_pb2.BlockMetadata(metadata=metadata))
        self.blocks.append(block.SerializeToString())  # durable before anyone hears of it
        self.state.apply_block(number, result.writes, result.txids)
        with self._cv:
            self._last_header = header
            self._last_commit_hash = chash
            for tx_id, _, code in result.txids:
                self._recent[tx_id] = (code, number)
            while len(self._recent) > 200_000:
                self._recent.popitem(last=False)
            self._events[number] = result.events
            while len(self._events) > 1000:
                self._events.popitem(last=False)
            woken = [ev for tx_id, _, _ in result.txids for ev in self._waiters.pop(tx_id, ())]
            self._cv.notify_all()
        for ev in woken:
            ev.set()
        return block

    # --- queries -------------------------------------------------------------------------
    @property
    def height(self) -> int:
        return self.blocks.height

    def block_bytes(self, number: int) -> bytes:
        return self.blocks.get(number)

    def block(self, number: int) -> common_pb2.Block:
        return common_pb2.Block.FromString(self.blocks.get(number))

    def chain_info(self) -> ledger_pb2.BlockchainInfo:
        """Height and hashes of one and the same block. The height comes from the last committed header, not
        from the block file: a block is appended to the file before its header becomes `_last_header`, and a
        height one ahead of the header made clients remember the wrong hash for a block (a false "fork")."""
        with self._cv:
            last = self._last_header
            height = int(last.number) + 1 if last is not None else self.blocks.height
        prev = bytes(last.previous_hash) if last is not None else b""
        return ledger_pb2.BlockchainInfo(height=height, currentBlockHash=block_header_hash(last) if last else b"",
                                         previousBlockHash=prev)

    def tx_status(self, tx_id: str) -> tuple[int, int] | None:
        """(validation code, block number) of a transaction on the ledger."""
        with self._cv:
            hit = self._recent.get(tx_id)
        if hit is not None:
            return hit
        row = self.state.tx_status(tx_id)
        return None if row is None else (row[0], row[1])

    def tx_location(self, tx_id: str) -> tuple[int, int, int] | None:
        return self.state.tx_status(tx_id)

    def wait_for_tx(self, tx_id: str, timeout: float | None) -> tuple[int, int] | None:
        """The transaction's (code, block) once committed; None on timeout. One Event per waiter, no herd."""
        status = self.tx_status(tx_id)
        if status is not None:
            return status
        event = threading.Event()
        with self._cv:
            self._waiters.setdefault(tx_id, []).append(event)
        try:
            status = self.tx_status(tx_id)  # committed between the first look and registering
            if status is None and not self.closed:
                event.wait(timeout)
                status = self.tx_status(tx_id)
            return status
        finally:
            with self._cv:
                events = self._waiters.get(tx_id)
                if events is not None:
                    if event in events:
                        events.remove(event)
                    if not events:
                        del self._waiters[tx_id]

    def wait_for_height(self, height: int, timeout: float) -> bool:
        """True once the ledger has at least `height` blocks."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self.blocks.height < height and not self.closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cv.wait(remaining)
            return self.blocks.height >= height

    def block_events(self, number: int) -> list[tuple[int, chaincode_event_pb2.ChaincodeEvent]]:
        """Chaincode events of the valid transactions of a block, in transaction order."""
        with self._cv:
            cached = self._events.get(number)
        if cached is not None:
            return cached
        block = self.block(number)
        flags = self._meta(block, TRANSACTIONS_FILTER)
        out = []
        for txnum, raw in enumerate(block.data.data):
            if txnum >= len(flags) or flags[txnum] != VALID:
                continue
            try:
                payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(raw).payload)
                chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
                if chdr.type != common_pb2.HeaderType.Value("ENDORSER_TRANSACTION"):
                    continue
                tx = transaction_pb2.Transaction.FromString(payload.data)
                cap = transaction_pb2.ChaincodeActionPayload.FromString(tx.actions[0].payload)
                prp = proposal_response_pb2.ProposalResponsePayload.FromString(cap.action.proposal_response_payload)
                action = proposal_pb2.ChaincodeAction.FromString(prp.extension)
            except Exception:
                continue
            if action.events:
                out.append((txnum, chaincode_event_pb2.ChaincodeEvent.FromString(action.events)))
        return out

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()
            woken = [ev for evs in self._waiters.values() for ev in evs]
        for ev in woken:
            ev.set()
        self.blocks.close()
