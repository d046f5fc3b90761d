"""Crash safety: kill -9 during a burst, restart, nothing reported committed is lost; tampering is caught."""

from __future__ import annotations

import struct
import threading
import time

import grpc
import pytest
from devnet_support import gateway_for, make_net
from fabric_protos.common import common_pb2
from fabric_protos.peer import transaction_pb2
from fedchain.gateway import GatewayError
from fedchain.ledger import verify_chain
from fedchain_devnet.launch import DevnetProcess, DevnetStartError

pytestmark = pytest.mark.slow
CH = "fedchain"


def _all_blocks(contract_qscc, height: int) -> list[common_pb2.Block]:
    return [common_pb2.Block.FromString(contract_qscc.evaluate("GetBlockByNumber", CH, str(n))) for n in range(height)]


def _height(contract_qscc) -> int:
    from fabric_protos.common import ledger_pb2

    return ledger_pb2.BlockchainInfo.FromString(contract_qscc.evaluate("GetChainInfo", CH)).height


def _record_offsets(data: bytes) -> list[tuple[int, int]]:
    out, pos = [], 0
    while pos + 4 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        out.append((pos + 4, n))
        pos += 4 + n
    return out


@pytest.fixture()
def net(tmp_path):
    n = make_net(tmp_path, batch_timeout_ms=20, max_message_count=10)
    yield n
    n.cc_proc.kill()
    n.cc_proc.wait()


def test_kill9_during_burst_loses_nothing_reported_committed_and_tampering_is_named(net):
    proc = DevnetProcess(net.config_path)
    endpoint = proc.start()
    user = net.consortium.enroll("Org2MSP", "burst", "hospital")
    committed: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        with gateway_for(net, endpoint, user) as gw:
            contract = gw.network(CH).contract("cc")
            i = 0
            while not stop.is_set():
                key, value = f"crash-{w}-{i}", f"crash-value-{w}-{i:05d}"
                try:
                    res = contract.submit("put", key, value)
                except (GatewayError, grpc.RpcError):
                    return
                assert res.validation_code_name == "VALID"
                with lock:
                    committed.append((res.tx_id, key, value))
                i += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(committed) < 60 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL mid-burst
    stop.set()
    for t in threads:
        t.join(30)
    assert len(committed) >= 60

    # restart: every reported commit is there, the chain verifies
    endpoint = proc.start()
    try:
        with gateway_for(net, endpoint, user) as gw:
            qscc = gw.network(CH).contract("qscc")
            contract = gw.network(CH).contract("cc")
            for tx_id, key, value in committed:
                ptx = transaction_pb2.ProcessedTransaction.FromString(qscc.evaluate("GetTransactionByID", CH, tx_id))
                assert ptx.validationCode == transaction_pb2.TxValidationCode.Value("VALID")
                assert contract.evaluate("get", key) == value.encode()
            height = _height(qscc)
            assert verify_chain(_all_blocks(qscc, height)) == height
            assert contract.submit("put", "after-restart", "ok").validation_code_name == "VALID"
    finally:
        proc.stop()

    # state lost entirely: rebuilt from the blocks at start
    ledger_dir = net.root / "ledger"
    for f in ledger_dir.glob("state.sqlite*"):
        f.unlink()
    endpoint = proc.start()
    try:
        with gateway_for(net, endpoint, user) as gw:
            contract = gw.network(CH).contract("cc")
            tx_id, key, value = committed[len(committed) // 2]
            assert contract.evaluate("get", key) == value.encode()
            assert contract.evaluate("get", "after-restart") == b"ok"
    finally:
        proc.stop()

    # a block edited on disk: start refuses, naming the block
    blocks_file = ledger_dir / "blocks.bin"
    data = bytearray(blocks_file.read_bytes())
    _, key, value = committed[len(committed) // 3]
    pos = data.find(value.encode())
    assert pos > 0
    data[pos:pos + 5] = b"CRASH"  # same length: the file still parses, only the content lies
    edited = next(i for i, (off, n) in enumerate(_record_offsets(bytes(data))) if off <= pos < off + n)
    blocks_file.write_bytes(bytes(data))
    with pytest.raises(DevnetStartError) as err:
        proc.start(timeout=30)
    assert f"corrupt at block {edited}: data_hash does not match" in str(err.value)
    import subprocess
    import sys

    check = subprocess.run([sys.executable, "-m", "fedchain_devnet", "--config", str(net.config_path), "--verify"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2 and f"corrupt at block {edited}" in check.stderr


def test_peers_reconnect_when_the_chaincode_restarts(net):
    import subprocess
    import sys

    from devnet_support import HERE

    proc = DevnetProcess(net.config_path)
    endpoint = proc.start()
    user = net.consortium.enroll("Org1MSP", "restart", "hospital")
    try:
        with gateway_for(net, endpoint, user) as gw:
            contract = gw.network(CH).contract("cc")
            assert contract.submit("put", "before", "1").validation_code_name == "VALID"
            net.cc_proc.kill()
            net.cc_proc.wait()
            with pytest.raises(GatewayError) as err:
                contract.submit("put", "during", "1")
            assert "chaincode" in str(err.value)
            net.cc_proc = subprocess.Popen([sys.executable, str(HERE), net.cc_address, "cc:1"], stdout=subprocess.PIPE)
            assert net.cc_proc.stdout.readline().startswith(b"READY")
            deadline = time.monotonic() + 15
            while True:
                try:
                    assert contract.submit("put", "after", "1").validation_code_name == "VALID"
                    break
                except GatewayError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            second = DevnetProcess(net.config_path, log_path=net.root / "second.log")
            with pytest.raises(DevnetStartError, match="in use by another devnet"):
                second.start(timeout=30)  # same ledger, same time: refused, first one unharmed
            assert contract.evaluate("get", "after") == b"1"
    finally:
        assert proc.stop() == 0  # SIGTERM: clean shutdown
