"""The round counter (fedchain_mpc.rounds) measures causal depth, not messages: three parties run
programs whose number of sequential exchanges is known."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_mpyc_parties

HERE = Path(__file__).resolve().parent


def test_round_counter_counts_sequential_exchanges(tmp_path: Path) -> None:
    run_mpyc_parties(HERE / "mpc_core_rounds_party.py", {"FC_OUT": str(tmp_path)}, timeout=60)
    parts = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(3)]
    for got in parts:
        assert got["sequential"] == 5  # 5 openings one after the other
        assert got["concurrent"] == 1  # 5 openings at once: one round, though 5 times the messages
        assert got["mul3_open"] == 4  # 3 resharings + 1 opening
        assert got["messages_sent"] >= 5 + 5 + 4  # more messages than rounds: messages are not rounds
