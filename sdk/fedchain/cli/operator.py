"""Consortium operations on the FL chaincode, one command per contract transaction.

`fedchain consortium init|show`, `fedchain participant register|list|show`,
`fedchain model genesis|get|publish`, `fedchain round create|show|list|close`,
`fedchain update submit`, `fedchain attest`. Every command takes --network D and --identity NAME
(a wallet entry); the chaincode checks the role, so the same commands serve operators, hospitals
(update submit) and MPC nodes (attest, model publish) doing things by hand.

The operator's campaign (bodies in fedchain.campaign.command): `fedchain operator run` drives rounds
from the ledger's state; `fedchain reference publish` publishes a round's FLTrust reference.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedchain.canonical import sha256_hex
from fedchain.fl_client import FLClient, mpc_node_entry, participant_entry
from fedchain.gateway.errors import describe_gateway_error

DEFAULT_DEADLINE_S = 600


# ---------------------------------------------------------------- shared with audit.py
def add_connection_args(p: argparse.ArgumentParser, default_identity: str | None = "operator") -> None:
    p.add_argument("--network", default=None, metavar="D",
                   help="network folder holding network.json and wallet/ (default: $FEDCHAIN_NETWORK or .fedchain)")
    p.add_argument("--identity", default=default_identity, required=default_identity is None, metavar="NAME",
                   help="wallet entry to sign with (D/wallet/NAME)" +
                   (f" (default {default_identity})" if default_identity else ""))


@contextlib.contextmanager
def session(args: argparse.Namespace) -> Iterator[tuple[Any, Any, FLClient]]:
    """(network config, gateway, FLClient) for the chosen network folder and identity."""
    from fedchain.netconfig import load_network

    cfg = load_network(args.network)
    gw = cfg.connect(args.identity)
    try:
        yield cfg, gw, FLClient(cfg.contract(gw))
    finally:
        gw.close()


def json_arg(value: str | None, what: str) -> Any:
    """Inline JSON or @path to a JSON file."""
    if value is None:
        return None
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{what} is not valid JSON ({exc})") from None


def csv_arg(value: str | None) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()] if value else []


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def print_submit(result: Any, what: str) -> None:
    """One line that says what was committed where, then the contract's answer."""
    print(f"{what}: tx {result.tx_id} {result.validation_code_name} in block {result.block_number}",
          file=sys.stderr)
    if result.result:
        print_json(json.loads(result.result))


