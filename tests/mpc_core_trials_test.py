"""Agreement with the plaintext pipeline over 100 random trials (crafted field elements included),
three MPyC parties as processes (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_mpyc_parties

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_three_party_accept_bits_equal_plaintext_over_100_trials(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    run_mpyc_parties(HERE / "mpc_core_party.py", {"FC_TRIALS": "100", "FC_OUT": str(out)}, timeout=500)
    s = json.loads(out.read_text())
    assert s["mismatches"] == 0, s
    assert s["compared"] >= 85 and s["rejected"] >= 30 and s["crafted"] >= 10, s
    assert s["max_abs_error"] <= 1e-5, s
