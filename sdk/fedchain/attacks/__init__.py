"""Poisoning attacks — FOR EVALUATION ONLY.

These model malicious hospitals that follow the protocol (valid identity, valid shares,
on-time submission) but poison what they contribute. They exist to measure the defense
(`fedchain demo --attack ...`, `fedchain.simulation`) and are never used by the honest
hospital client. Data-level attacks change the local training data; update-level attacks
rewrite the trained update. ALIE, IPM and min-max are "omniscient colluding" attacks as in
their papers: the simulation hands them the honest updates of the same round.
"""

from .registry import ATTACKS, Attack, AttackContext, AttackParam, AttackParamError, get_attack

__all__ = ["ATTACKS", "Attack", "AttackContext", "AttackParam", "AttackParamError", "get_attack"]
