"""The FL chaincode's world state rebuilt from the chain, compared with what the live network serves.

Replaying the VALID transactions' write sets in order gives the only world state the chain
allows (key -> value bytes; values above KEEP_BYTES, i.e. model and reference chunks, are kept
as SHA-256 only). A peer whose state database was edited behind the ledger's back (a raised
sample_cap, a forged round record) serves records no transaction wrote: the contract's queries
(GetConsortium, ListParticipants, ListRounds, GetUpdates per round) are compared record by
record with the rebuilt keys (layout: chaincode/fedchain_cc/fl/keys.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from fedchain.audit.chain import Finding, TxRecord
from fedchain.canonical import canonical_text, sha256_hex

KEEP_BYTES = 64 * 1024
SEP = "\x00"  # Fabric composite keys: \x00 type \x00 attr \x00 ... \x00
COMPARED_TYPES = ("participant", "round", "update")  # composite key types the queries list in full
PLAIN_KEYS = ("consortium", "head")


class ContractLike(Protocol):
    def evaluate(self, function: str, *args: str) -> bytes: ...


@dataclass(frozen=True)
class StateEntry:
    value: bytes | None  # None when only the digest is kept (big values)
    sha256: str
    block: int
    tx_id: str


def composite_key(object_type: str, *attributes: str) -> str:
    return SEP + object_type + SEP + "".join(a + SEP for a in attributes)


def readable_key(key: str) -> str:
    """'\\x00participant\\x00h1\\x00' -> 'participant~h1' (the notation of keys.py)."""
    return "~".join(p for p in key.split(SEP) if p) if key.startswith(SEP) else key


def rebuild_state(transactions: Iterable[TxRecord], namespace: str) -> dict[str, StateEntry]:
    """The namespace's world state after the VALID transactions, from their write sets alone."""
    state: dict[str, StateEntry] = {}
    for rec in transactions:
        if rec.code_name != "VALID":
            continue
        for ns in rec.info.rwset:
            if ns.namespace != namespace:
                continue
            for w in ns.writes:
                if w.is_delete:
                    state.pop(w.key, None)
                    continue
                keep = w.value if len(w.value) <= KEEP_BYTES else None
                state[w.key] = StateEntry(keep, sha256_hex(w.value), rec.block, rec.info.tx_id)
    return state


def _in_scope(key: str) -> bool:
    if key in PLAIN_KEYS:
        return True
    parts = key.split(SEP)
    return key.startswith(SEP) and len(parts) > 1 and parts[1] in COMPARED_TYPES


def _query(contract: ContractLike, fn: str, *args: str) -> Any:
    raw = contract.evaluate(fn, *args)
    return json.loads(raw) if raw else None


def live_records(contract: ContractLike, round_ids: Iterable[int]) -> dict[str, Any]:
    """key -> record, as the live contract serves them. `round_ids`: rounds whose updates to list
    (every round either side knows: a round missing on one side still has its updates compared)."""
    out: dict[str, Any] = {}
    cons = _query(contract, "GetConsortium") or {}
    if "head" in cons:
        out["head"] = cons.pop("head")  # GetConsortium adds the head record (its own key)
    out["consortium"] = cons
    for p in _query(contract, "ListParticipants") or []:
        out[composite_key("participant", str(p.get("id")))] = p
    live_rounds = {int(r.get("round_id", -1)): r for r in _query(contract, "ListRounds") or []}
    for rid, r in live_rounds.items():
        out[composite_key("round", f"{rid:020d}")] = r
    for rid in sorted(set(round_ids) | set(live_rounds)):
        if rid < 1 or rid not in live_rounds:
            continue  # GetUpdates refuses unknown rounds; the missing round is itself a finding
        for u in _query(contract, "GetUpdates", str(rid)) or []:
            out[composite_key("update", f"{rid:020d}", str(u.get("hospital")))] = u
    return out


def rebuilt_round_ids(state: dict[str, StateEntry]) -> set[int]:
    ids = set()
    for key in state:
        parts = key.split(SEP)
        if key.startswith(SEP) and len(parts) > 2 and parts[1] in ("round", "update") and parts[2].isdigit():
            ids.add(int(parts[2]))
    return ids


def _show(value: Any) -> str:
    text = canonical_text(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def field_differences(live: Any, chain: Any) -> list[str]:
    """'field live (state) vs chain (chain)' per differing top-level field."""
    if not (isinstance(live, dict) and isinstance(chain, dict)):
        return [f"{_show(live)} (state) vs {_show(chain)} (chain)"]
    out = []
    for name in sorted(set(live) | set(chain)):
        a, b = live.get(name, "<absent>"), chain.get(name, "<absent>")
        if a != b:
            out.append(f"{name} {_show(a)} (state) vs {_show(b)} (chain)")
    return out


def compare_state(rebuilt: dict[str, StateEntry], live: dict[str, Any]) -> list[Finding]:
    """Every in-scope key whose live record differs from the rebuilt one or exists on one side only.
    Findings name the last transaction that wrote the key (block -1: no transaction did)."""
    out: list[Finding] = []
    for key in sorted(set(live) | {k for k in rebuilt if _in_scope(k)}):
        entry, name = rebuilt.get(key), readable_key(key)
        if entry is None:
            out.append(Finding(-1, "", f"world state key {name} is served by the live network but no VALID "
                                       f"transaction wrote it"))
            continue
        if key not in live:
            out.append(Finding(entry.block, entry.tx_id, f"world state key {name}, written by the chain, is missing "
                                                         f"from the live network's state"))
            continue
        try:
            chain_value = json.loads(entry.value) if entry.value is not None else None
        except ValueError:
            chain_value = None
        if chain_value != live[key]:
            diffs = field_differences(live[key], chain_value)
            out.append(Finding(entry.block, entry.tx_id, f"world state key {name} differs from the chain's write "
                                                         f"sets: {'; '.join(diffs)}"))
    return out


def compare_world_state(contract: ContractLike, transactions: list[TxRecord],
                        namespace: str) -> tuple[int, list[Finding]]:
    """(keys compared, findings): the rebuilt state of `namespace` against the live contract's queries.
    A chain that never initialized the consortium has nothing to compare (the contract refuses queries)."""
    rebuilt = rebuild_state(transactions, namespace)
    try:
        live = live_records(contract, rebuilt_round_ids(rebuilt))
    except Exception as exc:  # a gateway error or a non-JSON answer: reported, not raised
        if "consortium" not in rebuilt:
            return 0, []
        return 0, [Finding(-1, "", f"could not read the world state from the live network: "
                                   f"{type(exc).__name__}: {str(exc)[:200]}")]
    keys = set(live) | {k for k in rebuilt if _in_scope(k)}
    return len(keys), compare_state(rebuilt, live)
