"""The `qscc` system chaincode (ledger queries), reachable through Gateway.Evaluate as on a Fabric peer."""

from __future__ import annotations

from fabric_protos.common import common_pb2
from fabric_protos.peer import proposal_response_pb2, transaction_pb2
from fedchain.ledger import block_header_hash

from fedchain_devnet.ledger import Ledger

Response = proposal_response_pb2.Response


def _ok(payload: bytes) -> Response:
    return Response(status=200, payload=payload)


def _err(message: str) -> Response:
    return Response(status=500, message=message)


def invoke(ledger: Ledger, function: str, args: list[bytes]) -> Response:
    """GetChainInfo, GetBlockByNumber, GetBlockByHash, GetTransactionByID, GetBlockByTxID."""
    if not args:
        return _err(f"qscc {function}: missing channel name argument")
    channel = args[0].decode("utf-8", "replace")
    if channel != ledger.channel:
        return _err(f"qscc {function}: channel {channel!r} not found")
    if function == "GetChainInfo":
        return _ok(ledger.chain_info().SerializeToString())
    if len(args) < 2:
        return _err(f"qscc {function}: expected 2 arguments (channel, key)")
    arg = args[1]
    if function == "GetBlockByNumber":
        try:
            number = int(arg.decode())
        except (UnicodeDecodeError, ValueError):
            return _err(f"qscc GetBlockByNumber: {arg[:40]!r} is not a block number")
        if not 0 <= number < ledger.height:
            return _err(f"qscc GetBlockByNumber: block {number} not found (height {ledger.height})")
        return _ok(ledger.block_bytes(number))
    if function == "GetBlockByHash":
        for number in range(ledger.height - 1, -1, -1):
            block = ledger.block(number)
            if block_header_hash(block.header) == arg:
                return _ok(block.SerializeToString())
        return _err("qscc GetBlockByHash: no block with that header hash")
    if function in ("GetTransactionByID", "GetBlockByTxID"):
        tx_id = arg.decode("utf-8", "replace")
        loc = ledger.tx_location(tx_id)
        if loc is None:
            return _err(f"qscc {function}: transaction {tx_id} not found")
        code, number, txnum = loc
        if function == "GetBlockByTxID":
            return _ok(ledger.block_bytes(number))
        block = ledger.block(number)
        env = common_pb2.Envelope.FromString(block.data.data[txnum])
        return _ok(transaction_pb2.ProcessedTransaction(transactionEnvelope=env, validationCode=code).SerializeToString())
    return _err(f"qscc: unknown function {function!r}")
