"""Ledger queries through the `qscc` system chaincode, as on any Fabric peer (and the devnet).

Auditors and operators read blocks and transactions this way through the same Gateway
connection as everything else; no peer admin access is needed.
"""

from __future__ import annotations

from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.peer import transaction_pb2

from fedchain.gateway.client import Network

QSCC = "qscc"


def chain_info(network: Network) -> ledger_pb2.BlockchainInfo:
    """Height and the current/previous block hashes."""
    raw = network.contract(QSCC).evaluate("GetChainInfo", network.name)
    return ledger_pb2.BlockchainInfo.FromString(raw)


def block_by_number(network: Network, number: int) -> common_pb2.Block:
    raw = network.contract(QSCC).evaluate("GetBlockByNumber", network.name, str(number))
    return common_pb2.Block.FromString(raw)


def block_by_tx_id(network: Network, tx_id: str) -> common_pb2.Block:
    raw = network.contract(QSCC).evaluate("GetBlockByTxID", network.name, tx_id)
    return common_pb2.Block.FromString(raw)


def transaction_by_id(network: Network, tx_id: str) -> transaction_pb2.ProcessedTransaction:
    """The committed envelope with its validation code."""
    raw = network.contract(QSCC).evaluate("GetTransactionByID", network.name, tx_id)
    return transaction_pb2.ProcessedTransaction.FromString(raw)


def blocks(network: Network, start: int = 0, end: int | None = None):
    """Blocks start..end-1 (end defaults to the current height), fetched one by one."""
    stop = chain_info(network).height if end is None else end
    for number in range(start, stop):
        yield block_by_number(network, number)
