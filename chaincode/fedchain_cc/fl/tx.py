"""One transaction's view of the ledger: JSON records, the caller, buffered writes.

The FL contract's per-transaction context (`FLContract.context` builds one per call, the shim's
dispatcher hands it to the transaction method and calls `FLContract.completed`, i.e. `flush`, only
on success). Writes are buffered and only handed to the stub when the whole function succeeded, so
a refused call never leaves a partial write set behind, whatever stub runs us. Reads follow
Fabric: they see committed state only, never this transaction's own writes. Records are stored as
canonical JSON (`fedchain_cc.canonical`: UTF-8, sorted keys).
"""

from __future__ import annotations

import json
from typing import Any

from fedchain_cc.canonical import canonical_bytes
from fedchain_cc.fl import keys
from fedchain_cc.shim.contract import ContractError
from fedchain_cc.shim.interface import ChaincodeStubAPI, ClientIdentity

NOT_INITIALIZED = "the consortium is not initialized: an operator must call InitConsortium first"


class Tx:
    """One call of an FL transaction: its stub, name, timestamp, tx id, caller, and pending writes/event."""

    def __init__(self, stub: ChaincodeStubAPI, function: str) -> None:
        self.stub = stub
        self.function = function
        self.timestamp = float(stub.get_tx_timestamp_s())
        self.tx_id = stub.get_tx_id()
        self._writes: dict[str, bytes] = {}
        self._event: tuple[str, bytes] | None = None
        self._client: ClientIdentity | None = None
        self.participant: dict[str, Any] | None = None  # set by require()

    # --- reads -----------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        return self.stub.get_state(key)

    def get_json(self, key: str) -> dict[str, Any] | None:
        raw = self.stub.get_state(key)
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:  # only a corrupted ledger gets here
            raise ContractError(f"stored record {key!r} is not JSON ({exc})", 500) from None
        return value

    def range_json(self, object_type: str, attributes: list[str]) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for kv in self.stub.get_state_by_partial_composite_key(object_type, attributes):
            out.append((kv.key, json.loads(kv.value)))
        return out

    # --- writes (buffered) --------------------------------------------------------
    def put_json(self, key: str, record: dict[str, Any]) -> dict[str, Any]:
        """Stamp who did it (history shows creator per change), buffer, return the record as stored."""
        stamped = dict(record)
        stamped["last_tx_creator"] = self.creator_stamp()
        stamped["last_tx_function"] = self.function
        self._writes[key] = canonical_bytes(stamped)
        return stamped

    def put_bytes(self, key: str, data: bytes) -> None:
        self._writes[key] = data

    def event(self, name: str, payload: dict[str, Any]) -> None:
        self._event = (name, canonical_bytes(payload))

    def flush(self) -> None:
        for key in sorted(self._writes):  # sorted: same write order on every endorser
            self.stub.put_state(key, self._writes[key])
        if self._event:
            self.stub.set_event(*self._event)

    # --- who is calling ---------------------------------------------------------------
    @property
    def client(self) -> ClientIdentity:
        if self._client is None:
            try:
                self._client = self.stub.get_client_identity()
            except Exception as exc:  # a creator the shim cannot parse
                raise ContractError(f"cannot read the caller's identity ({exc})", 403) from None
        return self._client

    def creator_stamp(self) -> dict[str, Any]:
        return {
            "msp_id": self.client.msp_id,
            "participant": self.participant["id"] if self.participant else None,
        }

    def describe_client(self) -> str:
        c = self.client
        return f"{c.common_name or c.subject} of {c.msp_id}"

    # --- records every transaction group reads -------------------------------------
    def _initialized(self, key: str) -> dict[str, Any]:
        record = self.get_json(key)
        if record is None:
            raise ContractError(NOT_INITIALIZED, 409)
        return record

    def consortium(self) -> dict[str, Any]:
        return self._initialized(keys.CONSORTIUM)

    def head(self) -> dict[str, Any]:
        """The head pointer: last round id, last finalized round, its model hash and parameter count."""
        return self._initialized(keys.HEAD)

    def round_record(self, round_id: int) -> dict[str, Any]:
        rnd = self.get_json(keys.round_(round_id))
        if rnd is None:
            raise ContractError(f"no round {round_id}", 404)
        return rnd

    def lookup_caller(self) -> dict[str, Any] | None:
        pid = self.get_bytes(keys.ident(self.client.msp_id, self.client.id))
        if not pid:
            return None
        return self.get_json(keys.participant(pid.decode("utf-8")))

    def require(self, *roles: str) -> dict[str, Any]:
        """The caller's participant record; refuses unregistered callers, role mismatches and wrong roles.

        The role must agree twice: the certificate's attribute (what the CA vouched for) and the
        on-ledger registration (what the consortium decided). Either alone is not enough.
        """
        self.consortium()
        record = self.lookup_caller()
        if record is None:
            raise ContractError(f"caller {self.describe_client()} is not a registered participant", 403)
        cert_role = self.client.role
        if cert_role != record["role"]:
            raise ContractError(
                f"caller {record['id']}: certificate role {cert_role!r} does not match the registered role "
                f"{record['role']!r}",
                403,
            )
        if roles and record["role"] not in roles:
            raise ContractError(
                f"caller {record['id']} has role {record['role']!r}; this needs role {' or '.join(roles)}", 403
            )
        self.participant = record
        return record
