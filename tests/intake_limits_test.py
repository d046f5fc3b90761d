"""Intake limits (issue 12): shares sized by the round and refused before buffering, a bounded number of
calls in flight per identity, honest hospitals served during another identity's flood, and permanent
refusals that clients do not retry.

The memory and flood tests run the node's intake in a separate process (this file's __main__, over
the fake ledger) so its RSS is the node's alone: read from /proc/PID/status (VmHWM = peak).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from fedchain.canonical import sha256_hex
from fedchain.identity import Wallet
from fedchain.mpc_client import IntakeError, channel_for, submit_share
from fedchain.mpc_protocol import (
    CHUNK_BYTES,
    RETRY_HINT_KEY,
    SUBMIT_METHOD,
    WIRE_VERSION,
    ShareSubmission,
)
from fedchain.records import MAX_ROUND_ID
from mpc_node_support import ORG, FakeLedger, IntakeNode, endpoint, make_shares, make_world

SMALL_DIM = 1000  # a round whose shares are ~10 kB
FLOOD_BYTES = 60 * 1024 * 1024  # what the flooding hospital sends per call
FLOOD_CALLS = 40
RSS_BOUND_MIB = 300
HONEST_ROUNDS = range(2, 8)  # dim-64 rounds for the honest hospitals' single-shot calls
HOLDERS = 20  # stalled calls the flooding hospital tries to keep open (the node has 16 worker threads)
FLOODERS = 12  # threads of the flooding hospital sending calls back to back


# ----------------------------------------------------------------------------- node process
def serve_main(spec_path: str) -> None:
    """Child process: one node's intake over a fake ledger; prints its port, runs until stdin closes."""
    from fedchain.identity import Consortium
    from fedchain_mpc.intake import IntakeSettings, ShareIntake, serve
    from fedchain_mpc.store import ShareStore

    # mpyc's import points the root logger at stdout, which the parent stops reading after the port
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, force=True)
    spec = json.loads(Path(spec_path).read_text())
    ledger = FakeLedger({"mpc_nodes": [], "threshold": 1, "quorum": 2}, spec["participants"])
    for rid, dim in spec["rounds"].items():
        ledger.open_round(int(rid), dim)
    intake = ShareIntake(IntakeSettings(node_id="mpc0", node_index=0, m=3, t=1), ShareStore(spec["data"]), ledger,
                         Consortium.load(spec["crypto"]).msp_manager(), Wallet(spec["wallet"]).get("mpc0"))
    server, port = serve(intake, "127.0.0.1:0", Path(spec["cert"]).read_bytes(), Path(spec["key"]).read_bytes())
    print(port, flush=True)
    sys.stdin.read()
    server.stop(grace=None).wait()


def memory_mib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


