"""Block 0: a CONFIG transaction listing the channel's orgs and their MSP roots of trust.

Fabric's standard config tree (Channel → Application/Orderer → org → "MSP" value with a
FabricMSPConfig), so an auditor verifies every signature in the chain from block 0 alone,
with the same code it uses for a real Fabric channel.
"""

from __future__ import annotations

import os

from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.msp import msp_config_pb2
from fedchain.identity import MSPConfig, SigningIdentity
from fedchain.identity.certs import cert_to_pem
from google.protobuf.timestamp_pb2 import Timestamp

CONFIG = common_pb2.HeaderType.Value("CONFIG")


def _org_group(msp: MSPConfig) -> configtx_pb2.ConfigGroup:
    ca_pem = cert_to_pem(msp.root_certs[0])

    def ou(name: str) -> msp_config_pb2.FabricOUIdentifier:
        return msp_config_pb2.FabricOUIdentifier(certificate=ca_pem, organizational_unit_identifier=name)

    fab = msp_config_pb2.FabricMSPConfig(
        name=msp.msp_id,
        root_certs=msp.root_pems(),
        intermediate_certs=[cert_to_pem(c) for c in msp.intermediate_certs],
        tls_root_certs=msp.tls_root_pems(),
        crypto_config=msp_config_pb2.FabricCryptoConfig(signature_hash_family="SHA2",
                                                        identity_identifier_hash_function="SHA256"),
        fabric_node_ous=msp_config_pb2.FabricNodeOUs(
            enable=msp.node_ous, client_ou_identifier=ou("client"), peer_ou_identifier=ou("peer"),
            admin_ou_identifier=ou("admin"), orderer_ou_identifier=ou("orderer")),
    )
    value = msp_config_pb2.MSPConfig(type=0, config=fab.SerializeToString()).SerializeToString()
    group = configtx_pb2.ConfigGroup(mod_policy="Admins")
    group.values["MSP"].CopyFrom(configtx_pb2.ConfigValue(value=value, mod_policy="Admins"))
    return group


def genesis_envelope(channel: str, app_msps: list[MSPConfig], orderer_msps: list[MSPConfig],
                     orderer: SigningIdentity) -> bytes:
    root = configtx_pb2.ConfigGroup(mod_policy="Admins")
    for section, msps in (("Application", app_msps), ("Orderer", orderer_msps)):
        group = root.groups[section]
        group.mod_policy = "Admins"
        for msp in msps:
            group.groups[msp.msp_id].CopyFrom(_org_group(msp))
    config_env = configtx_pb2.ConfigEnvelope(config=configtx_pb2.Config(sequence=0, channel_group=root))
    ts = Timestamp()
    ts.GetCurrentTime()
    chdr = common_pb2.ChannelHeader(type=CONFIG, version=1, channel_id=channel, timestamp=ts)
    shdr = common_pb2.SignatureHeader(creator=orderer.serialize(), nonce=os.urandom(24))
    payload = common_pb2.Payload(
        header=common_pb2.Header(channel_header=chdr.SerializeToString(), signature_header=shdr.SerializeToString()),
        data=config_env.SerializeToString(),
    ).SerializeToString()
    return common_pb2.Envelope(payload=payload, signature=orderer.sign(payload)).SerializeToString()
