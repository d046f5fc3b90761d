"""Start-up proof that the state database holds exactly what the blocks say.

The block file is verified at start (hash chain, orderer signatures, commit hashes), but the
SQLite state DB is a separate file that the chaincode trusts blindly: an edit made while the
network is down (a hospital's `sample_cap` raised, a key added or removed) would otherwise be
served as committed state. So while the ledger reads every block at start it also replays
every VALID transaction's write set into an `ExpectedState` that keeps only hashes (never the
values: model chunks are megabytes), then `check_state` compares it with every row of the
state, history and tx-id tables and names the first rows that differ.

Full replay rather than a per-block state digest: the start already reads, decodes and hashes
every block, so the replay adds only write-set decoding and value hashing, and on a mismatch it
names the key. Measured with `python -m fedchain_devnet.startbench` (CPU-s per 1,000 blocks of 10
transactions with a 4 MiB model every 50 blocks, 231 MB: chain 0.5, replay 0.6, comparison 0.3;
linear to 5,000 blocks; peak RSS under 200 MB).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2

from fedchain_devnet.statedb import StateDB, Write
from fedchain_devnet.validator import INDEXED_CODES

VALID = transaction_pb2.TxValidationCode.Value("VALID")
ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
MAX_LISTED = 5  # differences spelled out in the error; the rest are counted

Key = tuple[str, str]  # (namespace, key)
TxId = tuple[str, int, int]  # (tx id, txnum, validation code), as StateDB.apply_block takes them


class LedgerCorrupt(Exception):
    """The ledger's files fail verification at start; the message names the bad block or state row."""


class StateMismatch(LedgerCorrupt):
    """The state DB differs from the blocks; the message names the namespace, key and what differs."""


# --- what a block does to the state ----------------------------------------------------------
def block_effects(block: common_pb2.Block) -> tuple[list[Write], list[TxId]]:
    """The writes of a block's VALID endorser transactions and the tx ids it takes, as the committer applied them.

    Shared by the crash-recovery replay and the integrity check so both read a block the same way.
    """
    meta = block.metadata.metadata
    flags = bytes(meta[TRANSACTIONS_FILTER]) if len(meta) > TRANSACTIONS_FILTER else b""
    writes: list[Write] = []
    txids: list[TxId] = []
    seen: set[str] = set()
    for txnum in range(len(block.data.data)):
        try:
            chdr, data = _header_and_data(block.data.data[txnum])
        except Exception:  # noqa: BLE001 - an undecodable envelope was flagged invalid at commit
            continue
        code = flags[txnum] if txnum < len(flags) else -1
        if chdr.tx_id and chdr.tx_id not in seen and code in INDEXED_CODES:
            seen.add(chdr.tx_id)
            txids.append((chdr.tx_id, txnum, code))
        if code == VALID and chdr.type == ENDORSER_TRANSACTION:
            ts = (chdr.timestamp.seconds, chdr.timestamp.nanos)
            for ns in rwset_pb2.TxReadWriteSet.FromString(_rwset_bytes(data)).ns_rwset:
                for w in kv_rwset_pb2.KVRWSet.FromString(ns.rwset).writes:
                    writes.append(Write(ns.namespace, w.key, None if w.is_delete else bytes(w.value), txnum,
                                        chdr.tx_id, ts))
    return writes, txids


def _header_and_data(envelope: bytes) -> tuple[common_pb2.ChannelHeader, bytes]:
    payload = common_pb2.Payload.FromString(common_pb2.Envelope.FromString(envelope).payload)
    return common_pb2.ChannelHeader.FromString(payload.header.channel_header), payload.data


def _rwset_bytes(tx_data: bytes) -> bytes:
    """ChaincodeAction.results of a valid transaction, each layer dropped as soon as the next is parsed.

    A model publication carries the model in its proposal input, so every outer layer is megabytes;
    holding them all at once makes the allocator hand fresh pages back and forth (measured: ~25% slower).
    """
    cap = transaction_pb2.Transaction.FromString(tx_data).actions[0].payload
    prp = transaction_pb2.ChaincodeActionPayload.FromString(cap).action.proposal_response_payload
    del cap
    extension = proposal_response_pb2.ProposalResponsePayload.FromString(prp).extension
    del prp
    return proposal_pb2.ChaincodeAction.FromString(extension).results