class NodeProcess:
    def __init__(self, world, root: Path) -> None:
        Wallet(root / "wallet").put("mpc0", world.nodes[0])
        cert, key = world.consortium.issue_tls(ORG, "mpc0")
        rounds = {1: SMALL_DIM, **{r: 64 for r in HONEST_ROUNDS}}
        spec = {"crypto": str(root / "world" / "crypto"), "wallet": str(root / "wallet"), "cert": str(cert),
                "key": str(key), "data": str(root / "data"), "rounds": rounds,
                "participants": world.ledger.participants}
        (root / "spec.json").write_text(json.dumps(spec))
        self.proc = subprocess.Popen([sys.executable, __file__, str(root / "spec.json")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError(f"intake process did not start: {line!r}")
        self.endpoint = endpoint(world.consortium, 0, int(line))

    def memory(self) -> dict[str, int]:
        return memory_mib(self.proc.pid)

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("limits")


@pytest.fixture(scope="module")
def world(root):
    return make_world(root / "world")


@pytest.fixture(scope="module")
def node_proc(world, root):
    node = NodeProcess(world, root)
    yield node
    node.stop()


# ------------------------------------------------------------------------------- attackers
def header(round_id: int, size: int, sha256: str = "0" * 64) -> bytes:
    return ShareSubmission(version=WIRE_VERSION, round_id=round_id, node_index=0, sha256=sha256,
                           size=size).SerializeToString()


def lying_stream(round_id: int, declared: int, sent: int) -> Iterator[bytes]:
    """A header declaring `declared` bytes, then `sent` bytes in full-size pieces."""
    yield header(round_id, declared)
    piece = ShareSubmission(share=b"\0" * CHUNK_BYTES).SerializeToString()
    for _ in range(sent // CHUNK_BYTES):
        yield piece


def outcome(call) -> str:
    try:
        call()
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


# ------------------------------------------------------------------------------------ tests
def test_oversize_flood_is_refused_before_buffering(world, node_proc):
    """40 concurrent 60 MiB calls for a dim-1000 round, three ways, from one registered hospital: the
    node's peak RSS stays under 300 MiB (it reached 1.7 GiB when it buffered them)."""
    idle = node_proc.memory()
    raw_unary = ShareSubmission(version=WIRE_VERSION, round_id=1, node_index=0, sha256="0" * 64,
                                share=b"\0" * FLOOD_BYTES).SerializeToString()
    hosp = world.hospitals["hosp0"]

    def unary(_: int) -> str:  # one huge message (an old client or anyone): gRPC's piece-sized cap
        with channel_for(node_proc.endpoint, hosp) as ch:
            return outcome(lambda: ch.unary_unary(SUBMIT_METHOD)(raw_unary, timeout=60))

    def declared(_: int) -> str:  # an honest header that is too big for the round: refused from the header
        with channel_for(node_proc.endpoint, hosp) as ch:
            return outcome(lambda: ch.stream_unary(SUBMIT_METHOD)(lying_stream(1, FLOOD_BYTES, FLOOD_BYTES),
                                                                  timeout=60))

    def liar(_: int) -> str:  # a header that fits the round, then 60 MiB: refused one piece past the header
        with channel_for(node_proc.endpoint, hosp) as ch:
            return outcome(lambda: ch.stream_unary(SUBMIT_METHOD)(lying_stream(1, 9000, FLOOD_BYTES), timeout=60))

    results = {}
    with ThreadPoolExecutor(FLOOD_CALLS) as pool:
        for attack in (unary, declared, liar):
            results[attack.__name__] = Counter(pool.map(attack, range(FLOOD_CALLS)))
    after = node_proc.memory()
    print(f"node memory MiB: idle {idle}, after the floods {after}")
    assert after["VmHWM"] < RSS_BOUND_MIB, after
    assert after["VmRSS"] - idle["VmRSS"] < 100, (idle, after)  # nothing big kept afterwards
    assert results["unary"] == {"RESOURCE_EXHAUSTED": FLOOD_CALLS}
    # the rest: refused for their size, or at once because 2 of this identity's calls were in flight
    assert set(results["declared"]) <= {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"} and results["declared"]["INVALID_ARGUMENT"]
    assert set(results["liar"]) <= {"INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"} and results["liar"]["INVALID_ARGUMENT"]


def test_honest_hospitals_are_served_during_a_flood(world, node_proc):
    """hosp0 tries to hold 20 calls open with stalled streams (more than the node's worker threads) and
    floods more calls besides; hosp1 and hosp2 send their shares once each (no retries): every one is
    stored. Only 2 of hosp0's stalled calls get a slot, the rest are refused at once."""
    hosp0 = world.hospitals["hosp0"]
    release = threading.Event()
    stop_flood = threading.Event()

    def stalled() -> Iterator[bytes]:
        yield header(2, 5000)
        release.wait(60)

    def hold(_: int) -> str:
        with channel_for(node_proc.endpoint, hosp0) as ch:
            return outcome(lambda: ch.stream_unary(SUBMIT_METHOD)(stalled(), timeout=90))

    def flood(_: int) -> Counter:
        seen: Counter = Counter()
        with channel_for(node_proc.endpoint, hosp0) as ch:
            rpc = ch.stream_unary(SUBMIT_METHOD)
            while not stop_flood.is_set():
                seen[outcome(lambda: rpc(lying_stream(1, FLOOD_BYTES, 0), timeout=30))] += 1
        return seen

    honest: list[str] = []
    with ThreadPoolExecutor(HOLDERS + FLOODERS) as pool:
        held = [pool.submit(hold, i) for i in range(HOLDERS)]
        floods = [pool.submit(flood, i) for i in range(FLOODERS)]
        try:
            for rid in HONEST_ROUNDS:
                for name in ("hosp1", "hosp2"):
                    share = make_shares(np.full(64, 0.01 * rid), rid, name)[0]
                    receipt = submit_share(node_proc.endpoint, world.hospitals[name], rid, share, hospital=name,
                                           retries=0, timeout_s=30)
                    honest.append(receipt.sha256 == sha256_hex(share) and name)
        finally:
            stop_flood.set()
            release.set()
        flooded = sum((f.result() for f in floods), Counter())
        held_results = Counter(h.result() for h in held)
    assert honest == ["hosp1", "hosp2"] * len(HONEST_ROUNDS)
    assert flooded["RESOURCE_EXHAUSTED"] > 0 and set(flooded) <= {"RESOURCE_EXHAUSTED", "INVALID_ARGUMENT"}
    # the two that got a slot ended short of their declared size; the others were refused as busy
    assert held_results == {"INVALID_ARGUMENT": 2, "RESOURCE_EXHAUSTED": HOLDERS - 2}


# ------------------------------------------------------------------- in-process refusal tests
@pytest.fixture
def node(world, tmp_path):
    world.ledger.rounds.clear()
    world.ledger.down = False
    world.ledger.open_round(1, 64)
    n = IntakeNode(world, 0, tmp_path / "node0")
    yield n
    n.stop()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The client's back-off waits: one per retry."""
    import fedchain.mpc_client as mc

    waits: list[float] = []
    monkeypatch.setattr(mc, "backoff_sleep", waits.append)
    return waits


def test_round_id_outside_the_chaincode_range_is_invalid_and_not_retried(world, node, sleeps):
    share = make_shares(np.zeros(64), 1, "hosp0")[0]
    calls = len(world.ledger.calls)
    for bad in (2**64 - 1, MAX_ROUND_ID + 1, 0):
        with pytest.raises(IntakeError) as exc:
            submit_share(node.endpoint, world.hospitals["hosp0"], bad, share, retries=4)
        assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and "outside the ledger's range" in str(exc.value)
    assert sleeps == []
    assert "GetRound" not in world.ledger.calls[calls:]  # refused before asking the ledger


def test_missing_round_is_not_found_and_not_retried(world, node, sleeps):
    with pytest.raises(IntakeError) as exc:
        submit_share(node.endpoint, world.hospitals["hosp0"], 99, make_shares(np.zeros(64), 99, "hosp0")[0],
                     retries=4)
    assert exc.value.code == grpc.StatusCode.NOT_FOUND and sleeps == []


def test_a_ledger_refusal_is_permanent_an_outage_is_retried(world, node, sleeps, monkeypatch):
    from fedchain_mpc.ledger_adapter import ledger_error

    def refuse(round_id: int, fresh: bool = False):
        raise ledger_error("GetRound", Exception("evaluate failed: ABORTED: chaincode response 400, round_id must "
                                                 "be in [1, 1000000000000], got 5"))

    share = make_shares(np.zeros(64), 1, "hosp0")[0]
    with monkeypatch.context() as patch:
        patch.setattr(world.ledger, "get_round", refuse)
        with pytest.raises(IntakeError) as exc:
            submit_share(node.endpoint, world.hospitals["hosp0"], 1, share, retries=4)
    assert exc.value.code == grpc.StatusCode.INVALID_ARGUMENT and "the ledger refused" in str(exc.value)
    assert sleeps == []

    world.ledger.down = True  # a real outage: UNAVAILABLE, retried
    before = world.ledger.calls.count("ListParticipants")
    with pytest.raises(IntakeError) as exc:
        submit_share(node.endpoint, world.hospitals["hosp0"], 1, share, retries=3)
    assert exc.value.code == grpc.StatusCode.UNAVAILABLE
    assert len(sleeps) == 3 and world.ledger.calls.count("ListParticipants") - before == 4


def test_busy_identity_is_refused_at_once_and_retried(world, node, sleeps):
    """Two stalled streams hold hosp0's slots: a third call is RESOURCE_EXHAUSTED naming the limit, marked
    retryable; another hospital is not affected."""
    release = threading.Event()

    def stalled() -> Iterator[bytes]:
        yield header(1, 5000)
        release.wait(30)

    share0 = make_shares(np.zeros(64), 1, "hosp0")[0]
    with ThreadPoolExecutor(2) as pool, channel_for(node.endpoint, world.hospitals["hosp0"]) as ch:
        held = [pool.submit(outcome, lambda: ch.stream_unary(SUBMIT_METHOD)(stalled(), timeout=60))
                for _ in range(2)]
        while node.intake.limiter.inflight() < 2:
            release.wait(0.01)
        with pytest.raises(grpc.RpcError) as raw:
            ch.stream_unary(SUBMIT_METHOD)(iter([header(1, 5000)]), timeout=10)
        assert raw.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "limit 2 per identity" in raw.value.details()
        assert (RETRY_HINT_KEY, "1") in tuple(raw.value.trailing_metadata())
        with pytest.raises(IntakeError) as exc:
            submit_share(node.endpoint, world.hospitals["hosp0"], 1, share0, retries=2)
        assert exc.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED and len(sleeps) == 2
        other = make_shares(np.zeros(64), 1, "hosp1")[0]
        assert submit_share(node.endpoint, world.hospitals["hosp1"], 1, other, retries=0).hospital == "hosp1"
        release.set()
        assert [h.result() for h in held] == ["INVALID_ARGUMENT", "INVALID_ARGUMENT"]
    assert submit_share(node.endpoint, world.hospitals["hosp0"], 1, share0, retries=0).hospital == "hosp0"


def test_a_stalled_stream_is_cut_and_frees_its_slot(world, tmp_path):
    """A sender that stalls after its header loses the call when its connection ages out."""
    from fedchain_mpc.intake import IntakeSettings, ShareIntake, serve
    from fedchain_mpc.store import ShareStore

    world.ledger.open_round(1, 64)
    settings = IntakeSettings(node_id="mpc0", node_index=0, m=3, t=1, max_connection_s=0.5,
                              max_connection_grace_s=0.5)
    intake = ShareIntake(settings, ShareStore(tmp_path / "n"), world.ledger,
                         world.consortium.msp_manager(), world.nodes[0])
    cert, key = world.consortium.issue_tls(ORG, "mpc0")
    server, port = serve(intake, "127.0.0.1:0", cert.read_bytes(), key.read_bytes())
    release = threading.Event()

    def stalled() -> Iterator[bytes]:
        yield header(1, 5000)
        release.wait(60)

    try:
        with channel_for(endpoint(world.consortium, 0, port), world.hospitals["hosp0"]) as ch:
            with pytest.raises(grpc.RpcError) as exc:
                ch.stream_unary(SUBMIT_METHOD)(stalled(), timeout=60)
        for _ in range(1000):  # the handler leaves its slot just after the client hears of the cut
            if intake.limiter.inflight() == 0:
                break
            release.wait(0.01)
    finally:
        release.set()
        server.stop(grace=None).wait()
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE and "max connection age" in exc.value.details()
    assert intake.limiter.inflight() == 0


def test_stream_must_match_its_header(world, node):
    share = make_shares(np.zeros(64), 1, "hosp0")[0]
    hosp = world.hospitals["hosp0"]

    def stream(*messages: bytes) -> str:
        with channel_for(node.endpoint, hosp) as ch:
            try:
                ch.stream_unary(SUBMIT_METHOD)(iter(messages), timeout=10)
                return "OK"
            except grpc.RpcError as exc:
                return f"{exc.code().name}: {exc.details()}"

    piece = ShareSubmission(share=share).SerializeToString()
    assert stream(header(1, len(share) + 1, sha256_hex(share)), piece).endswith(
        f"ended after {len(share)} of the {len(share) + 1} share bytes its header declared")
    assert stream(header(1, len(share) - 1, sha256_hex(share)), piece).endswith(
        f"carries more than the {len(share) - 1} share bytes its header declared")
    assert stream().startswith("INVALID_ARGUMENT: empty SubmitShare stream")
    old = ShareSubmission(version=1, round_id=1, node_index=0, share=share, sha256=sha256_hex(share))
    assert "wire version 1 is not supported" in stream(old.SerializeToString())
    assert node.store.shares(1) == []
    assert stream(header(1, len(share), sha256_hex(share)), piece) == "OK"


def test_round_limits_and_ledger_refusal_codes():
    from fedchain_cc.fl import validate
    from fedchain_mpc.intake import HEADER_SLACK, ledger_refusal_code, round_share_limit
    from fedchain_mpc.ledger_adapter import ledger_error

    assert MAX_ROUND_ID == validate.MAX_ROUND_ID  # the wire's range is the chaincode's
    assert round_share_limit(1000, 64 << 20) == 10_000 + HEADER_SLACK
    assert round_share_limit(10**9, 64 << 20) == 64 << 20
    real_share = make_shares(np.zeros(SMALL_DIM), 123456789012, "a" * 64)[0]
    assert len(real_share) <= round_share_limit(SMALL_DIM, 64 << 20)
    codes = {s: ledger_refusal_code(ledger_error("GetRound", Exception(f"evaluate failed: chaincode response {s}, no")))
             for s in (400, 403, 404, 409, 418, 500)}
    assert codes == {400: grpc.StatusCode.INVALID_ARGUMENT, 403: grpc.StatusCode.PERMISSION_DENIED,
                     404: grpc.StatusCode.NOT_FOUND, 409: grpc.StatusCode.FAILED_PRECONDITION,
                     418: grpc.StatusCode.FAILED_PRECONDITION, 500: None}
    assert ledger_refusal_code(ledger_error("GetRound", Exception("evaluate failed: gateway unavailable (Socket "
                                                                  "closed)"))) is None


if __name__ == "__main__":
    serve_main(sys.argv[1])
