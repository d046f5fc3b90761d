"""Assembles one devnet: consortium identities, ledger, one peer per org, chaincode links, orderer."""

from __future__ import annotations

import logging
import time

from fedchain.identity import Consortium

from fedchain_devnet import policy as policies
from fedchain_devnet.acl import ChannelACL
from fedchain_devnet.ccconn import ChaincodeConnection
from fedchain_devnet.config import DevnetConfig
from fedchain_devnet.genesis import genesis_envelope
from fedchain_devnet.ledger import Ledger
from fedchain_devnet.orderer import Orderer
from fedchain_devnet.peer import Peer
from fedchain_devnet.validator import Validator

log = logging.getLogger(__name__)


class NodeError(Exception):
    """The devnet cannot start (bad config, missing material, chaincode unreachable)."""


class Node:
    def __init__(self, config: DevnetConfig) -> None:
        self.config = config
        self.channel = config.channel
        self.consortium = Consortium.load(config.crypto_dir)
        self.msps = self.consortium.msp_manager()
        self.org_ids = [o.msp_id for o in self.consortium.orgs]
        self.gateway_org = config.gateway_org or self.org_ids[0]
        if self.gateway_org not in self.org_ids:
            raise NodeError(f"gateway_org {self.gateway_org!r} is not one of {self.org_ids}")
        for cc in config.chaincodes:
            if isinstance(cc.policy, list) and not set(cc.policy) <= set(self.org_ids):
                raise NodeError(f"chaincode {cc.name!r}: policy names orgs outside the channel: {cc.policy}")
        self.policies: dict[str, policies.Policy] = {cc.name: cc.policy for cc in config.chaincodes}
        self.chaincode_names = list(self.policies)
        self.selector = policies.Selector(self.org_ids)
        self.acl = ChannelACL(self.msps, self.org_ids, self.channel)
        orderer_org = self.consortium.orderer
        self.orderer_msp_id = orderer_org.msp_id
        self.ledger = Ledger(
            config.data_dir, config.channel,
            lambda state: Validator(config.channel, self.msps, self.org_ids, self.policies, state),
            self.msps, orderer_org.node_identity, {orderer_org.msp_id},
        )
        self.connections: list[ChaincodeConnection] = []
        self.peers: dict[str, Peer] = {}
        for org in self.consortium.orgs:
            conns = {}
            for cc in config.chaincodes:
                conn = ChaincodeConnection(cc, org.node_name, config.max_message_bytes)
                conns[cc.name] = conn
                self.connections.append(conn)
            self.peers[org.msp_id] = Peer(org.msp_id, org.node_name, org.peer_identity, self.ledger.state, conns)
        self.orderer = Orderer(self.ledger.commit, config.batch_timeout_ms / 1000, config.max_message_count,
                               config.max_pending, config.preferred_max_bytes, tx_status=self.ledger.tx_status)

    def select_endorsers(self, chaincode: str) -> list[str]:
        return self.selector.select(self.policies[chaincode])

    def open_ledger(self) -> None:
        orderer = self.consortium.orderer
        app = self.consortium.msp_configs(include_orderer=False)
        self.ledger.open(lambda: genesis_envelope(self.channel, app, [orderer.msp_config], orderer.node_identity))

    def connect_chaincodes(self) -> None:
        for conn in self.connections:
            conn.start()
        for conn in self.connections:
            deadline = time.monotonic() + conn.cc.connect_timeout_s
            if not conn.ready.wait(max(0.0, deadline - time.monotonic())):
                raise NodeError(f"chaincode {conn.cc.name!r} at {conn.cc.address} did not register with "
                                f"{conn.peer_name} within {conn.cc.connect_timeout_s:g} s")

    def start(self) -> None:
        self.open_ledger()
        self.connect_chaincodes()
        self.orderer.start()

    def stop(self) -> None:
        self.orderer.stop()
        for conn in self.connections:
            conn.stop()
        self.ledger.close()