# --- the expected state, as hashes ------------------------------------------------------------
def _value_hash(value: object) -> bytes:
    """sha256 of a value; a database cell that is not a BLOB (an edit made as TEXT, say) never matches one."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return hashlib.sha256(value).digest()
    return hashlib.sha256(b"not a BLOB: " + repr(value).encode()).digest()


def _history_entry(block: object, txnum: object, tx_id: object, value_hash: bytes, is_delete: bool,
                   ts: tuple[object, object]) -> bytes:
    """One history row as bytes to hash (the value by its hash); repr keeps edited cells of any type comparable."""
    return repr((block, txnum, tx_id, is_delete, ts[0], ts[1])).encode() + value_hash


def _txid_entry(tx_id: object, txnum: object, code: object) -> bytes:
    return repr((tx_id, txnum, code)).encode()


@dataclass
class _History:
    """A key's history as a hash chain in (block, txnum) order, the order its rows sort in."""

    entries: int = 0
    chain: bytes = b""

    def add(self, entry: bytes) -> None:
        self.entries += 1
        self.chain = hashlib.sha256(self.chain + entry).digest()


@dataclass
class ExpectedState:
    """World state, key histories and tx-id index implied by the blocks, holding hashes only.

    state: (ns, key) -> (sha256 of value, block, txnum); history: every key ever written;
    txids: per block, the sorted (tx id, txnum, code) entries hashed (the table sorts by tx id).
    """

    state: dict[Key, tuple[bytes, int, int]] = field(default_factory=dict)
    history: dict[Key, _History] = field(default_factory=dict)
    txids: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    blocks: int = 0

    def add_block(self, number: int, writes: Iterable[Write], txids: Iterable[TxId]) -> None:
        """Apply one block's effects the way StateDB.apply_block does (a later write of a key in a tx wins)."""
        last: dict[tuple[int, str, str], Write] = {}
        for w in writes:
            last[(w.txnum, w.ns, w.key)] = w
        for w in last.values():
            vhash = _value_hash(w.value)
            key = (w.ns, w.key)
            if w.value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = (vhash, number, w.txnum)
            self.history.setdefault(key, _History()).add(
                _history_entry(number, w.txnum, w.tx_id, vhash, w.value is None, w.ts))
        entries = sorted(_txid_entry(t, n, c) for t, n, c in txids)
        if entries:
            self.txids[number] = (len(entries), hashlib.sha256(b"".join(entries)).digest())
        self.blocks = number + 1


# --- comparison with the database ---------------------------------------------------------------
def _name(key: Key) -> str:
    return f"namespace {key[0]!r} key {key[1]!r}"


def _state_difference(key: Key, vhash: bytes, version: tuple[int, int], want: tuple[bytes, int, int]) -> str | None:
    """What differs between one state row and the blocks' last write of its key, or None."""
    value_bad, version_bad = vhash != want[0], version != want[1:]
    theirs = f"block {want[1]} tx {want[2]}"
    if value_bad and version_bad:
        return f"{_name(key)}: value and version differ (database version {version[0]}:{version[1]}, last written in {theirs})"
    if value_bad:
        return f"{_name(key)}: value differs from what {theirs} wrote (same version)"
    if version_bad:
        return f"{_name(key)}: version differs (database {version[0]}:{version[1]}, last written in {theirs})"
    return None


def state_differences(db: StateDB, expected: ExpectedState) -> Iterator[str]:
    """Each state row that differs from the blocks (value, version, missing, extra), as a sentence."""
    remaining = dict(expected.state)
    for ns, key, value, block, txnum in db.scan_state():
        want = remaining.pop((ns, key), None)
        if want is None:
            yield (f"{_name((ns, key))}: extra key in the state database (version {block}:{txnum}), "
                   "no valid transaction wrote it")
            continue
        problem = _state_difference((ns, key), _value_hash(value), (block, txnum), want)
        if problem:
            yield problem
    for key, (_, block, txnum) in sorted(remaining.items()):
        yield f"{_name(key)}: missing from the state database (last written in block {block} tx {txnum})"


