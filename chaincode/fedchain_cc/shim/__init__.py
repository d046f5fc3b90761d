"""Our Python chaincode shim (chaincode-as-a-service) on the official Fabric protos.

- `interface`: the stub API contracts program against (shared with the in-memory test stub).
- `contract`: the one contract framework: `Contract` base class with `@transaction` methods,
  `ContractError`, `Wording` (how the dispatcher's own answers read); results are canonical JSON
  (`fedchain_cc.canonical`).
- `server`: `ChaincodeServer(chaincode, address, chaincode_id, tls)`: the gRPC server of
  `protos.Chaincode/Connect` that peers dial; `ServerTLS` for (mutual) TLS.
- `session`: one peer stream (handshake, concurrent transactions, reply routing, one writer).
- `stub`: `ChaincodeStub`, the real stub (its transaction-context half, `ContextStub`, is shared
  with the in-memory test stub); `proposal`: parsing of the signed proposal;
  `identity`: the creator's `ClientIdentity` (cached parse); `errors`: `PeerError` & co.

Why not fabric-chaincode-python: see /work/shared/notes/fabric.md.
"""

from fedchain_cc.shim.contract import Contract, ContractError, Wording, transaction
from fedchain_cc.shim.errors import PeerError, ShimError, StreamClosedError
from fedchain_cc.shim.interface import Chaincode, ChaincodeStubAPI, ClientIdentity, Response, error, success
from fedchain_cc.shim.server import ChaincodeServer, ServerTLS
from fedchain_cc.shim.stub import ChaincodeStub

__all__ = [
    "Chaincode",
    "ChaincodeServer",
    "ChaincodeStub",
    "ChaincodeStubAPI",
    "ClientIdentity",
    "Contract",
    "ContractError",
    "PeerError",
    "Response",
    "ServerTLS",
    "ShimError",
    "StreamClosedError",
    "Wording",
    "error",
    "success",
    "transaction",
]
