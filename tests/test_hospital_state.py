"""Hospital state folder: shares persisted privately and checked on reload (fast, no network)."""

from __future__ import annotations

import json
import stat

import pytest
from fedchain.hospital import HospitalState, RoundState, StateError
from fedchain.hospital.state import SUBMITTED


def _state(root, blobs=(b"share-zero", b"share-one", b"share-two")) -> tuple[HospitalState, RoundState]:
    hs = HospitalState(root)
    hashes = hs.save_shares(7, list(blobs))
    st = RoundState(round_id=7, participant_id="h1", base_model_hash="ab" * 32, share_hashes=hashes,
                    n_samples=100, dim=10)
    hs.save(st)
    return hs, st


def test_roundtrip_and_private_files(tmp_path):
    hs, st = _state(tmp_path / "s")
    again = HospitalState(tmp_path / "s").load(7)
    assert again == st
    assert hs.load_shares(again) == [b"share-zero", b"share-one", b"share-two"]
    for p in hs.round_dir(7).iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o700
    assert hs.rounds() == [7]
    assert hs.load(8) is None


def test_status_update_persists(tmp_path):
    hs, st = _state(tmp_path)
    st.status, st.tx_id = SUBMITTED, "tx1"
    hs.save(st)
    assert hs.load(7).status == SUBMITTED and hs.load(7).tx_id == "tx1"


def test_tampered_share_is_refused(tmp_path):
    hs, st = _state(tmp_path)
    (hs.round_dir(7) / "share_1.bin").write_bytes(b"other")
    with pytest.raises(StateError, match="share_1.bin does not match"):
        hs.load_shares(st)


def test_missing_share_and_corrupt_state_are_clear_errors(tmp_path):
    hs, st = _state(tmp_path)
    (hs.round_dir(7) / "share_2.bin").unlink()
    with pytest.raises(StateError, match="missing"):
        hs.load_shares(st)
    (hs.round_dir(7) / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="corrupt"):
        hs.load(7)
    (hs.round_dir(7) / "state.json").write_text(json.dumps({**st.__dict__, "status": "weird"}))
    with pytest.raises(StateError, match="inconsistent"):
        hs.load(7)
