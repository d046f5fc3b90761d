"""Channel access rules, Fabric's default channel policies with NodeOUs (configtx.yaml sample).

Writers (may propose and submit transactions): an application org's client or admin.
Readers (may evaluate, read blocks and events, ask commit status): any member of an
application org (client, admin, peer) or of the orderer org. Peers and orderers therefore
cannot originate transactions, as on a real channel.
"""

from __future__ import annotations

from fedchain.identity import Identity, MSPManager

WRITER_OUS = frozenset({"client", "admin"})


class AccessDenied(Exception):
    pass


class ChannelACL:
    def __init__(self, msps: MSPManager, application_orgs: list[str], channel: str) -> None:
        self.msps = msps
        self.application_orgs = set(application_orgs)
        self.channel = channel

    def check_writer(self, ident: Identity) -> None:
        ou = self.msps.node_ou(ident)
        if ident.msp_id not in self.application_orgs or ou not in WRITER_OUS:
            raise AccessDenied(
                f"{ident.common_name!r} ({ident.msp_id}, role {ou or 'none'}) may not submit transactions on channel "
                f"{self.channel!r}: Writers are clients and admins of {', '.join(sorted(self.application_orgs))}")
