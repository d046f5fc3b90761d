"""Fabric's endorsement policies, evaluated over a transaction's verified endorsers as a validating peer does.

A channel's config block holds two kinds of policy (common.Policy types):

* SIGNATURE: a SignaturePolicyEnvelope, a tree of n-out-of nodes whose leaves are "signed by
  principal i" (an MSP role such as 'Org1MSP.peer'). Evaluated greedily like Fabric's cauthdsl:
  each signature satisfies at most one leaf.
* IMPLICIT_META: "MAJORITY Endorsement" counts the application orgs whose own policy of that
  name is satisfied (ANY: one, ALL: every org that has one, MAJORITY: more than half).

Which policy applies to which transaction is Fabric's rule, decided in audit/chain.py:
`_lifecycle` approvals under the approving org's `Endorsement`, commits under the channel's
`LifecycleEndorsement`, other chaincodes under their own (here: the auditor's --policy for the
FL chaincode, the channel's `Endorsement` for anything else).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fabric_protos.common import policies_pb2
from fabric_protos.msp import msp_principal_pb2

SIGNATURE = policies_pb2.Policy.PolicyType.Value("SIGNATURE")
IMPLICIT_META = policies_pb2.Policy.PolicyType.Value("IMPLICIT_META")
ROLE_NAMES = {v: k.lower() for k, v in msp_principal_pb2.MSPRole.MSPRoleType.items()}  # 0 -> "member", ...
CLASS = msp_principal_pb2.MSPPrincipal.Classification


@dataclass(frozen=True)
class Signer:
    """One verified endorser: what a principal can match on."""

    msp_id: str
    node_ou: str | None  # "peer", "admin", "client", "orderer" (NodeOUs), else None
    ous: frozenset[str] = frozenset()
    identity: bytes = b""  # SerializedIdentity bytes: IDENTITY principals, de-duplication


@dataclass(frozen=True)
class Principal:
    """An MSPPrincipal: a role of an MSP, an OU of an MSP, or one exact identity."""

    kind: str  # "role", "ou", "identity" or "unsupported"
    msp_id: str = ""
    value: str = ""  # role name ("member", "peer", ...) or OU name
    identity: bytes = b""

    def matches(self, s: Signer) -> bool:
        if self.kind == "identity":
            return bool(self.identity) and s.identity == self.identity
        if s.msp_id != self.msp_id:
            return False
        if self.kind == "ou":
            return self.value in s.ous
        if self.kind == "role":
            return self.value == "member" or s.node_ou == self.value
        return False

    def describe(self) -> str:
        if self.kind in ("role", "ou"):
            return f"'{self.msp_id}.{self.value}'"
        return f"<{self.kind} principal>"


@dataclass(frozen=True)
class SignedBy:
    index: int


@dataclass(frozen=True)
class NOutOf:
    n: int
    rules: tuple[SignedBy | NOutOf, ...]


Rule = SignedBy | NOutOf


@dataclass(frozen=True)
class SignaturePolicy:
    rule: Rule
    principals: tuple[Principal, ...]

    def satisfied(self, signers: Sequence[Signer]) -> bool:
        """Fabric's cauthdsl: a rule consumes the signatures it used; an n-out-of keeps a child's
        consumption only when that child is satisfied."""
        unique = list({s.identity or id(s): s for s in signers}.values())
        return self._eval(self.rule, unique, [False] * len(unique))

    def _eval(self, rule: Rule, signers: list[Signer], used: list[bool]) -> bool:
        if isinstance(rule, SignedBy):
            if not 0 <= rule.index < len(self.principals):
                return False
            principal = self.principals[rule.index]
            for i, s in enumerate(signers):
                if not used[i] and principal.matches(s):
                    used[i] = True
                    return True
            return False
        verified = 0
        for child in rule.rules:
            trial = list(used)
            if self._eval(child, signers, trial):
                verified += 1
                used[:] = trial
        return verified >= rule.n

    def describe(self) -> str:
        return self._describe(self.rule)

    def _describe(self, rule: Rule) -> str:
        if isinstance(rule, SignedBy):
            return self.principals[rule.index].describe() if 0 <= rule.index < len(self.principals) else "<bad index>"
        inner = ", ".join(self._describe(r) for r in rule.rules)
        if rule.n == 1 and len(rule.rules) == 1:
            return inner
        if rule.n == 1:
            return f"OR({inner})"
        if rule.n == len(rule.rules):
            return f"AND({inner})"
        return f"OutOf({rule.n}, {inner})"


@dataclass(frozen=True)
class ImplicitMeta:
    rule: str  # "ANY", "ALL" or "MAJORITY"
    sub_policy: str

    def describe(self) -> str:
        return f"{self.rule} {self.sub_policy}"


Policy = SignaturePolicy | ImplicitMeta


def peer_of(msp_id: str) -> SignaturePolicy:
    """'A peer of <org>': Fabric's typical org Endorsement policy, the default where a config has none."""
    return SignaturePolicy(NOutOf(1, (SignedBy(0),)), (Principal("role", msp_id, "peer"),))


