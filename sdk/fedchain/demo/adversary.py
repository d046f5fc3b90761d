"""Malicious hospitals for the demo — EVALUATION ONLY, never part of the honest client.

A coalition of K hospitals that follow the protocol (own identity, valid shares, on time) but
poison what they contribute, using `fedchain.attacks`. Under secret sharing the colluders cannot
see honest hospitals' updates, so the "omniscient" attacks (ALIE, IPM, min-max) get only what
the coalition can really know: the benign updates its own members computed on their own data
(each member trains honestly first, then they pool those updates). That is weaker than the
papers' omniscient setting; the report says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from torch import nn

from fedchain.attacks import AttackContext, get_attack

KNOWLEDGE_NOTE = ("omniscient attacks (alie, ipm, min_max) use only the benign updates the malicious hospitals "
                  "computed themselves: under secret sharing colluders never see honest hospitals' updates")


class Coalition:
    def __init__(self, attack: str, members: list[str], n_clients: int, n_classes: int, seed: int,
                 params: dict[str, Any] | None = None) -> None:
        self.attack = get_attack(attack)
        self.members = list(members)
        self.n_clients = n_clients
        self.n_classes = n_classes
        self.params = dict(params or {})
        self.rng = np.random.default_rng(seed + 7919)

    def _ctx(self, honest: list[np.ndarray]) -> AttackContext:
        return AttackContext(honest, self.n_clients, len(self.members), self.rng, self.n_classes, self.params)

    def poison_data(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Data-level attacks change the member's training set once, at enrolment."""
        if self.attack.level != "data" or self.attack.apply_data is None:
            return images, labels
        x, y = self.attack.apply_data(images, np.asarray(labels).reshape(-1), self._ctx([]))
        return x, y

    @property
    def rewrites_updates(self) -> bool:
        return self.attack.level == "update"

    def craft(self, benign: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Poisoned update per member from the members' own benign updates of this round."""
        honest = [benign[m] for m in self.members]
        ctx = self._ctx(honest)
        return {m: np.asarray(self.attack.apply_update(benign[m], ctx), dtype=np.float32)  # type: ignore[misc]
                for m in self.members}

    @staticmethod
    def fixed(update: np.ndarray) -> Callable[[dict[str, Any], nn.Module], np.ndarray]:
        """An update_fn for HospitalClient.prepare that returns a precomputed update."""
        return lambda rnd, model: update