def iso(ts: float | int | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def run(fn, args: argparse.Namespace) -> int:
    """Run a command body; expected failures become one clear line on stderr and exit code 1."""
    from fedchain.gateway import GatewayError
    from fedchain.identity import IdentityError
    from fedchain.netconfig import NetworkConfigError

    try:
        return int(fn(args) or 0)
    except GatewayError as exc:
        print(f"error: {describe_gateway_error(exc)}", file=sys.stderr)
        return 1
    except (NetworkConfigError, IdentityError, ValueError, OSError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------------- parsers


def _cmd(sub: argparse._SubParsersAction, name: str, help_text: str, body, identity: str | None = "operator"
         ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=help_text)
    add_connection_args(p, identity)
    p.set_defaults(func=lambda args: run(body, args))
    return p


def register(sub: argparse._SubParsersAction) -> None:
    cons = sub.add_parser("consortium", help="initialize and inspect the consortium on the ledger")
    csub = cons.add_subparsers(dest="consortium_command", metavar="ACTION", required=True)
    p = _cmd(csub, "init", "InitConsortium: MPC nodes, threshold, quorum, default policy, model size limit", _init)
    p.add_argument("--mpc-node", action="append", default=None, metavar="NAME",
                   help="wallet entry of an MPC node, in node-index order (repeat; default: network.json mpc_nodes)")
    p.add_argument("--threshold", type=int, default=None, help="Shamir threshold t (default: (m-1)//2)")
    p.add_argument("--quorum", type=int, default=None, help="attestations needed to finalize (default: t+1)")
    p.add_argument("--policy", default=None, help="default verification policy: JSON or @file")
    p.add_argument("--max-model-bytes", type=int, default=None, help="model size limit (chaincode default 4 MiB)")
    p.add_argument("--min-accepted", type=int, default=None,
                   help="privacy floor: fewest accepted updates the MPC nodes aggregate (chaincode default 3)")
    p.add_argument("--max-clock-skew", type=int, default=None, metavar="S",
                   help="how far a proposal timestamp may be off, in seconds (the peers' time window; chaincode "
                        "default 900 = Fabric's 15 min): hospitals may close a round only at deadline + S")
    p.add_argument("--operator-id", default=None, help="participant id for the caller (default 'operator')")
    p.add_argument("--config", default=None, help="the whole InitConsortium config as JSON or @file")
    _cmd(csub, "show", "GetConsortium: configuration and the head pointer", _cons_show)

    part = sub.add_parser("participant", help="register and list consortium participants")
    psub = part.add_subparsers(dest="participant_command", metavar="ACTION", required=True)
    p = _cmd(psub, "register", "RegisterParticipant: bind a wallet identity (or a certificate) to a role", _register)
    p.add_argument("id", help="participant id, [A-Za-z0-9_.-]{1,64}")
    p.add_argument("--role", required=True, choices=["hospital", "auditor", "operator"])
    p.add_argument("--wallet-entry", default=None, metavar="NAME", help="wallet entry holding its certificate")
    p.add_argument("--cert", default=None, help="or: PEM certificate file of the participant")
    p.add_argument("--msp-id", default=None, help="MSP id (with --cert)")
    p.add_argument("--sample-cap", type=int, default=None, help="hospitals: enrolment cap on n_samples")
    p = _cmd(psub, "list", "ListParticipants", _plist)
    p.add_argument("--role", default=None, choices=["hospital", "mpc_node", "auditor", "operator"])
    p = _cmd(psub, "show", "GetParticipant", _pshow)
    p.add_argument("id")

    model = sub.add_parser("model", help="genesis model, publish and fetch models")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    p = _cmd(msub, "genesis", "PublishGenesisModel: round 0's model and its spec", _genesis)
    p.add_argument("--spec", required=True, help="model spec JSON (with param_count) or @file")
    p.add_argument("--file", required=True, help="model file (e.g. safetensors)")
    p = _cmd(msub, "get", "GetModel: fetch a round's model, check its SHA-256, write it", _model_get)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--out", required=True, help="output file")
    p = _cmd(msub, "publish", "PublishModel (MPC node): the finalized model's bytes", _model_publish, None)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--file", required=True)

    rnd = sub.add_parser("round", help="create, inspect and close training rounds")
    rsub = rnd.add_subparsers(dest="round_command", metavar="ACTION", required=True)
    p = _cmd(rsub, "create", "CreateRound on the last finalized model", _round_create)
    p.add_argument("--round", type=int, default=None, help="round id (default: last + 1)")
    p.add_argument("--deadline", type=float, default=None, help="unix seconds")
    p.add_argument("--deadline-in", type=float, default=None, metavar="SECONDS",
                   help=f"deadline relative to now (default {DEFAULT_DEADLINE_S})")
    p.add_argument("--min-updates", type=int, default=1)
    p.add_argument("--hyperparameters", default=None, help="JSON or @file")
    p.add_argument("--policy", default=None, help="verification policy JSON or @file (default: consortium's)")
    p.add_argument("--spec", default=None, help="model spec JSON or @file (default: the base model's)")
    p.add_argument("--root-data", default=None, metavar="F",
                   help="the consortium's root set (MedMNIST npz): compute the FLTrust reference on the base model "
                        "(as `fedchain operator run` does), declare its hash in hyperparameters.reference_sha256 "
                        "and publish it after the round is created; a --policy with inference_enabled also gets "
                        "its validation batch (policy.inference_batch root samples) declared and published")
    p.add_argument("--root-size", type=int, default=200, metavar="N",
                   help="with --root-data: class-balanced samples of its validation split (default 200)")
    p.add_argument("--no-publish-reference", action="store_true",
                   help="with --root-data: only declare the reference's hash (and the validation batch's, if the "
                        "policy enables inference_enabled); publish them later with `fedchain reference publish` "
                        "(and `fedchain validation publish`)")
    p = _cmd(rsub, "show", "GetRound", _round_show)
    p.add_argument("round", type=int)
    _cmd(rsub, "list", "ListRounds", _round_list)
    p = _cmd(rsub, "close", "CloseRound (operators any time, anyone after the deadline)", _round_close)
    p.add_argument("round", type=int)

    upd = sub.add_parser("update", help="hospital update records")
    usub = upd.add_subparsers(dest="update_command", metavar="ACTION", required=True)
    p = _cmd(usub, "submit", "SubmitUpdate (hospital): share hashes and n_samples for a round", _update_submit, None)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--share-hashes", required=True, help="comma list, one SHA-256 per MPC node in index order")
    p.add_argument("--n-samples", type=int, required=True)
    p.add_argument("--dim", type=int, default=None, help="parameter count (default: the round's)")
    p = _cmd(usub, "list", "GetUpdates of a round", _update_list)
    p.add_argument("--round", type=int, required=True)

    p = _cmd(sub, "attest", "AttestResult (MPC node): new model hash and verdicts for a closed round",
             _attest, None)
    p.add_argument("--round", type=int, required=True)
    p.add_argument("--model-hash", default=None, help="SHA-256 of the new model")
    p.add_argument("--model-file", default=None, help="or: the new model file (hashed here)")
    p.add_argument("--accepted", default="", help="comma list of accepted hospital ids")
    p.add_argument("--rejected", default="", help="comma list of id=reason (reason codes: norm, cosine, ...)")
    p.add_argument("--report-hash", default=None, help="SHA-256 of the verification report")
    p.add_argument("--report-file", default=None, help="or: the report file (hashed here)")

    _register_campaign(sub)


def _register_campaign(sub: argparse._SubParsersAction) -> None:
    """`fedchain operator run`, `fedchain reference publish` and `fedchain validation publish` (fedchain.campaign)."""
    from fedchain.campaign.args import add_policy_args, add_training_args
    from fedchain.campaign.command import guarded, operator_run, reference_publish, validation_publish

    op = sub.add_parser("operator", help="drive a training campaign: the consortium operator's round loop")
    osub = op.add_subparsers(dest="operator_command", metavar="ACTION", required=True)
    p = osub.add_parser(
        "run", help="run rounds until round N has ended, against hospitals running `fedchain hospital run`",
        description="Publish the genesis model on an empty ledger, then per round: create it on the last finalized "
                    "model, publish its FLTrust reference (computed from the root data), wait until --min-updates "
                    "updates arrived or the deadline passed, close it, wait for the MPC nodes' verdict. Every step "
                    "is decided from the ledger's state, so a restarted operator continues the campaign and never "
                    "creates a round twice.")
    add_connection_args(p)
    p.add_argument("--rounds", type=int, required=True, metavar="N",
                   help="the campaign ends when round N has ended; rounds already on the ledger count (a restart "
                        "adds none)")
    p.add_argument("--root-data", required=True, metavar="F",
                   help="the consortium's public root set, a MedMNIST npz: references (and the genesis warm-up) use "
                        "--root-size class-balanced samples of its validation split")
    p.add_argument("--model-spec", default=None, metavar="JSON|@FILE",
                   help="model spec for the genesis model (default: the demo CNN for the root data's shape; once the "
                        "ledger has a model, its spec)")
    p.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                   help=f"each round's deadline, S seconds after it is created (default {DEFAULT_DEADLINE_S})")
    p.add_argument("--min-updates", type=int, default=None, metavar="K",
                   help="close a round as soon as K updates are on the ledger, else at its deadline (default: the "
                        "privacy floor, --min-accepted); set it to the number of hospitals you expect")
    p.add_argument("--round-timeout", type=float, default=600.0, metavar="S",
                   help="how long to wait for the MPC nodes' verdict after a close (default 600)")
    p.add_argument("--test-data", default=None, metavar="F",
                   help="MedMNIST npz whose test split measures each round's model (accuracy in the live line and "
                        "the report; none without it)")
    p.add_argument("--report-json", default=None, metavar="PATH",
                   help="write the campaign's report (the demo's report.json schema) here after every round")
    p.add_argument("--poll", type=float, default=1.0, metavar="S",
                   help="seconds between ledger reads while a round collects updates (default 1)")
    add_training_args(p)
    add_policy_args(p)
    p.set_defaults(func=lambda args: guarded(operator_run, args))

    ref = sub.add_parser("reference", help="the FLTrust reference update of a round")
    refsub = ref.add_subparsers(dest="reference_command", metavar="ACTION", required=True)
    p = refsub.add_parser(
        "publish", help="recompute a round's declared reference from the root data and publish it",
        description="Recompute the round's FLTrust reference exactly as `fedchain operator run` does (its base "
                    "model, the hyperparameters and seeds the round records, the root set drawn from the root "
                    "file's validation split), check it against the round's reference_sha256 and publish it "
                    "(PublishReference: operator, while the round is OPEN or CLOSED before any MPC node attested it).")
    add_connection_args(p)
    p.add_argument("--round", type=int, required=True, metavar="N")
    p.add_argument("--root-data", required=True, metavar="F", help="the root file the round was made with")
    p.set_defaults(func=lambda args: guarded(reference_publish, args))

    val = sub.add_parser("validation", help="the public validation batch of a round (encrypted-inference check)")
    valsub = val.add_subparsers(dest="validation_command", metavar="ACTION", required=True)
    p = valsub.add_parser(
        "publish", help="redraw a round's declared validation batch from the root data (or take --file) and publish "
                        "it",
        description="Redraw the round's validation batch exactly as `fedchain operator run --inference-check` does "
                    "(the root set the round records, its validation_size and validation_seed), or read it from "
                    "--file, check it against the round's validation_sha256 and publish it (PublishValidationBatch: "
                    "operator, while the round is OPEN or CLOSED before any MPC node attested it).")
    add_connection_args(p)
    p.add_argument("--round", type=int, required=True, metavar="N")
    p.add_argument("--root-data", default=None, metavar="F", help="the root file the round was made with")
    p.add_argument("--file", default=None, metavar="F",
                   help="or: a batch file (fedchain.validation_batch bytes) whose SHA-256 the round declared")
    p.set_defaults(func=lambda args: guarded(validation_publish, args))


# ---------------------------------------------------------------------------- bodies
def _init(args: argparse.Namespace) -> int:
    from fedchain.netconfig import load_network

    cfg = load_network(args.network)
    if args.config:
        config = json_arg(args.config, "--config")
    else:
        names = args.mpc_node or [n.id for n in cfg.mpc_nodes]
        if not names:
            raise ValueError("no MPC nodes: pass --mpc-node NAME for each (wallet entries) or use --config")
        nodes = [mpc_node_entry(name, cfg.identity(name)) for name in names]
        m = len(nodes)
        t = args.threshold if args.threshold is not None else max(1, (m - 1) // 2)
        config: dict[str, Any] = {"mpc_nodes": nodes, "threshold": t,
                                  "quorum": args.quorum if args.quorum is not None else t + 1}
        if args.policy:
            config["default_policy"] = json_arg(args.policy, "--policy")
        if args.max_model_bytes:
            config["max_model_bytes"] = args.max_model_bytes
        if args.min_accepted is not None:
            config["min_accepted"] = args.min_accepted
        if args.max_clock_skew is not None:
            config["max_clock_skew_s"] = args.max_clock_skew
        if args.operator_id:
            config["operator_id"] = args.operator_id
    with session(args) as (_, _, client):
        print_submit(client.init_consortium(config), "InitConsortium")
    return 0


def _cons_show(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        print_json(client.get_consortium().to_json())
    return 0


def _register(args: argparse.Namespace) -> int:
    from fedchain.identity import Identity

    if args.wallet_entry:
        from fedchain.netconfig import load_network

        ident: Any = load_network(args.network).identity(args.wallet_entry).identity
    elif args.cert and args.msp_id:
        ident = Identity(args.msp_id, Path(args.cert).read_bytes())
    else:
        raise ValueError("give --wallet-entry NAME, or --cert PEM with --msp-id")
    if args.role == "hospital" and args.sample_cap is None:
        raise ValueError("hospitals need --sample-cap (the enrolment cap on n_samples)")
    entry = participant_entry(args.id, ident, args.role, args.sample_cap if args.role == "hospital" else None)
    with session(args) as (_, _, client):
        print_submit(client.register_participant(entry), f"RegisterParticipant {args.id}")
    return 0


def _plist(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        rows = client.list_participants(args.role)
    for p in rows:
        extra = f"node {p.node_index}" if p.node_index is not None else (
            f"cap {p.sample_cap}" if p.sample_cap is not None else "")
        print(f"{p.id:20s} {p.role:9s} {p.msp_id:10s} {extra}")
    return 0


def _pshow(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        print_json(client.get_participant(args.id).to_json())
    return 0


def _genesis(args: argparse.Namespace) -> int:
    spec = json_arg(args.spec, "--spec")
    data = Path(args.file).read_bytes()
    with session(args) as (_, _, client):
        print_submit(client.publish_genesis_model(spec, data), "PublishGenesisModel")
    return 0


def _model_get(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        rec = client.get_model(args.round)
    out = Path(args.out)
    out.write_bytes(rec.model)
    print(f"round {args.round} model: {rec.size} bytes, sha256 {rec.sha256} (verified) -> {out}")
    return 0


def _model_publish(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()
    with session(args) as (_, _, client):
        print_submit(client.publish_model(args.round, data), f"PublishModel round {args.round}")
    return 0


def _round_create(args: argparse.Namespace) -> int:
    root = None
    if args.root_data:  # checked before anything touches the ledger
        from fedchain.campaign.command import load_root_data

        root = load_root_data(args.root_data)
    with session(args) as (_, _, client):
        head = client.head()
        if head.model_hash is None or head.finalized_round_id is None:
            raise ValueError("no genesis model on the ledger yet: run `fedchain model genesis` first")
        if args.deadline is not None:
            deadline = args.deadline
        else:
            deadline = round(time.time() + (args.deadline_in if args.deadline_in is not None else DEFAULT_DEADLINE_S),
                             3)
        spec = json_arg(args.spec, "--spec") or client.get_round(head.finalized_round_id).model_spec.to_json()
        spec_round: dict[str, Any] = {
            "round_id": args.round if args.round is not None else head.last_round_id + 1,
            "base_model_hash": head.model_hash, "model_spec": spec, "deadline": deadline,
            "min_updates": args.min_updates,
        }
        if args.hyperparameters:
            spec_round["hyperparameters"] = json_arg(args.hyperparameters, "--hyperparameters")
        if args.policy:
            spec_round["policy"] = json_arg(args.policy, "--policy")
        ref = batch = None
        if root is not None:
            from fedchain.campaign.command import reference_for_new_round, validation_for_new_round

            spec_round["hyperparameters"], ref = reference_for_new_round(
                client, spec_round["round_id"], spec, spec_round.get("hyperparameters"), root, args.root_size)
            policy = spec_round.get("policy") or client.get_consortium().default_policy.to_json()
            spec_round["hyperparameters"], batch = validation_for_new_round(
                spec_round["round_id"], policy, spec_round["hyperparameters"], root)
        rid = spec_round["round_id"]
        print_submit(client.create_round(spec_round), f"CreateRound {rid}")
        if ref is not None and args.no_publish_reference:
            print(f"round {rid} declares reference {ref.sha256}: publish it with `fedchain reference publish "
                  f"--round {rid} --root-data {args.root_data}` before the round closes", file=sys.stderr)
            if batch is not None:
                print(f"round {rid} declares validation batch {spec_round['hyperparameters']['validation_sha256']}: "
                      f"publish it with `fedchain validation publish --round {rid} --root-data {args.root_data}`",
                      file=sys.stderr)
        elif ref is not None:
            result = client.publish_reference(rid, ref.vector.astype("<f4").tobytes())
            print(f"PublishReference: tx {result.tx_id} {result.validation_code_name} in block "
                  f"{result.block_number} (reference {ref.sha256})", file=sys.stderr)
            if batch is not None:
                result = client.publish_validation_batch(rid, batch)
                print(f"PublishValidationBatch: tx {result.tx_id} {result.validation_code_name} in block "
                      f"{result.block_number} (validation batch "
                      f"{spec_round['hyperparameters']['validation_sha256']})", file=sys.stderr)
        else:
            rnd = client.get_round(rid)
            if rnd.policy.cosine_enabled and not rnd.hyper.reference_sha256:
                print(f"warning: round {rid} checks cosine similarity but declares no reference_sha256: the MPC "
                      "nodes cannot verify its updates. Close it (`fedchain round close {rid}`) and create the next round with "
                      "--root-data F", file=sys.stderr)
    return 0


def _round_show(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        print_json(client.get_round(args.round).to_json())
    return 0


def _round_list(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        rounds = client.list_rounds()
    for r in rounds:
        fin = r.finalized.model_hash if r.finalized is not None else ""
        n = len(r.submitted) if r.submitted is not None else "-"
        print(f"round {r.round_id:>4}  {r.state:9s}  updates {n!s:>4}  deadline {iso(r.deadline)}  "
              f"model {fin[:16]}")
    return 0


def _round_close(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        print_submit(client.close_round(args.round), f"CloseRound {args.round}")
    return 0


def _update_submit(args: argparse.Namespace) -> int:
    hashes = csv_arg(args.share_hashes)
    with session(args) as (_, _, client):
        dim = args.dim if args.dim is not None else client.get_round(args.round).model_spec.param_count
        update = {"round_id": args.round, "share_hashes": hashes, "n_samples": args.n_samples, "dim": dim}
        print_submit(client.submit_update(update), f"SubmitUpdate round {args.round}")
    return 0


def _update_list(args: argparse.Namespace) -> int:
    with session(args) as (_, _, client):
        print_json([u.to_json() for u in client.get_updates(args.round)])
    return 0


def _file_hash(path: str | None, given: str | None, what: str) -> str:
    if given and path:
        raise ValueError(f"give --{what}-hash or --{what}-file, not both")
    if path:
        return sha256_hex(Path(path).read_bytes())
    if not given:
        raise ValueError(f"give --{what}-hash or --{what}-file")
    return given.lower()


def _attest(args: argparse.Namespace) -> int:
    rejected: dict[str, str] = {}
    for item in csv_arg(args.rejected):
        hid, sep, reason = item.partition("=")
        if not sep:
            raise ValueError(f"--rejected entries are id=reason, got {item!r}")
        rejected[hid] = reason
    attestation = {
        "round_id": args.round, "model_hash": _file_hash(args.model_file, args.model_hash, "model"),
        "accepted": csv_arg(args.accepted), "rejected": rejected,
        "report_hash": _file_hash(args.report_file, args.report_hash, "report"),
    }
    with session(args) as (_, _, client):
        result = client.attest_result(attestation)
    print_submit(result, f"AttestResult round {args.round}")
    return 0
