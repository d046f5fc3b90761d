"""The chaincode-facing API of our shim: what a contract may call during a transaction.

Both the real stub (driven over the chaincode gRPC protocol by a peer) and the
in-memory stub used by unit tests implement `ChaincodeStubAPI`, so a contract
cannot tell them apart. Semantics follow Fabric's Go shim:
- `get_state` reads the committed state (a transaction never sees its own writes);
  an absent key reads as b"".
- range / composite-key iterators yield keys in lexical order; paging returns a
  bookmark ("" when there is nothing more).
- time is the transaction timestamp the client put in the proposal (deterministic:
  never use the wall clock in a contract).
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass

COMPOSITE_KEY_NAMESPACE = "\x00"
MIN_UNICODE_RUNE = "\x00"
MAX_UNICODE_RUNE = "\U0010ffff"

EMPTY_KEY_SUBSTITUTE = "\x01"  # Fabric: an empty start key of a plain range means "after the composite keys"


def simple_range_bounds(start_key: str, end_key: str) -> str:
    """Fabric's rules for plain range queries; returns the effective start key."""
    for key in (start_key, end_key):
        if key.startswith(COMPOSITE_KEY_NAMESPACE):
            raise ValueError(f"range key {key!r} starts with a null character: use the composite-key queries")
    return start_key or EMPTY_KEY_SUBSTITUTE


def check_key(key: str) -> None:
    """A state key must be a non-empty string (Fabric refuses the empty key); every stub checks this."""
    if not isinstance(key, str) or not key:
        raise ValueError("key must be a non-empty string")


ROLE_ATTRIBUTE = "fedchain.role"  # Fabric-CA-style attribute carried in the certificate
ATTRIBUTE_EXTENSION_OID = "1.2.3.4.5.6.7.8.1"


@dataclass(frozen=True)
class KV:
    key: str
    value: bytes


@dataclass(frozen=True)
class KeyModification:
    tx_id: str
    value: bytes
    timestamp_s: float  # seconds since the epoch, from the transaction timestamp
    is_delete: bool


@dataclass(frozen=True)
class ClientIdentity:
    """The transaction creator, parsed from the SerializedIdentity in the proposal."""

    msp_id: str
    cert_pem: bytes
    subject: str  # RFC 4514 subject of the certificate
    issuer: str  # RFC 4514 issuer
    common_name: str
    attributes: dict[str, str]  # Fabric-CA attribute extension ({} when absent)

    @property
    def role(self) -> str | None:
        return self.attributes.get(ROLE_ATTRIBUTE)

    @property
    def id(self) -> str:
        """Fabric's client-identity id string: x509::<subject>::<issuer>."""
        return f"x509::{self.subject}::{self.issuer}"


@dataclass(frozen=True)
class Response:
    """What invoke/init return: status 200 = success (payload), >= 400 = error (message)."""

    status: int
    message: str = ""
    payload: bytes = b""


def success(payload: bytes = b"") -> Response:
    return Response(status=200, payload=payload)


def error(message: str, status: int = 500) -> Response:
    return Response(status=status, message=message)


class ChaincodeStubAPI(abc.ABC):
    """Everything a contract can ask of the ledger inside one transaction."""

    # --- transaction context -------------------------------------------------
    @abc.abstractmethod
    def get_args(self) -> list[bytes]: ...

    def get_function_and_parameters(self) -> tuple[str, list[str]]:
        args = self.get_args()
        if not args:
            return "", []
        return args[0].decode("utf-8", "replace"), [a.decode("utf-8", "replace") for a in args[1:]]

    @abc.abstractmethod
    def get_tx_id(self) -> str: ...

    @abc.abstractmethod
    def get_channel_id(self) -> str: ...

    @abc.abstractmethod
    def get_tx_timestamp_s(self) -> float:
        """Transaction timestamp (seconds since the epoch) from the proposal's channel header."""

    @abc.abstractmethod
    def get_creator(self) -> bytes:
        """Serialized msp.SerializedIdentity of the creator."""

    @abc.abstractmethod
    def get_client_identity(self) -> ClientIdentity: ...

    @abc.abstractmethod
    def get_transient(self) -> dict[str, bytes]: ...

    # --- world state ---------------------------------------------------------
    @abc.abstractmethod
    def get_state(self, key: str) -> bytes: ...

    @abc.abstractmethod
    def put_state(self, key: str, value: bytes) -> None: ...

    @abc.abstractmethod
    def del_state(self, key: str) -> None: ...

    def get_state_by_range(self, start_key: str, end_key: str) -> Iterator[KV]:
        """Simple keys in [start_key, end_key); "" means unbounded. Composite keys are never
        returned and may not be bounds (Fabric's rule: use the composite-key queries for them)."""
        start_key = simple_range_bounds(start_key, end_key)
        return self._range(start_key, end_key)

    def get_state_by_range_with_pagination(
        self, start_key: str, end_key: str, page_size: int, bookmark: str = ""
    ) -> tuple[list[KV], str]:
        start_key = simple_range_bounds(start_key, end_key)
        return self._paged(start_key, end_key, page_size, bookmark)

    @abc.abstractmethod
    def _range(self, start_key: str, end_key: str) -> Iterator[KV]:
        """Every key in [start_key, end_key) as stored: what the peer's range query returns."""

    @abc.abstractmethod
    def _paged(self, start_key: str, end_key: str, page_size: int, bookmark: str) -> tuple[list[KV], str]: ...

    @abc.abstractmethod
    def get_history_for_key(self, key: str) -> Iterator[KeyModification]: ...

    # --- composite keys (Fabric's encoding: \x00 type \x00 attr1 \x00 attr2 \x00) ---
    @staticmethod
    def create_composite_key(object_type: str, attributes: list[str]) -> str:
        for part in [object_type, *attributes]:
            if MIN_UNICODE_RUNE in part or MAX_UNICODE_RUNE in part:
                raise ValueError(f"composite key part {part!r} contains a reserved character")
        return COMPOSITE_KEY_NAMESPACE + object_type + MIN_UNICODE_RUNE + "".join(
            a + MIN_UNICODE_RUNE for a in attributes
        )

    @staticmethod
    def split_composite_key(key: str) -> tuple[str, list[str]]:
        if not key.startswith(COMPOSITE_KEY_NAMESPACE):
            raise ValueError("not a composite key")
        parts = key[1:].split(MIN_UNICODE_RUNE)
        return parts[0], parts[1:-1]

    def get_state_by_partial_composite_key(self, object_type: str, attributes: list[str]) -> Iterator[KV]:
        start = self.create_composite_key(object_type, attributes)
        return self._range(start, start + MAX_UNICODE_RUNE)

    def get_state_by_partial_composite_key_with_pagination(
        self, object_type: str, attributes: list[str], page_size: int, bookmark: str = ""
    ) -> tuple[list[KV], str]:
        start = self.create_composite_key(object_type, attributes)
        return self._paged(start, start + MAX_UNICODE_RUNE, page_size, bookmark)

    # --- events --------------------------------------------------------------
    @abc.abstractmethod
    def set_event(self, name: str, payload: bytes) -> None:
        """One chaincode event per transaction (Fabric keeps the last one set)."""


class Chaincode(abc.ABC):
    """A chaincode: Fabric calls init once per definition (optional) and invoke per transaction."""

    def init(self, stub: ChaincodeStubAPI) -> Response:
        return success()

    @abc.abstractmethod
    def invoke(self, stub: ChaincodeStubAPI) -> Response: ...
