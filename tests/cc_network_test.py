"""The FL chaincode through the embedded network with the real gateway client (separate processes).

`fedchain network up --no-mpc` in a temp folder: chaincode server + devnet over gRPC/TLS. Then
20 hospitals submit concurrently (all must commit VALID), three MPC identities attest, the model
is published and fetched, and `fedchain audit history` reads validation codes from qscc.
Skipped (with the reason) only while the devnet / shim server / launcher configs are not in the tree.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.util
import json
import random
import threading
import time

import pytest

NEEDED = ["fedchain_devnet.__main__", "fedchain_cc.__main__", "fedchain.netctl.embedded_configs"]


def _missing() -> list[str]:
    out = []
    for name in NEEDED:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except ModuleNotFoundError:
            out.append(name)
    return out


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(_missing()), reason=f"embedded network not in the tree yet: missing {_missing()}"),
]

N_HOSPITALS = 20




@pytest.fixture(scope="module")
def network(tmp_path_factory):
    from conftest import running_network

    with running_network(tmp_path_factory.mktemp("embedded"), with_mpc=False) as net:
        yield net.layout.root


def _client(cfg, name):
    from fedchain.fl_client import FLClient

    gw = cfg.connect(name)
    return gw, FLClient(cfg.contract(gw))


def test_round_through_the_embedded_network(network, capsys):
    from fedchain.cli import main as cli_main
    from fedchain.fl_client import mpc_node_entry, participant_entry
    from fedchain.identity import Consortium, Wallet
    from fedchain.netconfig import load_network

    cfg = load_network(network)
    cons = Consortium.load(network / "crypto")
    wallet = Wallet(network / "wallet")
    gw, op = _client(cfg, "operator")
    try:
        try:
            consortium = op.get_consortium()
        except Exception:  # the launcher did not initialize it: do it here
            op.init_consortium({"mpc_nodes": [mpc_node_entry(f"mpc{j}", cfg.identity(f"mpc{j}")) for j in range(3)],
                                "threshold": 1, "quorum": 2})
            consortium = op.get_consortium()
        m = len(consortium.mpc_nodes)
        registered = {p.id for p in op.list_participants()}
        names = [f"cchosp{i}" for i in range(N_HOSPITALS)]
        for i, name in enumerate(names):
            if not wallet.exists(name):
                wallet.put(name, cons.enroll(cons.orgs[i % len(cons.orgs)].msp_id, name, "hospital"))
            if name not in registered:
                op.register_participant(participant_entry(name, wallet.get(name), "hospital", sample_cap=10_000))
        if "auditor" not in registered:
            op.register_participant(participant_entry("auditor", wallet.get("auditor"), "auditor"))
        head = op.head()
        genesis = b"\x01" * 4000
        if head.model_hash is None:
            op.publish_genesis_model({"arch": "test", "param_count": 1000}, genesis)
            head = op.head()
        param_count = op.get_round(head.finalized_round_id).model_spec.param_count
        rid = head.last_round_id + 1
        res = op.create_round({"round_id": rid, "base_model_hash": head.model_hash,
                               "model_spec": {"param_count": param_count}, "deadline": time.time() + 600,
                               "min_updates": 2})
        assert res.validation_code_name == "VALID"

        def submit(name: str):
            hgw, hc = _client(cfg, name)
            try:
                hashes = [hashlib.sha256(f"{rid}/{name}/{j}".encode()).hexdigest() for j in range(m)]
                return hc.submit_update({"round_id": rid, "share_hashes": hashes, "n_samples": 100,
                                         "dim": param_count})
            finally:
                hgw.close()

        t0 = time.monotonic()
        with cf.ThreadPoolExecutor(N_HOSPITALS) as pool:
            results = list(pool.map(submit, names))
        elapsed = time.monotonic() - t0
        assert [r.validation_code_name for r in results] == ["VALID"] * N_HOSPITALS
        assert len({r.tx_id for r in results}) == N_HOSPITALS
        with capsys.disabled():
            print(f"\n{N_HOSPITALS} concurrent submissions committed VALID in {elapsed:.2f} s "
                  f"over {len({r.block_number for r in results})} block(s)")

        closed = json.loads(op.close_round(rid).result)
        assert sorted(closed["submitted"]) == sorted(names)
        new_model = b"\x02" * 4000
        att = {"round_id": rid, "model_hash": hashlib.sha256(new_model).hexdigest(),
               "accepted": sorted(names[1:]), "rejected": {names[0]: "norm"},
               "report_hash": hashlib.sha256(b"report").hexdigest()}
        states = []
        for j in range(m):
            ngw, node = _client(cfg, consortium.mpc_nodes[j].id)
            try:
                states.append(json.loads(node.attest_result(att).result)["state"])
                if states[-1] == "FINALIZED" and states.count("FINALIZED") == 1:  # the node that finalized
                    node.publish_model(rid, new_model)
            finally:
                ngw.close()
        assert states == ["CLOSED", "FINALIZED", "FINALIZED"]  # quorum 2 of 3; the third is a late attestation
        got = op.get_model(rid)
        assert got.model == new_model
        # refusals travel back through the gateway with the chaincode's message
        with pytest.raises(Exception, match="CLOSED|FINALIZED"):
            op.close_round(rid)
        # the round's events, as an application sees them from the gateway's ChaincodeEvents stream
        start = res.block_number
        seen = []
        stream = gw.network(cfg.channel).chaincode_events(cfg.chaincode, start_block=start)
        watchdog = threading.Timer(60, stream.close)  # a missing event fails the test instead of hanging it
        watchdog.start()
        try:
            for ev in stream:
                payload = json.loads(ev.payload)
                if payload.get("round_id") == rid:
                    seen.append(ev.event_name)
                if ev.event_name == "RoundFinalized" and payload.get("round_id") == rid:
                    break
        except Exception as exc:  # closed by the watchdog
            seen.append(f"stream ended: {type(exc).__name__}")
        finally:
            watchdog.cancel()
            stream.close()
        assert seen == ["RoundCreated", *["UpdateSubmitted"] * N_HOSPITALS, "RoundClosed", "RoundFinalized"]
    finally:
        gw.close()

    capsys.readouterr()
    assert cli_main.main(["audit", "history", "--network", str(network), "--round", str(rid), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    fns = [e["function"] for e in events]
    assert fns.count("SubmitUpdate") == N_HOSPITALS and fns[0] == "CreateRound" and "PublishModel" in fns
    assert all(e["validation"] == "VALID" for e in events), [e["validation"] for e in events]


def test_refusals_through_the_network(network):
    """Access control and argument checks hold end to end and leave the ledger as it was."""
    from fedchain.gateway import GatewayError
    from fedchain.identity import Consortium, Wallet
    from fedchain.netconfig import load_network

    cfg = load_network(network)
    cons = Consortium.load(network / "crypto")
    wallet = Wallet(network / "wallet")
    if not wallet.exists("ccstranger"):
        wallet.put("ccstranger", cons.enroll(cons.orgs[1].msp_id, "ccstranger", "hospital"))
    gw, aud = _client(cfg, "auditor")
    sgw, stranger = _client(cfg, "ccstranger")
    try:
        before = (aud.list_rounds(), aud.list_participants(), aud.head())
        rid = before[2].last_round_id
        cases = [
            (lambda: stranger.submit_update({"round_id": rid, "share_hashes": [], "n_samples": 1, "dim": 1}),
             "not a registered participant"),
            (lambda: stranger.get_round(rid), "not a registered participant"),
            (lambda: aud.create_round({"round_id": rid + 1}), "this needs role operator"),
            (lambda: aud.contract.submit("SubmitUpdate", "{not json"), "needs role hospital"),
            (lambda: aud.contract.evaluate("GetRound", "-1"), "must be a decimal integer"),
            (lambda: aud.contract.evaluate("NoSuchFunction"), "unknown function"),
        ]
        for call, text in cases:
            with pytest.raises(GatewayError) as info:
                call()
            assert text in str(info.value)
        assert (aud.list_rounds(), aud.list_participants(), aud.head()) == before
    finally:
        gw.close()
        sgw.close()


def test_model_at_the_size_limit_round_trips(network):
    """A model of exactly max_model_bytes is published and fetched intact; one byte more is refused clearly."""
    from fedchain.gateway import GatewayError
    from fedchain.netconfig import load_network

    cfg = load_network(network)
    gw, op = _client(cfg, "operator")
    try:
        cons = op.get_consortium()
        limit = cons.max_model_bytes
        head = op.head()
        rid = head.last_round_id + 1
        param_count = op.get_round(head.finalized_round_id).model_spec.param_count
        op.create_round({"round_id": rid, "base_model_hash": head.model_hash,
                         "model_spec": {"param_count": param_count}, "deadline": time.time() + 600,
                         "min_updates": 1})
        # as many hospitals as the consortium's privacy floor (min_accepted) asks for an aggregate
        hospitals = sorted(p.id for p in op.list_participants("hospital"))[: cons.min_accepted or 1]
        for hospital in hospitals:
            hgw, hc = _client(cfg, hospital)
            try:
                hc.submit_update({"round_id": rid, "share_hashes": ["ab" * 32] * len(cons.mpc_nodes),
                                  "n_samples": 1, "dim": param_count})
            finally:
                hgw.close()
        op.close_round(rid)
        big = bytes(random.Random(rid).getrandbits(8) for _ in range(1024)) * (limit // 1024)
        big += b"\x07" * (limit - len(big))
        att = {"round_id": rid, "model_hash": hashlib.sha256(big).hexdigest(), "accepted": hospitals,
               "rejected": {}, "report_hash": "cd" * 32}
        nodes = [n.id for n in cons.mpc_nodes]
        clients = [_client(cfg, n) for n in nodes[: cons.quorum]]
        try:
            for _, node in clients:
                node.attest_result(att)
            node = clients[0][1]
            with pytest.raises(GatewayError, match="over the consortium's limit|model size limit"):
                node.publish_model(rid, big + b"\x00")
            t0 = time.monotonic()
            res = node.publish_model(rid, big)
            publish_s = time.monotonic() - t0
            assert res.validation_code_name == "VALID"
        finally:
            for g, _ in clients:
                g.close()
        t0 = time.monotonic()
        got = op.get_model(rid)
        print(f"\n{limit} byte model: publish {publish_s:.2f} s, fetch {time.monotonic() - t0:.2f} s")
        assert got.model == big and got.size == limit
    finally:
        gw.close()
