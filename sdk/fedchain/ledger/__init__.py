"""Fabric block and transaction utilities shared by the devnet, the gateway client and the auditor."""

from fedchain.ledger.blocks import (
    ChainError,
    block_data_hash,
    block_header_bytes,
    block_header_hash,
    tx_validation_codes,
    validation_code_name,
    verify_block,
    verify_chain,
)
from fedchain.ledger.txparse import (
    BlockInfo,
    BlockTx,
    ChaincodeEventInfo,
    Endorsement,
    KVRead,
    KVWrite,
    NsRWSet,
    TxInfo,
    TxParseError,
    parse_block,
    parse_envelope,
    parse_rwset,
)

__all__ = [
    "BlockInfo", "BlockTx", "ChainError", "ChaincodeEventInfo", "Endorsement", "KVRead", "KVWrite", "NsRWSet", "TxInfo", "TxParseError",
    "block_data_hash", "block_header_bytes", "block_header_hash", "parse_block", "parse_envelope", "parse_rwset",
    "tx_validation_codes", "validation_code_name", "verify_block", "verify_chain",
]
