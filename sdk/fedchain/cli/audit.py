"""`fedchain audit ...`: what auditors run. `audit history --round N` prints who did what in a round.

The history comes from the chaincode's own key histories (GetHistory), so it is what the ledger
committed: every change with its transaction id, timestamp and creator; the validation code of
each transaction comes from the peer's qscc (GetTransactionByID), as any Fabric client would
get it. More audit sub-commands are added to SUBCOMMANDS (one `add(asub)` function each).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from fedchain.cli import operator as op
from fedchain.cli.operator import add_connection_args, iso, run
from fedchain.fl_client import FLClient
from fedchain.records import Attestation, HistoryEntry, Round, RoundId, Update


@dataclass
class Event:
    timestamp: float
    tx_id: str
    function: str
    who: str
    msp_id: str
    what: str
    validation: str = "?"


def _short(h: str | None) -> str:
    return (h or "")[:12]


def _creator(entry: HistoryEntry) -> tuple[str, str]:
    c = entry.creator or {}
    return str(c.get("participant") or "?"), str(c.get("msp_id") or "?")


def round_events(client: FLClient, round_id: RoundId) -> list[Event]:
    """Every committed change that belongs to a round, oldest first, one line per transaction."""
    events: dict[str, Event] = {}

    def add(entry: HistoryEntry, what: str) -> None:
        who, msp = _creator(entry)
        ev = events.get(entry.tx_id)
        if ev is None:
            events[entry.tx_id] = Event(entry.timestamp or 0.0, entry.tx_id, entry.function or "?", who, msp, what)
        elif what and what not in ev.what:
            ev.what = f"{ev.what}; {what}" if ev.what else what

    # attestations and updates first: their records say more than the round's
    cons = client.get_consortium()
    for node in cons.mpc_nodes:
        for entry in reversed(client.get_history("attestation", f"{round_id}/{node.id}")):
            att = entry.record(Attestation)
            if att is None:
                add(entry, "")
                continue
            rej = ", ".join(f"{k}:{r}" for k, r in sorted(att.rejected.items()))
            add(entry, f"attested model {_short(att.model_hash)} accepted [{', '.join(att.accepted)}]"
                       + (f" rejected [{rej}]" if rej else ""))
    for upd in client.get_updates(round_id) if round_id > 0 else []:
        for entry in reversed(client.get_history("update", f"{round_id}/{upd.hospital}")):
            u = entry.record(Update)
            add(entry, "" if u is None else
                f"submitted update (n_samples {u.n_samples}, {len(u.share_hashes)} share hashes)")
    previous: str | None = None
    for entry in reversed(client.get_history("round", round_id)):  # oldest first
        rnd = entry.record(Round)
        state = rnd.state if rnd is not None else None
        fn = entry.function
        if rnd is None:
            what = ""
        elif fn == "CreateRound":
            what = (f"created round (base {_short(rnd.base_model_hash)}, min_updates {rnd.min_updates}, "
                    f"deadline {iso(rnd.deadline)})")
        elif fn == "CloseRound":
            what = f"closed round ({len(rnd.submitted or ())} updates)"
        elif fn == "PublishGenesisModel":
            what = f"genesis model {_short(rnd.finalized.model_hash if rnd.finalized else None)}"
        else:
            what = ""
        if state != previous and fn not in ("CreateRound", "CloseRound"):
            what = (what + "; " if what else "") + f"round -> {state}"
        previous = state
        add(entry, what)
    for entry in reversed(client.get_history("model", round_id)):
        v = entry.value or {}  # model~ holds the model's metadata (sha256, size, chunk_round), not a GetModel record
        if entry.function in ("PublishModel", "PublishGenesisModel"):
            add(entry, f"published model {_short(v.get('sha256'))} ({v.get('size')} bytes)")
        else:
            add(entry, f"model unchanged: points at round {v.get('chunk_round')}'s bytes")
    return sorted(events.values(), key=lambda e: (e.timestamp, e.tx_id))


def validation_lookup(gateway: Any, channel: str) -> Callable[[str], str]:
    """tx id -> Fabric TxValidationCode name through qscc GetTransactionByID."""
    from fabric_protos.peer import transaction_pb2

    from fedchain.ledger.blocks import validation_code_name

    qscc = gateway.network(channel).contract("qscc")

    def lookup(tx_id: str) -> str:
        try:
            raw = qscc.evaluate("GetTransactionByID", channel, tx_id)
            return validation_code_name(transaction_pb2.ProcessedTransaction.FromString(raw).validationCode)
        except Exception as exc:  # a peer without qscc must not hide the rest of the history
            return f"n/a ({type(exc).__name__})"

    return lookup


def _history(args: argparse.Namespace) -> int:
    with op.session(args) as (cfg, gw, client):
        events = round_events(client, args.round)
        lookup = validation_lookup(gw, cfg.channel)
        for ev in events:
            ev.validation = lookup(ev.tx_id)
    if args.json:
        print(json.dumps([asdict(e) for e in events], indent=2))
        return 0
    print(f"round {args.round}: {len(events)} transactions")
    for ev in events:
        print(f"{iso(ev.timestamp)}  {ev.tx_id[:16]}  {ev.validation:6s}  {ev.who + '@' + ev.msp_id:22s}  "
              f"{ev.function:17s}  {ev.what}")
    return 0


def _add_history(asub: argparse._SubParsersAction) -> None:
    p = asub.add_parser("history", help="who did what in a round: tx ids, timestamps, validation codes",
                        description="Who did what in a round, from the ledger's key histories: tx id, "
                        "timestamp, creator, function and validation code (qscc) of every transaction.")
    add_connection_args(p, "auditor")
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=lambda args: run(_history, args))


def _add_verify(asub: argparse._SubParsersAction) -> None:
    from fedchain.cli.audit_verify import add_verify

    add_verify(asub)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_history, _add_verify]


def register(sub: argparse._SubParsersAction) -> None:
    audit = sub.add_parser("audit", help="audit the ledger: round histories, chain verification")
    asub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    for add in SUBCOMMANDS:
        add(asub)
