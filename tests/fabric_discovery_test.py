"""Discovery readiness probe: signed ChaincodeQuery over TLS, answers parsed into an endorsement plan."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest
from fabric_protos.discovery import protocol_pb2, protocol_pb2_grpc
from fedchain.fabricnet.discovery import EndorsementPlan, endorsement_plan, parse_plan
from fedchain.identity import generate_consortium
from fedchain.identity.crypto import verify
from fedchain.identity.identity import Identity


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    return generate_consortium(tmp_path_factory.mktemp("crypto"), ("Org1", "Org2", "Org3"))


class FakeDiscovery(protocol_pb2_grpc.DiscoveryServicer):
    def __init__(self, answer: protocol_pb2.Response) -> None:
        self.answer = answer
        self.requests: list[protocol_pb2.SignedRequest] = []

    def Discover(self, request, context):  # noqa: N802 - gRPC API
        self.requests.append(request)
        return self.answer


def _descriptor(groups: dict[str, int], layouts: list[dict[str, int]]) -> protocol_pb2.Response:
    desc = protocol_pb2.EndorsementDescriptor(chaincode="fedchain")
    for g, n in groups.items():
        desc.endorsers_by_groups[g].peers.extend([protocol_pb2.Peer(identity=b"x")] * n)
    for layout in layouts:
        desc.layouts.add().quantities_by_group.update(layout)
    return protocol_pb2.Response(results=[protocol_pb2.QueryResult(
        cc_query_res=protocol_pb2.ChaincodeQueryResult(content=[desc]))])


def test_probe_over_tls_sends_signed_chaincode_query(consortium):
    org = consortium.orgs[0]
    servicer = FakeDiscovery(_descriptor({"G0": 1, "G1": 1, "G2": 1}, [{"G0": 1, "G1": 1}, {"G1": 1, "G2": 1}]))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    protocol_pb2_grpc.add_DiscoveryServicer_to_server(servicer, server)
    creds = grpc.ssl_server_credentials([(org.peer_tls_key.read_bytes(), org.peer_tls_cert.read_bytes())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        signer = org.admin_identity
        plan = endorsement_plan(f"127.0.0.1:{port}", org.tls_ca_cert_path.read_bytes(), org.node_name, signer,
                                "fedchain", "fedchain")
    finally:
        server.stop(None)
    assert plan.ready and plan.groups == {"G0": 1, "G1": 1, "G2": 1} and len(plan.layouts) == 2
    (req,) = servicer.requests
    inner = protocol_pb2.Request.FromString(req.payload)
    ident = Identity.deserialize(inner.authentication.client_identity)
    assert ident.msp_id == "Org1MSP" and verify(ident.certificate.public_key(), req.signature, req.payload)
    (query,) = inner.queries
    assert query.channel == "fedchain"
    assert [c.name for i in query.cc_query.interests for c in i.chaincodes] == ["fedchain"]


def test_not_ready_answers():
    assert not parse_plan(protocol_pb2.Response()).ready
    err = protocol_pb2.Response(results=[protocol_pb2.QueryResult(
        error=protocol_pb2.Error(content="no peer combination can satisfy the endorsement policy"))])
    plan = parse_plan(err)
    assert not plan.ready and "endorsement policy" in plan.error
    # a layout needs 2 peers of G1 but only 1 is known
    assert not parse_plan(_descriptor({"G0": 1, "G1": 1}, [{"G1": 2}])).ready
    assert parse_plan(_descriptor({"G0": 1, "G1": 2}, [{"G1": 2}])).ready
    assert not EndorsementPlan(None, {}, []).ready


def test_unreachable_peer_is_not_ready(consortium):
    from fedchain.netctl.process import free_port

    org = consortium.orgs[0]
    plan = endorsement_plan(f"127.0.0.1:{free_port()}", org.tls_ca_cert_path.read_bytes(), org.node_name,
                            org.admin_identity, "fedchain", "fedchain", timeout=1.0)
    assert not plan.ready and plan.error.startswith("UNAVAILABLE")
