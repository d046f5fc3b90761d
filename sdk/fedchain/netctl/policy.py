"""The FL chaincode's endorsement policy (`fedchain network up --policy`), for every backend.

One spelling for the operator: MAJORITY (default), ANY, ALL, or a comma list of MSP ids that
must all endorse. The embedded devnet takes it as is; on Fabric it becomes the chaincode
definition's policy (MAJORITY keeps the channel's `/Channel/Application/Endorsement`, which
is MAJORITY Endorsement; the others become a signature policy over the orgs' peers).
`fedchain audit verify --policy` takes the same spelling.
"""

from __future__ import annotations

from collections.abc import Sequence

KEYWORDS = ("MAJORITY", "ANY", "ALL")
Policy = str | list[str]


def parse_policy(text: str, msp_ids: Sequence[str]) -> Policy:
    """A keyword (upper case) or the listed MSP ids; ValueError naming what is wrong."""
    if text.strip().upper() in KEYWORDS:
        return text.strip().upper()
    listed = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [m for m in listed if m not in msp_ids]
    if not listed or unknown:
        raise ValueError(f"endorsement policy {text!r}: expected MAJORITY, ANY, ALL or MSP ids of this consortium "
                         f"({', '.join(msp_ids)}), comma separated" + (f"; unknown: {', '.join(unknown)}" if unknown
                                                                       else ""))
    return list(dict.fromkeys(listed))


def fabric_signature_policy(policy: Policy, msp_ids: Sequence[str]) -> str | None:
    """Fabric's policy language for `peer lifecycle chaincode approveformyorg --signature-policy`;
    None for MAJORITY (the definition then references the channel's Endorsement policy)."""
    if policy == "MAJORITY":
        return None
    if policy == "ANY":
        return "OR(" + ",".join(f"'{m}.peer'" for m in msp_ids) + ")"
    members = msp_ids if policy == "ALL" else policy
    return "AND(" + ",".join(f"'{m}.peer'" for m in members) + ")"