def history_differences(db: StateDB, expected: ExpectedState) -> Iterator[str]:
    """Each key whose history rows differ from the blocks' writes of it (rows come grouped by key)."""
    remaining = dict(expected.history)
    current: Key | None = None
    got = _History()
    for ns, key, block, txnum, tx_id, value, is_delete, ts_s, ts_n in db.scan_history():
        if (ns, key) != current:
            if current is not None:
                yield from _compare_history(current, got, remaining.pop(current, None))
            current, got = (ns, key), _History()
        got.add(_history_entry(block, txnum, tx_id, _value_hash(None if is_delete else value), bool(is_delete),
                               (ts_s, ts_n)))
    if current is not None:
        yield from _compare_history(current, got, remaining.pop(current, None))
    for key, want in sorted(remaining.items()):
        yield f"{_name(key)}: history missing from the history database ({want.entries} entries per the blocks)"


def _compare_history(key: Key, got: _History, want: _History | None) -> Iterator[str]:
    if want is None:
        yield f"{_name(key)}: {got.entries} history entries in the database but no valid transaction wrote it"
    elif got != want:
        yield (f"{_name(key)}: history differs from the blocks ({got.entries} entries in the database, "
               f"{want.entries} per the blocks)")


def txid_differences(db: StateDB, expected: ExpectedState) -> Iterator[str]:
    """Blocks whose transaction-id index rows differ (that index is what refuses replayed transactions)."""
    found: dict[object, list[bytes]] = {}
    for tx_id, block, txnum, code in db.scan_txids():
        found.setdefault(block, []).append(_txid_entry(tx_id, txnum, code))
    for block in sorted(set(found) | set(expected.txids), key=lambda b: (type(b).__name__, b)):
        rows = sorted(found.get(block, []))
        got = (len(rows), hashlib.sha256(b"".join(rows)).digest()) if rows else None
        want = expected.txids.get(block)
        if got != want:
            yield (f"transaction-id index: block {block} has {got[0] if got else 0} tx ids in the database, "
                   f"{want[0] if want else 0} per the blocks (or other ids, positions or codes)")


def savepoint_differences(db: StateDB, expected: ExpectedState) -> Iterator[str]:
    """The state must have applied exactly the blocks in the block file (crash replay has run by now)."""
    savepoint = db.savepoint()
    if savepoint != expected.blocks - 1:
        yield f"savepoint is block {savepoint}, the block file ends at block {expected.blocks - 1}"


def check_state(db: StateDB, expected: ExpectedState) -> None:
    """Raise StateMismatch naming the differing rows unless state, history and tx-id index match the blocks."""
    listed: list[str] = []
    count = 0
    try:
        for problem in chain(savepoint_differences(db, expected), state_differences(db, expected),
                             history_differences(db, expected), txid_differences(db, expected)):
            count += 1
            if len(listed) < MAX_LISTED:
                listed.append(problem)
    except (sqlite3.Error, TypeError, ValueError) as exc:  # a damaged file or cells of the wrong type
        listed.append(f"it cannot be read as a devnet state database ({type(exc).__name__}: {exc})")
        count += 1
    if count:
        raise StateMismatch(mismatch_message(db, listed, count))


def mismatch_message(db: StateDB, listed: list[str], count: int) -> str:
    """One readable error: what differs (the first few), how many in all, and the way out."""
    more = f" (and {count - len(listed)} more)" if count > len(listed) else ""
    return (f"state database {db.path} does not match the blocks ({count} difference{'s' if count != 1 else ''}): "
            f"{'; '.join(listed)}{more}. It was changed outside the devnet; refusing to serve it. Restore it "
            f"from a backup, or delete {db.path.name}* to rebuild it from the blocks at the next start")
