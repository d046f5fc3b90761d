"""Ledger memory: clients refuse a ledger that went backwards or forked (watermark), MPC nodes refuse a
round that is not the one they processed, and close OPEN rounds at their deadline."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from fedchain.gateway.watermark import BlockMark, ChainHead, LedgerRollback, LedgerWatermark, compare
from fedchain.records import Round
from fedchain_mpc.guard import LedgerGuard, LedgerMismatch, check_same_round
from fedchain_mpc.store import NodeState


def h(i: int, branch: str = "a") -> str:
    return hashlib.sha256(f"{branch}{i}".encode()).hexdigest()


class FakeChain:
    """Blocks 0..height-1 with hashes h(i, branch_of(i)); `fork_at` switches the branch from that block on."""

    def __init__(self, height: int, fork_at: int | None = None) -> None:
        self.height = height
        self.fork_at = fork_at
        self.fetched: list[int] = []

    def _hash(self, i: int) -> str:
        return h(i, "b" if self.fork_at is not None and i >= self.fork_at else "a")

    def chain_head(self) -> ChainHead:
        n = self.height - 1
        return ChainHead(n, self._hash(n), self._hash(n - 1) if n > 0 else "")

    def block_hash(self, number: int) -> str:
        self.fetched.append(number)
        return self._hash(number)


def test_first_check_remembers_the_head():
    assert compare(None, FakeChain(5)).number == 4


def test_growth_moves_the_mark_and_checks_the_remembered_block():
    chain = FakeChain(9)
    new = compare(BlockMark(4, h(4)), chain)
    assert (new.number, new.block_hash) == (8, h(8)) and chain.fetched == [4]


def test_growth_by_one_block_is_checked_by_its_link_without_a_fetch():
    chain = FakeChain(6)
    assert compare(BlockMark(4, h(4)), chain).number == 5 and chain.fetched == []
    with pytest.raises(LedgerRollback, match="forked: its block 4"):
        compare(BlockMark(4, h(4)), FakeChain(6, fork_at=4))


def test_same_head_is_no_change_and_costs_no_block_fetch():
    chain = FakeChain(5)
    mark = BlockMark(4, h(4), 1.0)
    assert compare(mark, chain) is mark and chain.fetched == []


def test_lower_head_is_a_rollback():
    with pytest.raises(LedgerRollback, match="went backwards: its newest block is 2, but this client saw block 4"):
        compare(BlockMark(4, h(4)), FakeChain(3))


@pytest.mark.parametrize("height, fork_at", [(5, 4), (9, 3), (9, 4)])
def test_other_hash_at_the_remembered_block_is_a_fork(height, fork_at):
    with pytest.raises(LedgerRollback, match="forked: its block 4 has hash"):
        compare(BlockMark(4, h(4)), FakeChain(height, fork_at=fork_at))


def test_a_fork_after_the_remembered_block_is_just_the_chain_we_follow():
    assert compare(BlockMark(4, h(4)), FakeChain(9, fork_at=5)).number == 8


def test_watermark_file_persists_and_refuses_after_a_restart(tmp_path):
    path = tmp_path / "w.json"
    LedgerWatermark(path).check(FakeChain(7))
    assert json.loads(path.read_text())["number"] == 6
    again = LedgerWatermark(path)  # a restarted client remembers
    with pytest.raises(LedgerRollback, match="went backwards"):
        again.check(FakeChain(5))
    assert json.loads(path.read_text())["number"] == 6  # a refused ledger never lowers the mark
    assert "remove it only if" in again.explain(LedgerRollback("x"))


def test_unreadable_watermark_is_refused_not_reset(tmp_path):
    path = tmp_path / "w.json"
    path.write_text("{not json")
    with pytest.raises(LedgerRollback, match="unreadable"):
        LedgerWatermark(path)


def test_guard_remembers_the_refusal_for_the_intake_and_clears_it(tmp_path, caplog):
    guard = LedgerGuard(LedgerWatermark(tmp_path / "w.json"), FakeChain(7))
    guard.check()
    guard.source = FakeChain(4)
    with caplog.at_level(logging.ERROR), pytest.raises(LedgerMismatch):
        guard.check()
    assert guard.failure and "went backwards" in guard.failure
    assert any("REFUSING THE LEDGER" in r.message for r in caplog.records)
    guard.source = FakeChain(8)  # the ledger the node knew is back (and grew)
    guard.check()
    assert guard.failure is None


def test_same_round_check():
    check_same_round(3, None, None)  # nothing recorded: nothing to compare
    check_same_round(3, "tx-a", _round_created_by(3, "tx-a"))
    with pytest.raises(LedgerMismatch, match="not on the ledger any more"):
        check_same_round(3, "tx-a", None)
    with pytest.raises(LedgerMismatch, match="rolled back or replaced"):
        check_same_round(3, "tx-a", _round_created_by(3, "tx-b"))


def _round_created_by(round_id: int, tx_id: str) -> Round:
    """Round `round_id` as GetRound returns it, created by transaction `tx_id`."""
    return Round.from_json({"round_id": round_id, "state": "OPEN", "base_model_hash": "0" * 64,
                            "base_round_id": round_id - 1, "model_spec": {"param_count": 1}, "deadline": 2e9,
                            "min_updates": 1, "created_tx_id": tx_id})


def test_node_state_records_the_creating_transaction_once(tmp_path):
    st = NodeState(tmp_path / "s.sqlite")
    st.remember_creation(1, "tx-a")  # no row yet: nothing to attach it to
    st.update(1, "published")
    st.remember_creation(1, "tx-a")
    st.remember_creation(1, "tx-b")  # never overwritten
    assert st.get(1)["created_tx_id"] == "tx-a"
    st.close()


def test_node_state_from_before_the_column_is_migrated(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "s.sqlite")
    db.execute("CREATE TABLE rounds (round_id INTEGER PRIMARY KEY, status TEXT NOT NULL, attempts INTEGER NOT NULL "
               "DEFAULT 0, result TEXT, model_hash TEXT, last_error TEXT, updated_at REAL NOT NULL)")
    db.execute("INSERT INTO rounds VALUES (1, 'published', 0, NULL, NULL, NULL, 0)")
    db.commit()
    db.close()
    st = NodeState(tmp_path / "s.sqlite")
    assert st.get(1)["status"] == "published" and st.get(1)["created_tx_id"] is None
    st.close()
