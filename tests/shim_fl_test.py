"""The FL contract through the real shim gives byte-identical results to the in-memory MockStub.

A differential test: the same call sequence (same tx ids, same timestamps, same identities) runs
on fedchain_cc.testing.MockLedger and over gRPC through ChaincodeServer + the fake peer; every
response (status, message, payload) and event must match, and so must the final world state.
This pins the real stub's semantics (composite-key ranges, history order, identity parsing,
timestamps) to the ones the FL contract's unit tests rely on.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from fedchain_cc.fl import FLContract
from fedchain_cc.shim import ChaincodeServer
from fedchain_cc.testing import MockLedger

sys.path.insert(0, str(Path(__file__).parent))
from cc_support import (  # noqa: E402
    GENESIS,
    NEW_MODEL,
    PARAM_COUNT,
    SPEC,
    T0,
    b64,
    h,
    init_config,
    make_identity,
)
from shim_peer import FakePeer, creator_bytes  # noqa: E402


def test_fl_round_over_grpc_matches_mock_ledger() -> None:
    operator = make_identity("operator", "operator", "Org1MSP")
    mpc = [make_identity(f"mpc{j}", "mpc_node", f"Org{j + 1}MSP") for j in range(3)]
    hosp = {f"hospital{i}": make_identity(f"hospital{i}", "hospital", f"Org{i}MSP") for i in (1, 2)}
    stranger = make_identity("stranger", "hospital", "Org2MSP")
    att = {
        "round_id": 1,
        "model_hash": hashlib.sha256(NEW_MODEL).hexdigest(),
        "accepted": sorted(hosp),
        "rejected": {},
        "report_hash": h("report1"),
    }
    calls = [
        (operator, "InitConsortium", init_config(mpc)),
        *[
            (
                operator,
                "RegisterParticipant",
                {"id": n, "role": "hospital", "msp_id": c.msp_id, "identity": c.id, "sample_cap": 1000},
            )
            for n, c in hosp.items()
        ],
        (operator, "PublishGenesisModel", SPEC, b64(GENESIS)),
        (operator, "GetConsortium"),
        (stranger, "GetConsortium"),  # refused: not registered
        (
            operator,
            "CreateRound",
            {
                "round_id": 1,
                "base_model_hash": hashlib.sha256(GENESIS).hexdigest(),
                "model_spec": SPEC,
                "deadline": T0 + 3600,
                "min_updates": 2,
            },
        ),
        *[
            (
                c,
                "SubmitUpdate",
                {
                    "round_id": 1,
                    "share_hashes": [h(f"1/{n}/{j}") for j in range(3)],
                    "n_samples": 100,
                    "dim": PARAM_COUNT,
                },
            )
            for n, c in hosp.items()
        ],
        (operator, "ListParticipants"),
        (operator, "CloseRound", "1"),
        (mpc[0], "AttestResult", att),
        (mpc[1], "AttestResult", att),
        (mpc[0], "PublishModel", "1", b64(NEW_MODEL)),
        (operator, "GetModel", "1"),
        (operator, "ListRounds"),
        (operator, "GetHistory", "round", "1"),
        (operator, "NoSuchFunction"),
    ]
    ledger = MockLedger(FLContract(), start_time=T0)
    statuses = []
    with (
        ChaincodeServer(FLContract(), "127.0.0.1:0", "fedchain:1") as server,
        FakePeer(server.address) as peer,
    ):
        for i, (who, fn, *args) in enumerate(calls):
            str_args = [a if isinstance(a, str) else json.dumps(a) for a in args]
            ts, tx_id = T0 + 10 * i, f"{i:04d}" + "ab" * 30
            sim = ledger.simulate(who, fn, *str_args, timestamp=ts, tx_id=tx_id)
            if sim.ok:
                assert ledger.commit([sim]) == ["VALID"]
            r = peer.call(
                fn, *str_args, creator=creator_bytes(who.msp_id, who.cert_pem), tx_id=tx_id, timestamp=ts
            )
            assert r.kind == "COMPLETED", r
            statuses.append(r.status)
            assert (r.status, r.message, r.payload) == (
                sim.response.status,
                sim.response.message,
                sim.response.payload,
            ), fn
            assert r.event == sim.event, fn
    assert peer.world == ledger.snapshot()
    refused = [calls[i][1] for i, st in enumerate(statuses) if st != 200]
    assert refused == ["GetConsortium", "NoSuchFunction"]  # the stranger's query and the unknown function
    assert "RoundFinalized" in [e[1] for e in ledger.events]
