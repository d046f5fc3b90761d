"""What an MPC node needs from the ledger, behind one small interface.

`LedgerView` is the seam: the intake and the round processor only call it, unit tests give an
in-process fake, and `FLLedger` is the adapter over the FL chaincode client
(`fedchain.fl_client.FLClient` on a gateway connection), the same on the devnet and on Fabric.
What it returns are the SDK's typed ledger records (`fedchain.records`: Round, Update, Participant,
Consortium), parsed once by the client; round ids are `RoundId`s.
Participants are cached (they change rarely and every share needs one) and refreshed on a
miss at most once per `refresh_s`; round records are cached for `round_ttl_s` (short, so a
closed round stops intake quickly; the node also seals rounds locally on RoundClosed).
Every failure leaves this module as a LedgerError that says what kind of failure it is
(`chaincode_status`, `not_found`, `already`), so no caller reads an error's text.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from fedchain.gateway.errors import chaincode_refusal
from fedchain.records import Consortium, Participant, Round, RoundId, Update

log = logging.getLogger(__name__)


class LedgerError(Exception):
    """The ledger refused or could not be reached.

    `chaincode_status` is the FL chaincode's HTTP-like status when the chaincode answered 'no'
    (None: the ledger could not be reached or failed inside); `not_found` marks a missing record
    (status 404), `already` an 'already done' refusal (a resent attestation or publication)."""

    def __init__(self, message: str, *, already: bool = False, not_found: bool = False,
                 chaincode_status: int | None = None) -> None:
        super().__init__(message)
        self.already = already
        self.not_found = not_found
        self.chaincode_status = chaincode_status


def ledger_error(what: str, exc: BaseException) -> LedgerError:
    """A failed FLClient call as a typed LedgerError.

    Not found is the chaincode's 404. 'Already done' is a 409 whose message says "already" (the
    chaincode's only way to tell a resent AttestResult/PublishModel from another conflict: its
    ContractError has no finer code)."""
    refusal = chaincode_refusal(exc)
    status = refusal.status if refusal else None
    already = refusal is not None and status == 409 and "already" in refusal.message.lower()
    return LedgerError(f"{what}: {exc}", already=already, not_found=status == 404, chaincode_status=status)


@dataclass(frozen=True)
class LedgerEvent:
    name: str
    payload: dict[str, Any]
    block_number: int
    tx_id: str


class LedgerView(Protocol):
    def get_consortium(self) -> Consortium: ...

    def get_round(self, round_id: RoundId, fresh: bool = False) -> Round | None: ...

    def participant_for(self, msp_id: str, fabric_id: str) -> Participant | None: ...

    def get_updates(self, round_id: RoundId) -> list[Update]: ...

    def attest(self, attestation: dict[str, Any]) -> None: ...  # AttestResult's argument (fl_client.attest_result)

    def publish(self, round_id: RoundId, model: bytes) -> bool: ...

    def get_model(self, round_id: RoundId) -> bytes: ...

    def get_reference(self, round_id: RoundId) -> bytes: ...

    def get_validation_batch(self, round_id: RoundId) -> bytes: ...

    def list_rounds(self) -> list[Round]: ...

    def events(self, checkpoint: Any) -> Iterator[LedgerEvent]: ...

    def close_round(self, round_id: RoundId) -> None: ...

    def chain_head(self) -> Any: ...  # fedchain.gateway.watermark.ChainHead

    def block_hash(self, number: int) -> str: ...


class ParticipantCache:
    """(msp_id, fabric_id) -> participant record, refreshed from ListParticipants on a miss."""

    def __init__(self, fetch: Callable[[], list[Participant]], refresh_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._refresh_s = refresh_s
        self._clock = clock
        self._by_ident: dict[tuple[str, str], Participant] = {}
        self._loaded_at: float | None = None
        self._lock = threading.Lock()

    def lookup(self, msp_id: str, fabric_id: str) -> Participant | None:
        with self._lock:
            rec = self._by_ident.get((msp_id, fabric_id))
            stale = self._loaded_at is None or self._clock() - self._loaded_at >= self._refresh_s
            if rec is not None or not stale:
                return rec
            self._by_ident = {(p.msp_id, p.identity): p for p in self._fetch()}
            self._loaded_at = self._clock()
            return self._by_ident.get((msp_id, fabric_id))


class FLLedger:
    """LedgerView over the FL chaincode through the Fabric Gateway (one gateway per node)."""

    def __init__(self, network: Any, chaincode: str, fl_client: Any, *, round_ttl_s: float = 1.0,
                 participants_refresh_s: float = 2.0) -> None:
        self._network = network  # fedchain.gateway.Network (for events)
        self._chaincode = chaincode
        self.fl = fl_client  # fedchain.fl_client.FLClient
        self._participants = ParticipantCache(lambda: self.fl.list_participants(), participants_refresh_s)
        self._round_ttl_s = round_ttl_s
        self._rounds: dict[RoundId, tuple[float, Round | None]] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, net_config: Any, identity: Any) -> tuple[FLLedger, Any]:
        """(ledger, gateway) for a loaded network.json and the node's SigningIdentity; close the gateway."""
        from fedchain.fl_client import FLClient

        gateway = net_config.connect(identity)
        network = gateway.network(net_config.channel)
        return cls(network, net_config.chaincode, FLClient(network.contract(net_config.chaincode))), gateway

    def _wrap(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except LedgerError:
            raise
        except Exception as exc:
            raise ledger_error(what, exc) from exc

    def get_consortium(self) -> Consortium:
        return self._wrap("GetConsortium", self.fl.get_consortium)

    def get_round(self, round_id: RoundId, fresh: bool = False) -> Round | None:
        """Cached for the intake's per-share checks; `fresh` for decisions that must see the latest state."""
        now = time.monotonic()
        with self._lock:
            hit = self._rounds.get(round_id)
            if not fresh and hit is not None and now - hit[0] < self._round_ttl_s:
                return hit[1]
        try:
            rnd = self._wrap("GetRound", lambda: self.fl.get_round(round_id))
        except LedgerError as exc:
            if not exc.not_found:
                raise
            rnd = None
        with self._lock:
            self._rounds[round_id] = (now, rnd)
        return rnd

    def participant_for(self, msp_id: str, fabric_id: str) -> Participant | None:
        return self._wrap("ListParticipants", lambda: self._participants.lookup(msp_id, fabric_id))

    def get_updates(self, round_id: RoundId) -> list[Update]:
        return self._wrap("GetUpdates", lambda: self.fl.get_updates(round_id))

    def list_rounds(self) -> list[Round]:
        return self._wrap("ListRounds", self.fl.list_rounds)

    def attest(self, attestation: dict[str, Any]) -> None:
        self._wrap("AttestResult", lambda: self.fl.attest_result(attestation))

    def publish(self, round_id: RoundId, model: bytes) -> bool:
        try:
            self._wrap("PublishModel", lambda: self.fl.publish_model(round_id, model))
            return True
        except LedgerError as exc:
            if exc.already:
                return False
            raise

    def get_model(self, round_id: RoundId) -> bytes:
        return self._wrap("GetModel", lambda: self.fl.get_model(round_id)).model

    def close_round(self, round_id: RoundId) -> None:
        """CloseRound as this node (MPC nodes may close once the deadline passed)."""
        self._wrap("CloseRound", lambda: self.fl.close_round(round_id))
        with self._lock:
            self._rounds.pop(round_id, None)

    def chain_head(self) -> Any:
        """The newest block's number and hashes (a ChainHead) via qscc: the node's ledger watermark reads it."""
        from fedchain.gateway.watermark import NetworkHeads

        return self._wrap("GetChainInfo", NetworkHeads(self._network).chain_head)

    def block_hash(self, number: int) -> str:
        from fedchain.gateway.watermark import NetworkHeads

        return self._wrap("GetBlockByNumber", lambda: NetworkHeads(self._network).block_hash(number))

    def get_reference(self, round_id: RoundId) -> bytes:
        """The round's FLTrust reference (float32 LE), checked against the round's reference_sha256."""
        return self._wrap("GetReference", lambda: self.fl.get_reference(round_id))

    def get_validation_batch(self, round_id: RoundId) -> bytes:
        """The round's public validation batch (fedchain.validation_batch bytes), checked against the round's
        validation_sha256; raises LedgerError (not_found) while the operator has not published it."""
        return self._wrap("GetValidationBatch", lambda: self.fl.get_validation_batch(round_id))

    def events(self, checkpoint: Any) -> Iterator[LedgerEvent]:
        """Chaincode events from the checkpoint on; the caller checkpoints after handling each one."""
        stream = self._network.chaincode_events(self._chaincode, checkpoint=checkpoint)
        try:
            for ev in stream:
                try:
                    payload = json.loads(ev.payload) if ev.payload else {}
                except ValueError:
                    payload = {}
                yield LedgerEvent(ev.event_name, payload if isinstance(payload, dict) else {}, ev.block_number,
                                  ev.tx_id)
        finally:
            stream.close()
