"""Trusted checkpoints: `audit verify --expect-block N:HASH` catches a rewritten or rolled-back ledger."""

from __future__ import annotations

import pytest
from fedchain.audit.chain import ChainAuditor, parse_checkpoint
from fedchain.audit.report import audit_blocks
from fedchain.audit.synthetic import SyntheticChannel
from fedchain.cli.audit_verify import print_verdict
from fedchain.cli.main import build_parser
from fedchain.ledger import block_header_hash


def _chain(n_blocks: int = 5) -> SyntheticChannel:
    ch = SyntheticChannel(("Org1MSP", "Org2MSP"))
    ch.config_block()
    app = ch.member("Org1MSP", "app")
    for i in range(1, n_blocks):
        ch.block([ch.tx(app, "othercc", "put", [str(i)], endorsers=[ch.peer("Org1MSP"), ch.peer("Org2MSP")])])
    return ch


def _hash(block) -> str:
    return block_header_hash(block.header).hex()


def _problems(blocks, checkpoints) -> list[tuple[int, str]]:
    return [(f.block, f.problem) for f in ChainAuditor(checkpoints=checkpoints).feed_all(blocks).findings]


def test_matching_checkpoints_pass_and_the_head_is_reported_for_next_time(capsys):
    ch = _chain()
    report = audit_blocks(ch.blocks, checkpoints={2: _hash(ch.blocks[2]), 4: _hash(ch.blocks[4])})
    assert report["ok"] and report["chain"]["checkpoints"] == {"2": _hash(ch.blocks[2]), "4": _hash(ch.blocks[4])}
    assert report["head"] == {"height": 5, "block": 4, "hash": _hash(ch.blocks[4]),
                              "checkpoint": f"4:{_hash(ch.blocks[4])}"}
    print_verdict(report)
    out = capsys.readouterr().out.splitlines()
    assert out[-2] == f"head: block 4; next time: --expect-block 4:{_hash(ch.blocks[4])}"
    flag = out[-2].split("--expect-block ")[1]
    assert parse_checkpoint(flag) == (4, _hash(ch.blocks[4]))  # copy-pasteable as the flag's value
    assert out[-1] == "audit OK: chain, FL protocol and world state verified"


def test_a_rewritten_history_is_caught_even_when_everything_else_checks_out():
    """A fork from block 2 on, validly signed and chained (a colluding orderer): only the checkpoint tells."""
    ch = _chain()
    trusted = _hash(ch.blocks[3])
    del ch.blocks[2:]
    app = ch.member("Org1MSP", "app")
    for i in (2, 3, 4):
        ch.block([ch.tx(app, "othercc", "put", [f"rewritten {i}"], endorsers=[ch.peer("Org1MSP"), ch.peer("Org2MSP")])])
    assert _problems(ch.blocks, {}) == []
    assert _problems(ch.blocks, {3: trusted}) == [
        (3, f"block 3 has header hash {_hash(ch.blocks[3])}, the trusted checkpoint says {trusted}: the ledger "
            f"forked or was rewritten before block 3")]


def test_a_chain_shorter_than_the_checkpoint_was_rolled_back():
    ch = _chain()
    trusted = _hash(ch.blocks[4])
    assert _problems(ch.blocks[:3], {4: trusted}) == [
        (4, f"the chain has 3 block(s) but the trusted checkpoint is block 4 ({trusted[:16]}…): the ledger is "
            f"behind the trusted checkpoint: rolled back?")]


@pytest.mark.parametrize("value, reason", [
    ("12", "is not N:HASH"), ("x:" + "a" * 64, "is not N:HASH"), ("-1:" + "a" * 64, "is not N:HASH"),
    ("3:abc", "must be 64 hex digits"), ("3:" + "g" * 64, "must be 64 hex digits"),
])
def test_malformed_checkpoints_are_usage_errors(value, reason, capsys):
    with pytest.raises(ValueError, match=reason):
        parse_checkpoint(value)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["audit", "verify", f"--expect-block={value}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --expect-block" in err and reason in err and "Traceback" not in err


def test_checkpoint_and_tolerance_flags_parse():
    h = "AB" * 32
    args = build_parser().parse_args(["audit", "verify", "--expect-block", f"7:{h}", "--expect-block", f" 9 : {h} ",
                                      "--time-tolerance", "5"])
    assert args.checkpoints == [(7, h.lower()), (9, h.lower())] and args.time_tolerance == 5.0
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["audit", "verify", "--time-tolerance", "soon"])
    assert exit_.value.code == 2


def test_invalid_transactions_are_counted_by_function_and_explained(capsys):
    from fedchain.audit.report import invalid_summary
    from fedchain.cli.audit_verify import print_verdict

    invalid = [{"block": 7, "tx_id": "a" * 64, "code": "MVCC_READ_CONFLICT", "function": "AttestResult",
                "creator_msp_id": "Org2MSP"}] * 2 + [
        {"block": 9, "tx_id": "b" * 64, "code": "MVCC_READ_CONFLICT", "function": "CreateRound",
         "creator_msp_id": "Org1MSP"},
        {"block": 9, "tx_id": "c" * 64, "code": "BAD_PAYLOAD", "function": None, "creator_msp_id": "Org1MSP"}]
    report = {"chain": {"height": 10, "transactions": 20, "validation_codes": {"VALID": 16, "MVCC_READ_CONFLICT": 3,
                                                                               "BAD_PAYLOAD": 1},
                        "checkpoints": {}, "notes": [], "findings": [], "invalid": invalid},
              "fl": {"rounds": [], "findings": []}, "head": {"checkpoint": None}, "ok": True}
    lines = invalid_summary(report)
    assert lines[0].startswith("BAD_PAYLOAD 1 (? 1): flagged invalid")
    assert lines[1].startswith("MVCC_READ_CONFLICT 3 (AttestResult 2, CreateRound 1): ")
    assert "nothing was written" in lines[1] and "attesting or publishing the same round" in lines[1]
    print_verdict(report)
    assert "invalid: MVCC_READ_CONFLICT 3" in capsys.readouterr().out
