"""Deadlines no single client can move, on the embedded network with real MPC nodes.

Before issue 11 a hospital could back-date SubmitUpdate (proposal timestamps are accepted within
the peers' time window) and have it committed after the deadline. Now the MPC nodes close an OPEN
round as soon as its deadline passes on their own clocks, so such an update finds the round closed.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DIM = 32


def _hashes(tag: str) -> list[str]:
    return [hashlib.sha256(f"{tag}-{j}".encode()).hexdigest() for j in range(3)]


def test_nodes_close_at_the_deadline_and_a_back_dated_update_is_refused(tmp_path, monkeypatch):
    from conftest import running_network
    from fedchain.fl_client import FLClient, participant_entry
    from fedchain.gateway import client as gateway_client
    from fedchain.identity import Consortium, Wallet
    from fedchain.netconfig import load_network
    from google.protobuf.timestamp_pb2 import Timestamp
    from safetensors.numpy import save

    with running_network(tmp_path / "net", with_mpc=True) as net:
        cfg = load_network(net.layout.root)
        cons, wallet = Consortium.load(net.layout.crypto), Wallet(net.layout.wallet)
        with cfg.connect("operator") as gw:
            op = FLClient(cfg.contract(gw))
            op.publish_genesis_model({"arch": "flat", "param_count": DIM}, save({"w": np.zeros(DIM, np.float32)}))
            for name in ("hospital1", "hospital2"):
                wallet.put(name, cons.enroll(cons.orgs[0].msp_id, name, "hospital"))
                op.register_participant(participant_entry(name, wallet.get(name), "hospital", sample_cap=100))
            deadline = round(time.time() + 6, 3)
            op.create_round({"round_id": 1, "base_model_hash": op.head().model_hash,
                             "model_spec": {"arch": "flat", "param_count": DIM}, "policy": {"cosine_enabled": False},
                             "deadline": deadline, "min_updates": 1})
            with cfg.connect("hospital1") as hgw:  # on time
                FLClient(cfg.contract(hgw)).submit_update({"round_id": 1, "share_hashes": _hashes("h1"),
                                                           "n_samples": 10, "dim": DIM})
            while time.time() < deadline + 8 and op.get_round(1).state == "OPEN":
                time.sleep(0.25)
            closed = op.get_round(1)
            assert closed.state != "OPEN", "no MPC node closed the round at its deadline"
            close = next(e for e in op.get_history("round", "1") if e.function == "CloseRound")
            assert close.creator is not None and close.creator["participant"].startswith("mpc")
            assert close.timestamp is not None and deadline <= close.timestamp < deadline + 10
            assert closed.submitted == ("hospital1",)

            # hospital2 back-dates its proposal to before the deadline (within the skew window)
            real_build = gateway_client.build_proposal

            def back_dated(*args, **kwargs):
                ts = Timestamp()
                ts.FromNanoseconds(int((deadline - 30) * 1e9))
                return real_build(*args, timestamp=ts, **kwargs)

            monkeypatch.setattr(gateway_client, "build_proposal", back_dated)
            with cfg.connect("hospital2") as hgw, pytest.raises(Exception, match="is (CLOSED|FAILED)"):
                FLClient(cfg.contract(hgw)).submit_update({"round_id": 1, "share_hashes": _hashes("h2"),
                                                           "n_samples": 10, "dim": DIM})
            monkeypatch.undo()
            assert [u.hospital for u in op.get_updates(1)] == ["hospital1"]