DEFAULT_ENDORSEMENT = ImplicitMeta("MAJORITY", "Endorsement")  # Fabric's /Channel/Application/Endorsement default


@dataclass
class ApplicationPolicies:
    """The Application group's own policies and each org's, by name (as in /Channel/Application/...)."""

    group: dict[str, Policy] = field(default_factory=dict)
    orgs: dict[str, dict[str, Policy]] = field(default_factory=dict)

    def org_policy(self, msp_id: str, name: str = "Endorsement") -> Policy | None:
        return self.orgs.get(msp_id, {}).get(name)

    def satisfied(self, policy: Policy, signers: Sequence[Signer], org_ids: Sequence[str],
                  notes: set[str] | None = None) -> bool:
        """Evaluate `policy`; an ImplicitMeta counts the orgs in `org_ids` whose sub-policy holds
        (an org without an `Endorsement` policy is given 'a peer of the org', recorded in `notes`)."""
        if isinstance(policy, SignaturePolicy):
            return policy.satisfied(signers)
        subs: list[Policy] = []
        for org in org_ids:
            sub = self.org_policy(org, policy.sub_policy)
            if sub is None and policy.sub_policy == "Endorsement":
                sub = peer_of(org)
                if notes is not None:
                    notes.add(f"the config block has no /Channel/Application/{org}/Endorsement policy: "
                              f"used {sub.describe()} (Fabric's usual one)")
            if isinstance(sub, SignaturePolicy):  # nested ImplicitMeta does not occur under an org
                subs.append(sub)
        ok = sum(1 for s in subs if s.satisfied(signers))
        need = {"ANY": 1, "ALL": len(subs), "MAJORITY": len(subs) // 2 + 1}[policy.rule]
        return ok >= need


class PolicyParseError(ValueError):
    """A config policy that does not decode (named by its path)."""


def parse_policy(policy: policies_pb2.Policy, where: str) -> Policy | None:
    """A config block's common.Policy; None for types an endorsement never uses (MSP, unknown)."""
    try:
        if policy.type == SIGNATURE:
            return _signature_policy(policies_pb2.SignaturePolicyEnvelope.FromString(policy.value))
        if policy.type == IMPLICIT_META:
            meta = policies_pb2.ImplicitMetaPolicy.FromString(policy.value)
            return ImplicitMeta(policies_pb2.ImplicitMetaPolicy.Rule.Name(meta.rule), meta.sub_policy)
    except Exception as exc:  # DecodeError, ValueError of an unknown enum value
        raise PolicyParseError(f"policy {where} does not decode: {exc}") from exc
    return None


def _signature_policy(env: policies_pb2.SignaturePolicyEnvelope) -> SignaturePolicy:
    return SignaturePolicy(_rule(env.rule), tuple(_principal(p) for p in env.identities))


def _rule(rule: policies_pb2.SignaturePolicy, depth: int = 0) -> Rule:
    if depth > 32:
        raise ValueError("signature policy nested deeper than 32 levels")
    if rule.WhichOneof("Type") == "signed_by":
        return SignedBy(rule.signed_by)
    return NOutOf(rule.n_out_of.n, tuple(_rule(r, depth + 1) for r in rule.n_out_of.rules))


def _principal(p: msp_principal_pb2.MSPPrincipal) -> Principal:
    if p.principal_classification == CLASS.Value("ROLE"):
        role = msp_principal_pb2.MSPRole.FromString(p.principal)
        return Principal("role", role.msp_identifier, ROLE_NAMES.get(role.role, f"role{role.role}"))
    if p.principal_classification == CLASS.Value("ORGANIZATION_UNIT"):
        ou = msp_principal_pb2.OrganizationUnit.FromString(p.principal)
        return Principal("ou", ou.msp_identifier, ou.organizational_unit_identifier)
    if p.principal_classification == CLASS.Value("IDENTITY"):
        return Principal("identity", identity=bytes(p.principal))
    return Principal("unsupported")
