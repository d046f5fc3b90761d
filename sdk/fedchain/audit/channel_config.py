"""Read the channel's organisations (MSP roots of trust) out of a config block.

Uses Fabric's standard config tree (Config.channel_group → Application / Orderer →
org → "MSP" value = MSPConfig(FabricMSPConfig)), so the same code reads a real Fabric
channel's genesis block and the embedded network's. The Application group's policies
(LifecycleEndorsement, Endorsement) and each org's (Endorsement) are read too: they decide
which endorsements a lifecycle or non-FL transaction needs. The embedded network's block 0
carries no policies; the chain audit then uses Fabric's defaults and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509
from fabric_protos.common import common_pb2, configtx_pb2
from fabric_protos.msp import msp_config_pb2

from fedchain.audit.policy import ApplicationPolicies, Policy, PolicyParseError, parse_policy
from fedchain.identity import MSPConfig, MSPManager


class ConfigBlockError(ValueError):
    """Block 0 is not a channel config block we can read MSPs from."""


@dataclass(frozen=True)
class ChannelOrgs:
    application: list[MSPConfig]
    orderer: list[MSPConfig]
    policies: ApplicationPolicies = field(default_factory=ApplicationPolicies)

    def msp_manager(self) -> MSPManager:
        return MSPManager(self.application + self.orderer)

    @property
    def application_msp_ids(self) -> list[str]:
        return sorted(m.msp_id for m in self.application)


def _msp_from_group(group: configtx_pb2.ConfigGroup) -> MSPConfig | None:
    if "MSP" not in group.values:
        return None
    mspc = msp_config_pb2.MSPConfig.FromString(group.values["MSP"].value)
    fab = msp_config_pb2.FabricMSPConfig.FromString(mspc.config)

    def certs(pems) -> list[x509.Certificate]:
        out: list[x509.Certificate] = []
        for pem in pems:
            out.extend(x509.load_pem_x509_certificates(bytes(pem)))
        return out

    return MSPConfig(
        msp_id=fab.name,
        root_certs=certs(fab.root_certs),
        intermediate_certs=certs(fab.intermediate_certs),
        tls_root_certs=certs(fab.tls_root_certs),
        node_ous=fab.fabric_node_ous.enable,
    )


def channel_orgs(config_block: common_pb2.Block) -> ChannelOrgs:
    if not config_block.data.data:
        raise ConfigBlockError(f"block {config_block.header.number} holds no transaction")
    try:
        env = common_pb2.Envelope.FromString(config_block.data.data[0])
        payload = common_pb2.Payload.FromString(env.payload)
        chdr = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        if chdr.type != common_pb2.HeaderType.Value("CONFIG"):
            raise ConfigBlockError(f"block {config_block.header.number} is not a CONFIG block (type {chdr.type})")
        cfg = configtx_pb2.ConfigEnvelope.FromString(payload.data).config
    except ConfigBlockError:
        raise
    except Exception as exc:
        raise ConfigBlockError(f"block {config_block.header.number} does not decode as a config block: {exc}") from exc
    groups = cfg.channel_group.groups

    def orgs(name: str) -> list[MSPConfig]:
        if name not in groups:
            return []
        return [m for g in groups[name].groups.values() if (m := _msp_from_group(g)) is not None]

    app = orgs("Application")
    if not app:
        raise ConfigBlockError("config block lists no application organisations")
    return ChannelOrgs(application=app, orderer=orgs("Orderer"), policies=_application_policies(groups["Application"]))


def _policies(group: configtx_pb2.ConfigGroup, where: str) -> dict[str, Policy]:
    out: dict[str, Policy] = {}
    for name, cp in group.policies.items():
        try:
            policy = parse_policy(cp.policy, f"{where}/{name}")
        except PolicyParseError as exc:
            raise ConfigBlockError(str(exc)) from exc
        if policy is not None:
            out[name] = policy
    return out


def _application_policies(app: configtx_pb2.ConfigGroup) -> ApplicationPolicies:
    """/Channel/Application's policies, and each org's keyed by its MSP id (what endorsers carry)."""
    orgs: dict[str, dict[str, Policy]] = {}
    for name, group in app.groups.items():
        msp = _msp_from_group(group)
        if msp is not None:
            orgs[msp.msp_id] = _policies(group, f"/Channel/Application/{name}")
    return ApplicationPolicies(group=_policies(app, "/Channel/Application"), orgs=orgs)
