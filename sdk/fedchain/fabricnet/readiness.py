"""Wait until a Fabric network can take the first transaction: Raft leader, gossip, discovery.

A process that listens is not yet a usable network: after a (re)start the orderer refuses
broadcasts until it leads its Raft cluster, the gateway endorses with other orgs' peers only
once gossip found them, and it asks discovery for an endorsement plan first. `up` waits for
all three, on native processes and on Compose containers alike (through the published
operations and peer ports).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fedchain.fabricnet.discovery import endorsement_plan
from fedchain.fabricnet.procs import CommandError, gossip_peers_known, raft_leader_elected
from fedchain.fabricnet.settings import FabricSettings
from fedchain.identity import Consortium

Progress = Callable[[str], None]
T = TypeVar("T")


def _poll(observe: Callable[[], T], done: Callable[[T], bool], timeout: float, interval: float,
          failure: Callable[[T], str]) -> None:
    """Observe until `done`; past `timeout`, CommandError with what the last observation showed."""
    deadline = time.monotonic() + timeout
    while True:
        seen = observe()
        if done(seen):
            return
        if time.monotonic() > deadline:
            raise CommandError(failure(seen))
        time.sleep(interval)


def wait_for_raft_leader(s: FabricSettings, logs: str, progress: Progress, timeout: float) -> None:
    """After a restart the orderer refuses transactions until it has elected itself Raft leader."""
    progress(f"waiting for the orderer to lead {s.channel}'s Raft cluster")
    _poll(lambda: raft_leader_elected(s.orderer_address(), s.orderer_operations_port, s.channel), bool, timeout, 0.25,
          lambda _: f"the orderer elected no Raft leader for {s.channel} within {timeout:.0f} s; see {logs}")


def wait_for_gossip(s: FabricSettings, consortium: Consortium, logs: str, progress: Progress,
                    timeout: float) -> None:
    """Every peer must know every other org's peer before the gateway can collect a MAJORITY."""
    want = len(consortium.orgs) - 1
    if want == 0:
        return
    progress("waiting for the peers to find each other (gossip via anchor peers)")
    _poll(lambda: [gossip_peers_known(s.peer_address(i), s.peer_operations_port(i), s.channel) for i in range(len(consortium.orgs))],
          lambda known: all(k is not None and k >= want for k in known), timeout, 0.5,
          lambda known: f"peers did not discover each other within {timeout:.0f} s (peers known per peer: {known}, "
                        f"expected {want}); check the anchor peers and the peer logs ({logs})")


def wait_for_endorsement_plan(s: FabricSettings, consortium: Consortium, logs: str, progress: Progress,
                              timeout: float) -> None:
    """Ask every peer's discovery service what its gateway will ask: can `fedchain` be endorsed?"""
    progress(f"waiting until discovery can plan endorsements of {s.chaincode} on every peer")
    signer = consortium.orgs[0].admin_identity
    deadline = time.monotonic() + timeout  # one budget for all peers
    for i, org in enumerate(consortium.orgs):
        _poll(lambda i=i, org=org: endorsement_plan(f"{s.peer_address(i)}:{s.peer_port(i)}", org.tls_ca_cert_path.read_bytes(),
                                                    org.node_name, signer, s.channel, s.chaincode),
              lambda plan: plan.ready, max(0.0, deadline - time.monotonic()), 0.5,
              lambda plan, org=org: f"{org.node_name} cannot plan endorsements for {s.chaincode} after "
                                    f"{timeout:.0f} s: {plan.error or plan}; see {logs}")


def wait_until_usable(s: FabricSettings, consortium: Consortium, logs: str, progress: Progress,
                      timeout: float) -> None:
    wait_for_raft_leader(s, logs, progress, timeout)
    wait_for_gossip(s, consortium, logs, progress, timeout)
    wait_for_endorsement_plan(s, consortium, logs, progress, timeout)
