"""The FL contract: one class, `FLContract`, assembled from one transaction group per concern.

See the package docstring (fedchain_cc.fl) for the design: roles, state machine, key layout.

Why mixins: the shim's `Contract` already collects every `@transaction` method along the class's
MRO, so each group (`consortium`, `blobs`, `rounds`, `updates`, `attestation`, `history`) is a plain
class of transaction methods in its own module, and this class only lists them; there is no second
registry to keep in step, and the server still registers one chaincode. The groups share no state:
what they share are functions (`updates.submitted_hospitals`, `blobs.point_model_at_base`), the
per-transaction context `Tx` and the constants in `rules`.

Each transaction method gets a `Tx` (`context`) and its arguments as strings; it validates
everything first and only then buffers writes; the dispatcher turns a ContractError into an error
Response ("<Function>: <message>") and the buffered writes and event are flushed (`completed`)
only on success.
"""

from __future__ import annotations

from typing import ClassVar

from fedchain_cc.fl.attestation import AttestationTransactions
from fedchain_cc.fl.blobs import BlobTransactions
from fedchain_cc.fl.consortium import ConsortiumTransactions
from fedchain_cc.fl.history import HistoryTransactions
from fedchain_cc.fl.rounds import RoundTransactions
from fedchain_cc.fl.rules import EVENTS
from fedchain_cc.fl.tx import Tx
from fedchain_cc.fl.updates import UpdateTransactions
from fedchain_cc.shim.contract import Contract, Wording
from fedchain_cc.shim.interface import ChaincodeStubAPI

__all__ = ["EVENTS", "FLContract"]

# The FL contract's published error format (package docstring, "Errors"); clients and tests match it.
FL_WORDING = Wording(
    unknown="unknown function {fn!r}; the FL contract has: {known}",
    arity="{name} takes {want} argument(s), got {n}",
    refusal="{fn}: {message}",
    internal="{fn}: internal error ({type})",  # the exception's text could carry ledger data: not sent
)


class FLContract(
    ConsortiumTransactions,
    BlobTransactions,
    RoundTransactions,
    UpdateTransactions,
    AttestationTransactions,
    HistoryTransactions,
    Contract,
):
    """Entry point for the shim: `fedchain_cc.fl.contract:FLContract`."""

    wording: ClassVar[Wording] = FL_WORDING
    # The consortium is set up by InitConsortium from an operator's certificate, never by Fabric's
    # --init-required call: an init call succeeds, runs nothing and writes nothing.
    init_dispatches: ClassVar[bool] = False

    def context(self, stub: ChaincodeStubAPI, fn: str) -> Tx:
        return Tx(stub, fn)

    def completed(self, ctx: Tx) -> None:
        ctx.flush()
