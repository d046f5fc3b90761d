"""Expected failures of a hospital are one clear line, never a traceback (issue 12): data that does not
fit the round's model is refused before training, and `fedchain hospital run` reports node refusals,
closed rounds and data mismatches as `error: ...` with exit code 1. Fast: no network."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from fedchain.hospital import HospitalClient, RoundRefused
from fedchain.hospital.client import DataMismatch, check_data_fits
from fedchain.models import ModelSpec
from fedchain.mpc_client import IntakeError, TLSRejected
from fedchain.records import Round, Update

SPEC = ModelSpec(n_classes=4, in_channels=1)


def test_labels_outside_the_models_classes_are_refused():
    images = np.zeros((10, 28, 28), dtype=np.uint8)
    check_data_fits(images, np.arange(10) % 4, SPEC, 3)  # fits
    with pytest.raises(DataMismatch) as exc:
        check_data_fits(images, np.arange(10), SPEC, 3)
    assert str(exc.value) == ("round 3: the model has 4 classes (labels 0..3); 6 of this hospital's 10 labels are "
                              "outside that (they run from 0 to 9): --data is not the consortium's task")
    with pytest.raises(DataMismatch, match="outside that"):
        check_data_fits(images, np.array([0, 1, -1, 2, 3, 0, 1, 2, 3, 0]), SPEC, 3)
    with pytest.raises(DataMismatch, match="integer class numbers"):
        check_data_fits(images, np.zeros(10, dtype=np.float32), SPEC, 3)
    with pytest.raises(DataMismatch, match="takes 1-channel images, this hospital's images have 3 channel"):
        check_data_fits(np.zeros((10, 28, 28, 3), dtype=np.uint8), np.arange(10) % 4, SPEC, 3)


class RoundOnlyFL:
    """Answers what prepare asks before training; anything later (the base model) fails the test."""

    def get_round(self, round_id: int) -> Round:
        return Round.from_json({"round_id": round_id, "state": "OPEN", "base_round_id": 0, "base_model_hash": "ab" * 32,
                                "model_spec": {**json_spec(), "param_count": 100}, "hyperparameters": {},
                                "deadline": 2e9, "min_updates": 1})

    def get_updates(self, round_id: int) -> list[Update]:
        return []


def json_spec() -> dict[str, Any]:
    import json

    return json.loads(SPEC.to_json())


def test_prepare_refuses_mismatched_data_before_training(tmp_path, monkeypatch):
    client = HospitalClient(net=None, identity=None, participant_id="h1",
                            images=np.zeros((12, 28, 28), dtype=np.uint8), labels=np.arange(12),
                            state_dir=tmp_path / "state", progress=False)
    client._fl = RoundOnlyFL()
    monkeypatch.setattr(client, "check_ledger", lambda: None)
    with pytest.raises(DataMismatch, match="round 5: the model has 4 classes"):
        client.prepare(5)
    assert client.state.rounds() == []  # nothing trained, nothing persisted


# ----------------------------------------------------------------------------- the CLI
class FakeNet:
    directory = Path("/nonexistent")


@pytest.fixture
def run_cli(tmp_path, monkeypatch):
    """`fedchain hospital run --round 1` with a HospitalClient whose participate raises `failure`."""
    from fedchain.cli import hospital as cli
    from fedchain.data import generate_synthetic

    npz = generate_synthetic(tmp_path / "d.npz", n_train=20, n_val=4, n_test=4, seed=1)
    monkeypatch.setattr("fedchain.netconfig.load_network", lambda directory: FakeNet())
    monkeypatch.setattr(cli, "_signing_identity", lambda net, wallet: (object(), "h1"))

    def run(failure: Exception) -> int:
        class Client:
            def __init__(self, *a: Any, **k: Any) -> None:
                pass

            def check_ledger(self) -> None:
                pass

            def forget_finished_rounds(self) -> list[int]:
                return []

            def participate(self, round_id: int) -> Any:
                raise failure

            def close(self) -> None:
                pass

        monkeypatch.setattr("fedchain.hospital.HospitalClient", Client)
        args = argparse.Namespace(network=str(tmp_path), wallet="h1", data=str(npz), participant_id=None,
                                  state_dir=str(tmp_path / "s"), no_progress=True, round=1, rounds=None)
        return cli._run(args)

    return run


@pytest.mark.parametrize("failure, message", [
    (IntakeError(0, grpc.StatusCode.FAILED_PRECONDITION, "round 1 is CLOSED; shares are accepted only while it is OPEN"),
     "error: MPC node 0: FAILED_PRECONDITION: round 1 is CLOSED; shares are accepted only while it is OPEN"),
    (TLSRejected(1, grpc.StatusCode.UNAVAILABLE, "Socket closed",
                 text="MPC node 1 rejected this client's certificate: not issued by a consortium CA"),
     "error: MPC node 1 rejected this client's certificate: not issued by a consortium CA"),
    (RoundRefused("round 1 is CLOSED: too late to take part"), "error: round 1 is CLOSED: too late to take part"),
    (DataMismatch("round 1: the model has 4 classes (labels 0..3)"), "error: round 1: the model has 4 classes"),
])
def test_cli_reports_expected_failures_in_one_line(run_cli, capsys, failure, message):
    assert run_cli(failure) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err and len(err.strip().splitlines()) == 1
