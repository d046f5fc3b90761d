"""An org's endorsing peer: simulate over the chaincode protocol, sign the proposal response."""

from __future__ import annotations

from dataclasses import dataclass

from fabric_protos.common import common_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from fedchain.identity import SigningIdentity

from fedchain_devnet.ccconn import ChaincodeConnection, Execution
from fedchain_devnet.proposal import ParsedProposal
from fedchain_devnet.simulator import TxSimulator
from fedchain_devnet.statedb import StateDB


class EndorsementFailed(Exception):
    """The chaincode returned an error status or could not run; message is the chaincode's."""


@dataclass
class Endorsed:
    response: proposal_response_pb2.Response  # chaincode response
    prp_bytes: bytes
    endorsement: proposal_response_pb2.Endorsement


class Peer:
    def __init__(self, msp_id: str, name: str, identity: SigningIdentity, state: StateDB,
                 connections: dict[str, ChaincodeConnection], timeout: float = 30.0) -> None:
        self.msp_id = msp_id
        self.name = name
        self.identity = identity
        self.state = state
        self.connections = connections
        self.timeout = timeout
        self._endorser = identity.serialize()

    def simulate(self, p: ParsedProposal) -> Execution:
        return self.connections[p.chaincode].finish(self.begin(p), self.timeout)

    def begin(self, p: ParsedProposal):
        """Start simulating (TRANSACTION sent); `endorse(p, handle)` waits for it and signs."""
        sim = TxSimulator(self.state, p.chaincode, p.tx_id)
        return self.connections[p.chaincode].begin(p.channel, p.tx_id, p.input_bytes, p.signed, sim)

    def endorse(self, p: ParsedProposal, handle=None) -> Endorsed:
        handle = handle if handle is not None else self.begin(p)
        ex = self.connections[p.chaincode].finish(handle, self.timeout)
        if ex.response.status >= 400:
            raise EndorsementFailed(f"chaincode response {ex.response.status}, {ex.response.message}")
        if ex.simulator.paginated:
            raise EndorsementFailed("paginated queries are supported only in read-only transactions (use evaluate)")
        action = proposal_pb2.ChaincodeAction(
            results=ex.simulator.rwset_bytes(), events=ex.event, response=ex.response,
            chaincode_id=chaincode_pb2.ChaincodeID(name=p.chaincode),
        )
        prp = proposal_response_pb2.ProposalResponsePayload(
            proposal_hash=p.proposal_hash, extension=action.SerializeToString()).SerializeToString()
        signature = self.identity.sign(prp + self._endorser)
        return Endorsed(ex.response, prp, proposal_response_pb2.Endorsement(endorser=self._endorser, signature=signature))


def build_transaction(p: ParsedProposal, prp_bytes: bytes,
                      endorsements: list[proposal_response_pb2.Endorsement]) -> common_pb2.Envelope:
    """The unsigned transaction envelope, laid out exactly as Fabric's protoutil.CreateSignedTx."""
    cap = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=p.payload_no_transient,
        action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=prp_bytes, endorsements=endorsements),
    )
    tx = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(
        header=p.header.signature_header, payload=cap.SerializeToString())])
    payload = common_pb2.Payload(header=p.header, data=tx.SerializeToString())
    return common_pb2.Envelope(payload=payload.SerializeToString())
