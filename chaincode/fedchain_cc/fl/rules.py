"""The FL contract's fixed vocabulary and limits, shared by its transaction groups.

Kept in one place so that a limit (or a state name, an event name) has one definition whichever
group checks it; the rules themselves live with the transactions (see the package docstring).
"""

from __future__ import annotations

ROLES = ("operator", "hospital", "mpc_node", "auditor")
OPEN, CLOSED, FINALIZED, DISPUTED, FAILED = "OPEN", "CLOSED", "FINALIZED", "DISPUTED", "FAILED"
# A PublishModel transaction carries the model twice (base64 argument + raw write set): 6 MiB
# keeps it under the 16 MiB gRPC message limit of the gateway and of Fabric's defaults.
HARD_MAX_MODEL_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_MODEL_BYTES = 4 * 1024 * 1024
MAX_MPC_NODES = 64
MAX_HOSPITALS_PER_ROUND = 10_000
MAX_SAMPLE_CAP = 10**9
MAX_PARAM_COUNT = 10**9
# Privacy floor: the nodes open (and publish) an aggregate only of at least this many accepted updates.
DEFAULT_MIN_ACCEPTED = 3
# How far a client's proposal timestamp may differ from the peers' clocks (Fabric's default
# peer.authentication.timewindow is 15 minutes). Deadlines that a client could move by this much
# are checked against deadline + skew: a hospital cannot close a round early by forward-dating.
DEFAULT_MAX_CLOCK_SKEW_S = 900
MAX_CLOCK_SKEW_S = 24 * 3600
IDENTITY_MAX = 2048
EVENTS = ("RoundCreated", "UpdateSubmitted", "RoundClosed", "RoundFinalized", "RoundDisputed", "RoundFailed")
DISPUTE_DIFFER = "attestations differ"
