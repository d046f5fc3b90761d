"""Build signed Fabric chains offline, for the auditor's tests and its speed measurement.

A chain the auditor should accept has to be real in every byte it checks: a config block with
MSPs and policies, proposals signed by their creators, proposal responses signed by peers,
blocks chained by header hash and signed by an orderer. A live network only produces honest
chains, and the interesting audits are of chains a network would never produce (an approval
endorsed by the wrong org, a back-dated update), so this builds them directly.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fabric_protos.common import common_pb2, configtx_pb2, policies_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import msp_config_pb2, msp_principal_pb2
from fabric_protos.peer import proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from fedchain.gateway.proposal import build_proposal
from fedchain.identity import Identity, SigningIdentity
from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate
from fedchain.ledger import block_data_hash, block_header_bytes, block_header_hash

VALID = transaction_pb2.TxValidationCode.Value("VALID")
IDX = common_pb2.BlockMetadataIndex
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

Writes = Mapping[str, bytes | None]  # key -> value (None: delete)
Reads = Mapping[str, tuple[int, int] | None]  # key -> (block, tx) version (None: absent)


def signature_policy(n: int, principals: Sequence[tuple[str, str]]) -> policies_pb2.Policy:
    """n out of 'MSP.role' principals (role: member, admin, client, peer, orderer) as a config Policy."""
    roles = msp_principal_pb2.MSPRole.MSPRoleType
    env = policies_pb2.SignaturePolicyEnvelope(
        version=0,
        rule=policies_pb2.SignaturePolicy(n_out_of=policies_pb2.SignaturePolicy.NOutOf(
            n=n, rules=[policies_pb2.SignaturePolicy(signed_by=i) for i in range(len(principals))])),
        identities=[msp_principal_pb2.MSPPrincipal(
            principal_classification=msp_principal_pb2.MSPPrincipal.Classification.Value("ROLE"),
            principal=msp_principal_pb2.MSPRole(msp_identifier=msp, role=roles.Value(role.upper())).SerializeToString())
            for msp, role in principals],
    )
    return policies_pb2.Policy(type=policies_pb2.Policy.PolicyType.Value("SIGNATURE"), value=env.SerializeToString())


def implicit_meta(rule: str, sub_policy: str) -> policies_pb2.Policy:
    meta = policies_pb2.ImplicitMetaPolicy(sub_policy=sub_policy, rule=policies_pb2.ImplicitMetaPolicy.Rule.Value(rule))
    return policies_pb2.Policy(type=policies_pb2.Policy.PolicyType.Value("IMPLICIT_META"), value=meta.SerializeToString())


@dataclass
class Org:
    msp_id: str
    ca_key: object
    ca_cert: object
    members: dict[str, SigningIdentity] = field(default_factory=dict)


class SyntheticChannel:
    """Orgs with their own CA; `config_block()` first, then `block([...])` per block."""

    def __init__(self, orgs: Sequence[str] = ("Org1MSP", "Org2MSP", "Org3MSP"), channel: str = "fedchain",
                 *, with_policies: bool = True, orderer_msp: str = "OrdererMSP") -> None:
        self.channel = channel
        self.with_policies = with_policies
        self.orgs = {m: self._org(m) for m in orgs}
        self.orderer_org = self._org(orderer_msp)
        self.orderer = self.member(orderer_msp, "orderer0", ou="orderer")
        self.org_policies: dict[str, policies_pb2.Policy] = {
            m: signature_policy(1, [(m, "peer")]) for m in orgs}
        self.blocks: list[common_pb2.Block] = []
        self._tick = 0

    # --- identities ----------------------------------------------------------------------
    @staticmethod
    def _org(msp_id: str) -> Org:
        key, cert = create_ca(f"ca.{msp_id.lower()}", msp_id)
        return Org(msp_id, key, cert)

    def member(self, msp_id: str, name: str, *, ou: str = "client", role: str | None = None) -> SigningIdentity:
        """One enrolled identity (cached by name): ou 'peer', 'admin', 'client' or 'orderer'."""
        org = self.orderer_org if msp_id == self.orderer_org.msp_id else self.orgs[msp_id]
        if name not in org.members:
            key, cert = issue_certificate(org.ca_key, org.ca_cert, f"{name}.{msp_id.lower()}", org=msp_id, ou=ou,
                                          role=role)
            org.members[name] = SigningIdentity(Identity(msp_id, cert_to_pem(cert)), key)
        return org.members[name]

    def peer(self, msp_id: str) -> SigningIdentity:
        return self.member(msp_id, "peer0", ou="peer")

    def admin(self, msp_id: str) -> SigningIdentity:
        return self.member(msp_id, "admin", ou="admin")

    # --- block 0 ---------------------------------------------------------------------------
    def _msp_group(self, org: Org, policies: Mapping[str, policies_pb2.Policy]) -> configtx_pb2.ConfigGroup:
        ca_pem = cert_to_pem(org.ca_cert)

        def ou(name: str) -> msp_config_pb2.FabricOUIdentifier:
            return msp_config_pb2.FabricOUIdentifier(certificate=ca_pem, organizational_unit_identifier=name)

        fab = msp_config_pb2.FabricMSPConfig(
            name=org.msp_id, root_certs=[ca_pem], fabric_node_ous=msp_config_pb2.FabricNodeOUs(
                enable=True, client_ou_identifier=ou("client"), peer_ou_identifier=ou("peer"),
                admin_ou_identifier=ou("admin"), orderer_ou_identifier=ou("orderer")))
        group = configtx_pb2.ConfigGroup(mod_policy="Admins")
        group.values["MSP"].value = msp_config_pb2.MSPConfig(type=0, config=fab.SerializeToString()).SerializeToString()
        for name, policy in policies.items():
            group.policies[name].policy.CopyFrom(policy)
            group.policies[name].mod_policy = "Admins"
        return group

    def config_block(self, app_policies: Mapping[str, policies_pb2.Policy] | None = None) -> common_pb2.Block:
        """Block 0. Default policies follow Fabric's test network: each org's Endorsement 'a peer of the org',
        Application LifecycleEndorsement and Endorsement 'MAJORITY Endorsement'; none if with_policies=False."""
        if app_policies is None:
            app_policies = {"LifecycleEndorsement": implicit_meta("MAJORITY", "Endorsement"),
                            "Endorsement": implicit_meta("MAJORITY", "Endorsement")} if self.with_policies else {}
        root = configtx_pb2.ConfigGroup(mod_policy="Admins")
        app = root.groups["Application"]
        for name, policy in app_policies.items():
            app.policies[name].policy.CopyFrom(policy)
        for msp_id, org in self.orgs.items():
            policies = {"Endorsement": self.org_policies[msp_id]} if self.with_policies else {}
            app.groups[msp_id].CopyFrom(self._msp_group(org, policies))
        root.groups["Orderer"].groups[self.orderer_org.msp_id].CopyFrom(self._msp_group(self.orderer_org, {}))
        cfg = configtx_pb2.ConfigEnvelope(config=configtx_pb2.Config(sequence=0, channel_group=root))
        chdr = common_pb2.ChannelHeader(type=common_pb2.HeaderType.Value("CONFIG"), version=1, channel_id=self.channel,
                                        timestamp=_ts(T0))
        shdr = common_pb2.SignatureHeader(creator=self.orderer.serialize(), nonce=os.urandom(24))
        payload = common_pb2.Payload(header=common_pb2.Header(channel_header=chdr.SerializeToString(),
                                                              signature_header=shdr.SerializeToString()),
                                     data=cfg.SerializeToString()).SerializeToString()
        env = common_pb2.Envelope(payload=payload, signature=self.orderer.sign(payload)).SerializeToString()
        return self.block([env])

    # --- transactions --------------------------------------------------------------------
    def next_time(self) -> dt.datetime:
        """A clock that advances one second per transaction (tests pass explicit times where they matter)."""
        self._tick += 1
        return T0 + dt.timedelta(seconds=self._tick)

    def tx(self, creator: SigningIdentity, chaincode: str, function: str, args: Sequence[str | bytes] = (), *,
           endorsers: Iterable[SigningIdentity] = (), writes: Writes | None = None, reads: Reads | None = None,
           collections: Mapping[str, Sequence[str]] | None = None, namespace: str | None = None,
           when: dt.datetime | None = None, payload: bytes = b"") -> bytes:
        """A signed, endorsed transaction envelope. `collections`: collection name -> keys written (hashed,
        as private-data writes appear on the ledger)."""
        built = build_proposal(self.channel, chaincode, function, list(args), creator.serialize(),
                               timestamp=_ts(when or self.next_time()))
        results = rwset_bytes(namespace or chaincode, reads or {}, writes or {}, collections or {})
        env = endorse(built.proposal_bytes, list(endorsers), results=results, payload=payload)
        env.signature = creator.sign(env.payload)
        return env.SerializeToString()

    def block(self, envelopes: Sequence[bytes], codes: Sequence[int] | None = None) -> common_pb2.Block:
        """The next block, chained, flagged (all VALID by default) and signed by the orderer."""
        previous = self.blocks[-1] if self.blocks else None
        header = common_pb2.BlockHeader(
            number=len(self.blocks), previous_hash=block_header_hash(previous.header) if previous else b"",
            data_hash=block_data_hash(list(envelopes)))
        value = common_pb2.OrdererBlockMetadata(last_config=common_pb2.LastConfig(index=0)).SerializeToString()
        shdr = common_pb2.SignatureHeader(creator=self.orderer.serialize(), nonce=os.urandom(24)).SerializeToString()
        metadata = [b""] * len(IDX.items())
        metadata[IDX.Value("SIGNATURES")] = common_pb2.Metadata(value=value, signatures=[common_pb2.MetadataSignature(
            signature_header=shdr, signature=self.orderer.sign(value + shdr + block_header_bytes(header)))]
        ).SerializeToString()
        metadata[IDX.Value("TRANSACTIONS_FILTER")] = bytes(codes if codes is not None else [VALID] * len(envelopes))
        block = common_pb2.Block(header=header, data=common_pb2.BlockData(data=list(envelopes)),
                                 metadata=common_pb2.BlockMetadata(metadata=metadata))
        self.blocks.append(block)
        return block


def _ts(when: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def rwset_bytes(namespace: str, reads: Reads, writes: Writes, collections: Mapping[str, Sequence[str]]) -> bytes:
    kv = kv_rwset_pb2.KVRWSet()
    for key, version in reads.items():
        r = kv.reads.add(key=key)
        if version is not None:
            r.version.block_num, r.version.tx_num = version
    for key, value in writes.items():
        kv.writes.add(key=key, value=value or b"", is_delete=value is None)
    ns = rwset_pb2.NsReadWriteSet(namespace=namespace, rwset=kv.SerializeToString())
    for name, keys in collections.items():
        hashed = kv_rwset_pb2.HashedRWSet(hashed_writes=[
            kv_rwset_pb2.KVWriteHash(key_hash=hashlib.sha256(k.encode()).digest(), value_hash=hashlib.sha256(k.encode()).digest())
            for k in keys])
        ns.collection_hashed_rwset.add(collection_name=name, hashed_rwset=hashed.SerializeToString())
    return rwset_pb2.TxReadWriteSet(data_model=rwset_pb2.TxReadWriteSet.KV, ns_rwset=[ns]).SerializeToString()


def endorse(proposal_bytes: bytes, endorsers: Sequence[SigningIdentity], *, results: bytes = b"",
            payload: bytes = b"") -> common_pb2.Envelope:
    """What peers and the gateway make of a proposal (Fabric's protoutil.CreateSignedTx), still unsigned."""
    proposal = proposal_pb2.Proposal.FromString(proposal_bytes)
    header = common_pb2.Header.FromString(proposal.header)
    cpp = proposal_pb2.ChaincodeProposalPayload.FromString(proposal.payload)
    chdr = common_pb2.ChannelHeader.FromString(header.channel_header)
    ext = proposal_pb2.ChaincodeHeaderExtension.FromString(chdr.extension)
    stripped = proposal_pb2.ChaincodeProposalPayload(input=cpp.input).SerializeToString()
    action = proposal_pb2.ChaincodeAction(results=results, response=proposal_response_pb2.Response(
        status=200, payload=payload), chaincode_id=ext.chaincode_id)
    prp = proposal_response_pb2.ProposalResponsePayload(
        proposal_hash=hashlib.sha256(header.channel_header + header.signature_header + stripped).digest(),
        extension=action.SerializeToString()).SerializeToString()
    cap = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=stripped,
        action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=prp, endorsements=[
            proposal_response_pb2.Endorsement(endorser=e.serialize(), signature=e.sign(prp + e.serialize()))
            for e in endorsers]))
    tx = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(
        header=header.signature_header, payload=cap.SerializeToString())])
    return common_pb2.Envelope(payload=common_pb2.Payload(header=header, data=tx.SerializeToString()).SerializeToString())
