"""GetHistory: every change of one record, newest first, with who changed it (auditors replay from this)."""

from __future__ import annotations

import json
from typing import Any

from fedchain_cc.fl import keys
from fedchain_cc.fl import validate as v
from fedchain_cc.fl.tx import Tx
from fedchain_cc.shim.contract import ContractError, transaction

HISTORY_KINDS = ("round", "participant", "update", "model", "consortium", "attestation")


def _history_key(tx: Tx, kind: str, ident: str) -> str:
    """The key of record `kind` named by `ident` (a round id, a participant id, or "round/participant")."""
    if kind == "consortium":
        return keys.CONSORTIUM
    if kind == "round":
        return keys.round_(v.round_id(ident, lo=0))
    if kind == "model":
        return keys.model(v.round_id(ident, lo=0))
    if kind == "participant":
        return keys.participant(v.participant_id(ident))
    if kind in ("update", "attestation"):
        round_part, _, who = ident.partition("/")
        rid = v.round_id(round_part)
        if kind == "update":
            return keys.update(rid, v.participant_id(who, "hospital id"))
        node = tx.get_json(keys.participant(v.participant_id(who, "MPC node id")))
        if node is None or node["role"] != "mpc_node":
            raise ContractError(f"no MPC node {who!r}", 404)
        return keys.attestation(rid, node["node_index"])
    raise ContractError(f"kind must be one of {', '.join(HISTORY_KINDS)}, got {kind[:20]!r}")


class HistoryTransactions:
    """Fabric's history of a key, with the creator and function every stored record is stamped with."""

    @transaction("GetHistory")
    def get_history(self, tx: Tx, kind: str, ident: str = "") -> list[dict[str, Any]]:
        tx.require()
        out = []
        for mod in tx.stub.get_history_for_key(_history_key(tx, kind, ident)):
            value: Any = None
            if mod.value:
                try:
                    value = json.loads(mod.value)
                except ValueError:
                    value = None
            stamp = value if isinstance(value, dict) else {}
            out.append({"tx_id": mod.tx_id, "timestamp": mod.timestamp_s, "is_delete": mod.is_delete,
                        "creator": stamp.get("last_tx_creator"), "function": stamp.get("last_tx_function"),
                        "value": value})
        return out
