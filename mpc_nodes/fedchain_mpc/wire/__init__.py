"""The intake wire format, node side: one definition shared with the hospitals' client.

The messages live in `fedchain.mpc_client` (hospitals install only `fedchain`, which must not
import `fedchain_mpc`); this package re-exports them for the node service. See that module's
docstring for the `.proto` equivalent, the receipt statement and the versioning rule.
"""

from fedchain.mpc_client import (
    HOLDINGS_METHOD,
    PROTO_SOURCE,
    RECEIPT_KIND,
    SERVICE,
    SUBMIT_METHOD,
    WIRE_VERSION,
    Holding,
    Holdings,
    HoldingsRequest,
    Receipt,
    ShareSubmission,
    canonical_json,
    make_receipt,
    verify_receipt,
)

__all__ = [
    "HOLDINGS_METHOD", "PROTO_SOURCE", "RECEIPT_KIND", "SERVICE", "SUBMIT_METHOD", "WIRE_VERSION", "Holding",
    "Holdings", "HoldingsRequest", "Receipt", "ShareSubmission", "canonical_json", "make_receipt", "verify_receipt",
]
