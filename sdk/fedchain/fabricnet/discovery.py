"""Ask a peer's discovery service whether the chaincode can be endorsed yet.

The Fabric Gateway builds its endorsement plan from discovery. Right after the commit (and
after a restart) the other orgs' peers, or the fact that they have the chaincode installed,
may not have reached this peer through gossip yet, and the first `submit` would fail with
"no combination of peers can be derived". `up` asks the same question the gateway will ask
(a signed ChaincodeQuery, official protos) and returns only once the answer has a layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from fabric_protos.discovery import protocol_pb2, protocol_pb2_grpc
from fabric_protos.peer import proposal_response_pb2

from fedchain.identity import SigningIdentity


@dataclass(frozen=True)
class EndorsementPlan:
    """What discovery answered: groups of endorsers and how many of each group a layout needs."""

    error: str | None
    groups: dict[str, int]  # group -> peers available
    layouts: list[dict[str, int]]

    @property
    def ready(self) -> bool:
        return self.error is None and any(
            all(self.groups.get(g, 0) >= n for g, n in layout.items()) for layout in self.layouts
        )


def chaincode_query(signer: SigningIdentity, channel: str, chaincode: str,
                    tls_cert_hash: bytes = b"") -> protocol_pb2.SignedRequest:
    request = protocol_pb2.Request(
        authentication=protocol_pb2.AuthInfo(client_identity=signer.serialize(), client_tls_cert_hash=tls_cert_hash),
        queries=[protocol_pb2.Query(channel=channel, cc_query=protocol_pb2.ChaincodeQuery(interests=[
            proposal_response_pb2.ChaincodeInterest(chaincodes=[proposal_response_pb2.ChaincodeCall(name=chaincode)])
        ]))],
    )
    payload = request.SerializeToString()
    return protocol_pb2.SignedRequest(payload=payload, signature=signer.sign(payload))


def parse_plan(response: protocol_pb2.Response) -> EndorsementPlan:
    if not response.results:
        return EndorsementPlan("empty discovery response", {}, [])
    result = response.results[0]
    if result.HasField("error"):
        return EndorsementPlan(result.error.content or "discovery error", {}, [])
    if not result.cc_query_res.content:
        return EndorsementPlan("no endorsement descriptor", {}, [])
    desc = result.cc_query_res.content[0]
    groups = {g: len(p.peers) for g, p in desc.endorsers_by_groups.items()}
    layouts = [dict(layout.quantities_by_group) for layout in desc.layouts]
    return EndorsementPlan(None, groups, layouts)


def endorsement_plan(endpoint: str, tls_root_cert: bytes, server_name: str | None, signer: SigningIdentity,
                     channel: str, chaincode: str, timeout: float = 5.0) -> EndorsementPlan:
    """One discovery round trip over TLS; transport errors come back as a not-ready plan."""
    opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    with grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(root_certificates=tls_root_cert),
                             options=opts) as ch:
        stub = protocol_pb2_grpc.DiscoveryStub(ch)
        try:
            response = stub.Discover(chaincode_query(signer, channel, chaincode), timeout=timeout)
        except grpc.RpcError as exc:
            return EndorsementPlan(f"{exc.code().name}: {exc.details()}", {}, [])
    return parse_plan(response)
