"""Lifecycle transactions are audited under the policies Fabric applies, read from the config block.

Fabric 2.5 endorses `_lifecycle` ApproveChaincodeDefinitionForMyOrg under the approving org's
Endorsement policy and CommitChaincodeDefinition under the channel's LifecycleEndorsement; the FL
chaincode's MAJORITY applies to neither.
"""

from __future__ import annotations

from fabric_protos.peer.lifecycle import lifecycle_pb2
from fedchain.audit.chain import ChainAuditor
from fedchain.audit.channel_config import channel_orgs
from fedchain.audit.policy import NOutOf, Principal, SignaturePolicy, SignedBy, Signer
from fedchain.audit.synthetic import SyntheticChannel, implicit_meta, signature_policy

ORGS = ("Org1MSP", "Org2MSP", "Org3MSP")


def _approve(ch: SyntheticChannel, org: str, endorsers: list[str], creator_org: str | None = None) -> bytes:
    args = lifecycle_pb2.ApproveChaincodeDefinitionForMyOrgArgs(sequence=1, name="fedchain", version="1.0")
    return ch.tx(ch.admin(creator_org or org), "_lifecycle", "ApproveChaincodeDefinitionForMyOrg",
                 [args.SerializeToString()], endorsers=[ch.peer(e) for e in endorsers],
                 reads={"namespaces/fields/fedchain/Sequence": None},
                 collections={f"_implicit_org_{org}": ["namespaces/fields/fedchain#1/EndorsementInfo"]})


def _commit(ch: SyntheticChannel, endorsers: list[str]) -> bytes:
    args = lifecycle_pb2.CommitChaincodeDefinitionArgs(sequence=1, name="fedchain", version="1.0")
    return ch.tx(ch.admin("Org1MSP"), "_lifecycle", "CommitChaincodeDefinition", [args.SerializeToString()],
                 endorsers=[ch.peer(e) for e in endorsers],
                 writes={"namespaces/metadata/fedchain": b"ChaincodeDefinition",
                         "namespaces/fields/fedchain/Sequence": b"\x08\x01"})


def _fl_tx(ch: SyntheticChannel, endorsers: list[str]) -> bytes:
    op = ch.member("Org1MSP", "operator", ou="admin", role="operator")
    return ch.tx(op, "fedchain", "InitConsortium", ["{}"], endorsers=[ch.peer(e) for e in endorsers],
                 writes={"consortium": b"{}"})


def _deployment(ch: SyntheticChannel, *, approvals: list[tuple[str, list[str]]] | None = None,
                commit: list[str] | None = None) -> list:
    """Block 0, one approval per block (as `peer lifecycle chaincode approveformyorg` per org), the commit,
    then an FL transaction."""
    ch.config_block()
    for org, endorsers in approvals or [("Org1MSP", ["Org1MSP"]), ("Org2MSP", ["Org2MSP"])]:
        ch.block([_approve(ch, org, endorsers)])
    ch.block([_commit(ch, commit or ["Org1MSP", "Org2MSP"])])
    ch.block([_fl_tx(ch, ["Org1MSP", "Org3MSP"])])
    return ch.blocks


def _audit(blocks):
    return ChainAuditor(policies={"fedchain": "MAJORITY"}).feed_all(blocks)


def test_config_block_policies_are_read():
    ch = SyntheticChannel(ORGS)
    ch.org_policies["Org2MSP"] = signature_policy(2, [("Org2MSP", "peer"), ("Org2MSP", "admin")])
    orgs = channel_orgs(ch.config_block())
    app = orgs.policies
    assert app.group["LifecycleEndorsement"].describe() == "MAJORITY Endorsement"
    assert app.group["Endorsement"].describe() == "MAJORITY Endorsement"
    assert app.org_policy("Org1MSP").describe() == "'Org1MSP.peer'"
    assert app.org_policy("Org2MSP").describe() == "AND('Org2MSP.peer', 'Org2MSP.admin')"


def test_a_real_fabric_deployment_audits_clean():
    audit = _audit(_deployment(SyntheticChannel(ORGS)))
    assert audit.findings == [] and audit.notes == []
    assert audit.codes == {"VALID": 4} and audit.height == 5


def test_an_approval_endorsed_by_another_org_is_reported():
    ch = SyntheticChannel(ORGS)
    audit = _audit(_deployment(ch, approvals=[("Org1MSP", ["Org2MSP"]), ("Org2MSP", ["Org2MSP"])]))
    assert [(f.block, f.problem) for f in audit.findings] == [
        (1, "_lifecycle ApproveChaincodeDefinitionForMyOrg flagged VALID but endorsed by ['Org2MSP']: does not "
            "satisfy /Channel/Application/Org1MSP/Endorsement ('Org1MSP.peer')")]


def test_the_approving_org_is_the_creators_when_no_implicit_collection_is_written():
    ch = SyntheticChannel(ORGS)
    ch.config_block()
    args = lifecycle_pb2.ApproveChaincodeDefinitionForMyOrgArgs(sequence=1, name="fedchain").SerializeToString()
    ch.block([ch.tx(ch.admin("Org3MSP"), "_lifecycle", "ApproveChaincodeDefinitionForMyOrg", [args],
                    endorsers=[ch.peer("Org1MSP")])])
    problems = [f.problem for f in _audit(ch.blocks).findings]
    assert len(problems) == 1 and "/Channel/Application/Org3MSP/Endorsement" in problems[0], problems


