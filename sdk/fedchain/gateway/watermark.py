"""Remember the newest block a client has seen, and refuse a ledger that went backwards or forked.

A ledger restored from an older (but internally consistent) copy passes every check a peer can
make on its own: its blocks chain, its signatures verify. Only a client that remembers what it
saw before can tell. Every long-running client (MPC node, hospital follower, operator) keeps a
`LedgerWatermark` file: the highest block number and that block's header hash. On each check:

- the ledger's head is lower than the remembered block: **rolled back**;
- the ledger's block at the remembered number has another hash: **forked** (or rewritten);
- otherwise the watermark moves up to the new head.

Block hashes chain, so equal hashes at the remembered height pin every older block too. A check
costs one GetChainInfo (whose previous-block hash covers a chain that grew by one block) and, when
the chain grew by more, one GetBlockByNumber of the remembered block.
A deliberate reset of the network (a new ledger) is the operator's call: remove the file.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fedchain.durable import write_durably


class LedgerRollback(Exception):
    """The ledger is behind, or differs from, what this client has already seen: do not act on it."""


@dataclass(frozen=True)
class BlockMark:
    number: int
    block_hash: str  # hex of the block header hash (as Fabric's GetChainInfo reports it)
    seen_at: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {"number": self.number, "block_hash": self.block_hash, "seen_at": self.seen_at}


@dataclass(frozen=True)
class ChainHead:
    number: int  # of the newest block
    block_hash: str  # its header hash, hex
    previous_hash: str = ""  # the header hash of block number - 1, hex ("" if not known)


class HeadSource(Protocol):
    """What the watermark needs from a ledger connection."""

    def chain_head(self) -> ChainHead: ...

    def block_hash(self, number: int) -> str: ...  # header hash hex of block `number`


class NetworkHeads:
    """HeadSource over a gateway Network (qscc), the same on real Fabric and on the devnet."""

    def __init__(self, network: Any) -> None:
        self.network = network

    def chain_head(self) -> ChainHead:
        from fedchain.gateway.qscc import chain_info

        info = chain_info(self.network)
        return ChainHead(int(info.height) - 1, bytes(info.currentBlockHash).hex(), bytes(info.previousBlockHash).hex())

    def block_hash(self, number: int) -> str:
        from fedchain.gateway.qscc import block_by_number
        from fedchain.ledger import block_header_hash

        return block_header_hash(block_by_number(self.network, number).header).hex()


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts)) if ts else "earlier"


def compare(saved: BlockMark | None, source: HeadSource) -> BlockMark:
    """The ledger's new head if it extends `saved`; raises LedgerRollback otherwise."""
    head = source.chain_head()
    number, head_hash = head.number, head.block_hash
    if saved is None:
        return BlockMark(number, head_hash, time.time())
    if number < saved.number:
        raise LedgerRollback(
            f"the ledger went backwards: its newest block is {number}, but this client saw block {saved.number} "
            f"(hash {saved.block_hash[:16]}…) {_when(saved.seen_at)}. The ledger was rolled back (restored from an "
            f"older copy?); refusing to act on it.")
    if number == saved.number:
        at_mark = head_hash
    elif number == saved.number + 1 and head.previous_hash:
        at_mark = head.previous_hash  # the new head's link to the remembered block: no block fetch
    else:
        at_mark = source.block_hash(saved.number)
    if at_mark != saved.block_hash:
        raise LedgerRollback(
            f"the ledger forked: its block {saved.number} has hash {at_mark[:16]}…, but this client saw "
            f"{saved.block_hash[:16]}… there {_when(saved.seen_at)}. The ledger was replaced or rewritten; refusing "
            f"to act on it.")
    if number == saved.number:
        return saved
    return BlockMark(number, head_hash, time.time())


class LedgerWatermark:
    """The remembered head in a small JSON file; `check` raises LedgerRollback, else moves it up."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.mark = self._load()

    def _load(self) -> BlockMark | None:
        if not self.path.exists():
            return None
        try:
            raw = json.loads(self.path.read_text())
            return BlockMark(int(raw["number"]), str(raw["block_hash"]), float(raw.get("seen_at", 0.0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LedgerRollback(f"ledger watermark {self.path} is unreadable ({exc}); remove it only if this "
                                 f"client may trust the ledger afresh") from None

    def check(self, source: HeadSource) -> BlockMark:
        with self._lock:
            new = compare(self.mark, source)
            if new != self.mark:
                write_durably(self.path, json.dumps(new.as_json()).encode(), mode=0o644)
                self.mark = new
            return new

    def explain(self, exc: LedgerRollback) -> str:
        """The message for a user: what happened and the file that holds this client's memory."""
        return f"{exc} (this client's watermark: {self.path}; remove it only if the consortium deliberately " \
               f"started a new ledger)"
