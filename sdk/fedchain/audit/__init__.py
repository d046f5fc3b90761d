"""The auditor: fetch the chain from outside (qscc through the gateway) and verify it.

Nothing here trusts the network it reads from: the hash chain, every signature and every
endorsement policy are re-checked against the MSPs in the channel's own config block, and
the FL contract's history (rounds, attestations, published models) is replayed.
"""