def test_a_commit_endorsed_by_a_minority_is_reported():
    audit = _audit(_deployment(SyntheticChannel(ORGS), commit=["Org1MSP"]))
    assert [(f.block, f.problem) for f in audit.findings] == [
        (3, "_lifecycle CommitChaincodeDefinition flagged VALID but endorsed by ['Org1MSP']: does not satisfy "
            "/Channel/Application/LifecycleEndorsement (MAJORITY Endorsement)")]


def test_org_policies_are_evaluated_not_assumed():
    """An org whose Endorsement needs its peer AND its admin: a peer alone is not enough, for its approval
    and for its vote in the commit's MAJORITY."""
    ch = SyntheticChannel(ORGS)
    ch.org_policies["Org2MSP"] = signature_policy(2, [("Org2MSP", "peer"), ("Org2MSP", "member")])
    audit = _audit(_deployment(ch))
    problems = [f.problem for f in audit.findings]
    assert len(problems) == 2, problems
    assert "does not satisfy /Channel/Application/Org2MSP/Endorsement (AND('Org2MSP.peer', 'Org2MSP.member'))" \
        in problems[0]
    assert "CommitChaincodeDefinition" in problems[1] and "LifecycleEndorsement" in problems[1]


def test_a_stricter_lifecycle_policy_from_the_config_block_applies():
    ch = SyntheticChannel(ORGS)
    ch.config_block({"LifecycleEndorsement": implicit_meta("ALL", "Endorsement"),
                     "Endorsement": implicit_meta("MAJORITY", "Endorsement")})
    ch.block([_commit(ch, ["Org1MSP", "Org2MSP"])])
    problems = [f.problem for f in _audit(ch.blocks).findings]
    assert problems == ["_lifecycle CommitChaincodeDefinition flagged VALID but endorsed by ['Org1MSP', 'Org2MSP']: "
                        "does not satisfy /Channel/Application/LifecycleEndorsement (ALL Endorsement)"]


def test_other_chaincodes_use_the_channel_endorsement_policy():
    ch = SyntheticChannel(ORGS)
    ch.config_block()
    ch.block([ch.tx(ch.member("Org1MSP", "app"), "othercc", "put", ["k"], endorsers=[ch.peer("Org1MSP")])])
    ch.block([ch.tx(ch.member("Org1MSP", "app"), "othercc", "put", ["k"],
                    endorsers=[ch.peer("Org1MSP"), ch.peer("Org3MSP")])])
    assert [(f.block, f.problem) for f in _audit(ch.blocks).findings] == [
        (1, "othercc put flagged VALID but endorsed by ['Org1MSP']: does not satisfy /Channel/Application/Endorsement "
            "(MAJORITY Endorsement)")]


def test_a_config_block_without_policies_falls_back_to_fabric_defaults_with_a_note():
    ch = SyntheticChannel(ORGS, with_policies=False)  # like the embedded network's block 0
    audit = _audit(_deployment(ch))
    assert audit.findings == []
    assert audit.notes == [
        "the config block has no /Channel/Application/LifecycleEndorsement policy: used MAJORITY Endorsement "
        "(Fabric's default) for _lifecycle transactions",
        *(f"the config block has no /Channel/Application/{org}/Endorsement policy: used '{org}.peer' (Fabric's usual "
          f"one)" for org in ORGS),
    ]
    bad = _audit(_deployment(SyntheticChannel(ORGS, with_policies=False), commit=["Org2MSP"]))
    assert len(bad.findings) == 1 and "LifecycleEndorsement (MAJORITY Endorsement)" in bad.findings[0].problem


def test_signature_policy_evaluation_follows_fabric():
    """n-out-of consumes each signature once; roles match the NodeOU, MEMBER any identity of the MSP."""
    p1, a1, c1, p2 = (Signer("Org1MSP", "peer", identity=b"p1"), Signer("Org1MSP", "admin", identity=b"a1"),
                      Signer("Org1MSP", "client", identity=b"c1"), Signer("Org2MSP", "peer", identity=b"p2"))
    peer1, member1, admin1 = (Principal("role", "Org1MSP", r) for r in ("peer", "member", "admin"))
    two_of_org1 = SignaturePolicy(NOutOf(2, (SignedBy(0), SignedBy(1))), (member1, member1))
    assert not two_of_org1.satisfied([p1]) and not two_of_org1.satisfied([p1, p1])  # one signer counts once
    assert two_of_org1.satisfied([p1, c1]) and not two_of_org1.satisfied([p1, p2])
    peer_and_admin = SignaturePolicy(NOutOf(2, (SignedBy(0), SignedBy(1))), (member1, peer1))
    assert peer_and_admin.satisfied([a1, p1]) and not peer_and_admin.satisfied([c1, a1])
    nested = SignaturePolicy(NOutOf(1, (NOutOf(2, (SignedBy(0), SignedBy(1))), SignedBy(2))),
                             (peer1, admin1, Principal("role", "Org2MSP", "peer")))
    assert nested.satisfied([p2]) and nested.satisfied([p1, a1]) and not nested.satisfied([p1, c1])
    assert nested.describe() == "OR(AND('Org1MSP.peer', 'Org1MSP.admin'), 'Org2MSP.peer')"
    assert not SignaturePolicy(SignedBy(5), (peer1,)).satisfied([p1])  # a bad index satisfies nothing
