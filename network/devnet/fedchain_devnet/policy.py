"""Endorsement policies: which orgs to ask (gateway) and whether endorsements suffice (validator).

The devnet's policies are the common Fabric shapes: MAJORITY (Fabric's default
`/Channel/Application/Endorsement` = MAJORITY Endorsement), ANY, ALL, or an explicit AND
over a list of orgs.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence

Policy = str | list[str]


def required_count(policy: Policy, orgs: Sequence[str]) -> int:
    if isinstance(policy, list):
        return len(policy)
    return {"ANY": 1, "ALL": len(orgs), "MAJORITY": len(orgs) // 2 + 1}[policy]


def satisfied(policy: Policy, endorsing_orgs: set[str], orgs: Sequence[str]) -> bool:
    """True if the distinct endorsing orgs (valid peer endorsements only) satisfy the policy."""
    members = endorsing_orgs & set(orgs)
    if isinstance(policy, list):
        return set(policy) <= members
    return len(members) >= required_count(policy, orgs)


def describe(policy: Policy) -> str:
    return f"AND({', '.join(policy)})" if isinstance(policy, list) else policy


class Selector:
    """Picks endorsing orgs for a policy, rotating so load spreads over all peers."""

    def __init__(self, orgs: Sequence[str]) -> None:
        self.orgs = list(orgs)
        self._counter = itertools.count()
        self._lock = threading.Lock()

    def select(self, policy: Policy) -> list[str]:
        if isinstance(policy, list):
            return list(policy)
        k = required_count(policy, self.orgs)
        with self._lock:
            start = next(self._counter) % len(self.orgs)
        return [self.orgs[(start + i) % len(self.orgs)] for i in range(k)]
