"""Block hashing and hash-chain checks, bit-exact with Fabric's protoutil.

The devnet builds blocks with these functions and the auditor re-checks them, so both
sides agree by construction; the definitions follow Fabric 2.x (protoutil/blockutils.go):

* header hash = SHA-256 over the ASN.1 DER of SEQUENCE{INTEGER number, OCTET STRING
  previous_hash, OCTET STRING data_hash} (Go's encoding/asn1 of a struct with a *big.Int);
* data hash = SHA-256 over the plain concatenation of the envelopes (Fabric 2.x; Fabric-X
  length-prefixes each entry instead, which is not what a Fabric 2.5 peer writes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from fabric_protos.common import common_pb2
from fabric_protos.peer import transaction_pb2

TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")
VALID = transaction_pb2.TxValidationCode.Value("VALID")
NOT_VALIDATED = transaction_pb2.TxValidationCode.Value("NOT_VALIDATED")


class ChainError(ValueError):
    """The block sequence is not a valid hash chain; names the first bad block."""

    def __init__(self, block_number: int, reason: str) -> None:
        super().__init__(f"block {block_number}: {reason}")
        self.block_number = block_number
        self.reason = reason


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_length(len(value)) + value


def _der_unsigned_integer(n: int) -> bytes:
    if n < 0:
        raise ValueError("block numbers are unsigned")
    # Minimal two's complement: one extra byte when the top bit would read as a sign.
    body = n.to_bytes(n.bit_length() // 8 + 1, "big")
    return _der_tlv(0x02, body)


def block_header_bytes(header: common_pb2.BlockHeader) -> bytes:
    """ASN.1 DER of the header, exactly what Fabric hashes and what orderers sign."""
    if not 0 <= header.number < 1 << 64:
        raise ValueError(f"block number {header.number} is not a uint64")
    content = (
        _der_unsigned_integer(header.number)
        + _der_tlv(0x04, bytes(header.previous_hash))
        + _der_tlv(0x04, bytes(header.data_hash))
    )
    return _der_tlv(0x30, content)


def block_header_hash(header: common_pb2.BlockHeader) -> bytes:
    """The block hash: the next block's previous_hash must equal it."""
    return hashlib.sha256(block_header_bytes(header)).digest()


def block_data_hash(data: common_pb2.BlockData | Sequence[bytes]) -> bytes:
    """SHA-256 over the concatenated envelope bytes (Fabric 2.x BlockDataHash)."""
    entries = data.data if isinstance(data, common_pb2.BlockData) else data
    h = hashlib.sha256()
    for entry in entries:
        h.update(entry)
    return h.digest()


def validation_code_name(code: int) -> str:
    """Fabric's TxValidationCode name (e.g. 255 -> INVALID_OTHER_REASON), or UNKNOWN(<n>)."""
    try:
        return transaction_pb2.TxValidationCode.Name(code)
    except ValueError:
        return f"UNKNOWN({code})"


def tx_validation_codes(block: common_pb2.Block) -> list[int]:
    """Per-transaction validation codes from metadata[TRANSACTIONS_FILTER] (one byte each).

    A block that was never validated (the orderer's copy) has an empty filter: every
    transaction then reads as NOT_VALIDATED rather than silently VALID.
    """
    n = len(block.data.data)
    meta = block.metadata.metadata
    flags = bytes(meta[TRANSACTIONS_FILTER]) if len(meta) > TRANSACTIONS_FILTER else b""
    if not flags:
        return [NOT_VALIDATED] * n
    if len(flags) != n:
        raise ChainError(
            block.header.number, f"transactions filter has {len(flags)} entries for {n} transactions"
        )
    return list(flags)


def verify_block(block: common_pb2.Block, previous: common_pb2.Block | None = None) -> None:
    """Check one block's data hash and, given its predecessor, the link and numbering."""
    number = block.header.number
    if bytes(block.header.data_hash) != block_data_hash(block.data):
        raise ChainError(number, "data_hash does not match the block's transactions")
    if previous is None:
        return
    if number != previous.header.number + 1:
        raise ChainError(number, f"expected block number {previous.header.number + 1}")
    if bytes(block.header.previous_hash) != block_header_hash(previous.header):
        raise ChainError(number, f"previous_hash does not match the header hash of block {previous.header.number}")


def verify_chain(blocks: Iterable[common_pb2.Block | bytes], *, previous: common_pb2.Block | None = None) -> int:
    """Verify a contiguous run of blocks; raise ChainError naming the first bad block.

    `previous` anchors the run to an already trusted block. Returns the number of blocks checked.
    """
    count = 0
    prev = previous
    for item in blocks:
        block = common_pb2.Block.FromString(item) if isinstance(item, (bytes, bytearray)) else item
        if not block.HasField("header"):
            raise ChainError(prev.header.number + 1 if prev is not None else -1, "block has no header")
        verify_block(block, prev)
        prev = block
        count += 1
    return count
