"""Exceptions the shim raises inside a contract: a failed ledger call must never look like data."""

from __future__ import annotations


class ShimError(Exception):
    """A ledger call could not be completed (protocol error, timeout, transaction already over)."""


class PeerError(ShimError):
    """The peer answered a ledger call (GET_STATE, PUT_STATE, ...) with ERROR; the message is the peer's."""


class StreamClosedError(ShimError):
    """The peer's stream ended while the transaction was waiting for a reply."""
