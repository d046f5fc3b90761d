"""How start-up verification scales with ledger size: chain checks, write-set replay, state DB comparison.

    python -m fedchain_devnet.startbench --blocks 100 1000 5000 [--tx-per-block 10] [--model-every 50]
                                         [--model-kb 4096] [--json out.json]

Writes a ledger of N blocks per size straight through `Ledger.commit` (a pass-through validator:
start-up never re-validates transactions, so nothing it measures is skipped), then opens it in a
fresh process and reports wall and CPU seconds of each start-up phase and the peak RSS. Blocks
hold FL-like transactions: `--tx-per-block` small ones (an update record and a bumped round
record, ~0.7 KB values, a creator certificate and two endorsements each) and, every
`--model-every` blocks, a model publication (the model base64 in the proposal input, stored as
1 MiB chunks plus a record), as the FL chaincode does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fabric_protos.common import common_pb2
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.peer import chaincode_pb2, proposal_pb2, proposal_response_pb2, transaction_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from fedchain_devnet.integrity import ExpectedState, block_effects, check_state
from fedchain_devnet.validator import BlockResult

CHANNEL = "fedchain"
NS = "fedchain"
CHUNK = 1024 * 1024
ENDORSER_TRANSACTION = common_pb2.HeaderType.Value("ENDORSER_TRANSACTION")
VALID = transaction_pb2.TxValidationCode.Value("VALID")
TRANSACTIONS_FILTER = common_pb2.BlockMetadataIndex.Value("TRANSACTIONS_FILTER")


# --- a ledger of FL-like blocks -------------------------------------------------------------------
class _PassThrough:
    """Marks every transaction VALID and applies its writes: the generator's envelopes are well formed."""

    def validate_block(self, number: int, envelopes: list[bytes]) -> BlockResult:
        meta = [b""] * len(common_pb2.BlockMetadataIndex.values())
        meta[TRANSACTIONS_FILTER] = bytes([VALID] * len(envelopes))
        block = common_pb2.Block(data=common_pb2.BlockData(data=envelopes),
                                 metadata=common_pb2.BlockMetadata(metadata=meta))
        writes, txids = block_effects(block)
        return BlockResult(flags=[VALID] * len(envelopes), writes=writes, txids=txids)


@dataclass
class _Identities:
    creator: bytes
    endorsers: list[bytes]


def _envelope(ids: _Identities, n: int, args: list[bytes], writes: list[tuple[str, bytes]]) -> bytes:
    """An endorser transaction laid out as peer.build_transaction does (signatures are random bytes)."""
    nonce = os.urandom(24)
    tx_id = hashlib.sha256(nonce + ids.creator).hexdigest()
    ts = Timestamp(seconds=1_700_000_000 + n, nanos=n % 1_000_000_000)
    chdr = common_pb2.ChannelHeader(type=ENDORSER_TRANSACTION, channel_id=CHANNEL, tx_id=tx_id, timestamp=ts)
    shdr = common_pb2.SignatureHeader(creator=ids.creator, nonce=nonce).SerializeToString()
    kv = kv_rwset_pb2.KVRWSet(reads=[kv_rwset_pb2.KVRead(key=k) for k, _ in writes],
                              writes=[kv_rwset_pb2.KVWrite(key=k, value=v) for k, v in writes])
    results = rwset_pb2.TxReadWriteSet(data_model=rwset_pb2.TxReadWriteSet.KV, ns_rwset=[
        rwset_pb2.NsReadWriteSet(namespace=NS, rwset=kv.SerializeToString())]).SerializeToString()
    action = proposal_pb2.ChaincodeAction(results=results, chaincode_id=chaincode_pb2.ChaincodeID(name=NS),
                                          response=proposal_response_pb2.Response(status=200, payload=b"{}"))
    prp = proposal_response_pb2.ProposalResponsePayload(proposal_hash=os.urandom(32),
                                                        extension=action.SerializeToString()).SerializeToString()
    spec = chaincode_pb2.ChaincodeInvocationSpec(chaincode_spec=chaincode_pb2.ChaincodeSpec(
        chaincode_id=chaincode_pb2.ChaincodeID(name=NS), input=chaincode_pb2.ChaincodeInput(args=args)))
    cap = transaction_pb2.ChaincodeActionPayload(
        chaincode_proposal_payload=proposal_pb2.ChaincodeProposalPayload(input=spec.SerializeToString())
        .SerializeToString(),
        action=transaction_pb2.ChaincodeEndorsedAction(proposal_response_payload=prp, endorsements=[
            proposal_response_pb2.Endorsement(endorser=e, signature=os.urandom(72)) for e in ids.endorsers]))
    tx = transaction_pb2.Transaction(actions=[transaction_pb2.TransactionAction(header=shdr,
                                                                                payload=cap.SerializeToString())])
    payload = common_pb2.Payload(header=common_pb2.Header(channel_header=chdr.SerializeToString(),
                                                          signature_header=shdr), data=tx.SerializeToString())
    return common_pb2.Envelope(payload=payload.SerializeToString(), signature=os.urandom(72)).SerializeToString()


def _small_tx(ids: _Identities, block: int, i: int) -> bytes:
    """A hospital's update record plus a shared round record that many transactions overwrite."""
    record = json.dumps({"round_id": block // 5, "hospital": f"h{i}", "n_samples": 100 + i, "dim": 100_000,
                         "share_hashes": [hashlib.sha256(f"{block}/{i}/{j}".encode()).hexdigest() for j in range(5)],
                         "submitted_at": 1_700_000_000 + block}).encode()
    round_record = json.dumps({"round_id": block // 5, "updates": i, "pad": "r" * 400}).encode()
    writes = [(f"\x00update\x00{block // 5:020d}\x00h{block}-{i}\x00", record),
              (f"\x00round\x00{block // 5:020d}\x00", round_record)]
    return _envelope(ids, block * 1000 + i, [b"SubmitUpdate", record], writes)


def _model_tx(ids: _Identities, block: int, model_kb: int) -> bytes:
    model = os.urandom(model_kb * 1024)
    chunks = range(0, len(model), CHUNK)
    writes = [(f"\x00modelchunk\x00{block:020d}\x00{i // CHUNK:06d}\x00", model[i:i + CHUNK]) for i in chunks]
    writes.append((f"\x00model\x00{block:020d}\x00", json.dumps(
        {"sha256": hashlib.sha256(model).hexdigest(), "size": len(model), "chunks": len(chunks)}).encode()))
    return _envelope(ids, block * 1000, [b"PublishModel", str(block).encode(), base64.b64encode(model)], writes)


def build_ledger(workdir: Path, blocks: int, tx_per_block: int, model_every: int, model_kb: int) -> Path:
    """A consortium and a ledger of `blocks` blocks (block 0 = genesis) under workdir; returns the ledger dir."""
    from fedchain.identity import generate_consortium

    from fedchain_devnet.genesis import genesis_envelope
    from fedchain_devnet.ledger import Ledger

    consortium = generate_consortium(workdir / "crypto", ["Org1", "Org2", "Org3"])
    orderer = consortium.orderer
    ledger = Ledger(workdir / "ledger", CHANNEL, lambda state: _PassThrough(), consortium.msp_manager(),
                    orderer.node_identity, {orderer.msp_id})
    ledger.open(lambda: genesis_envelope(CHANNEL, consortium.msp_configs(include_orderer=False),
                                         [orderer.msp_config], orderer.node_identity))
    user = consortium.enroll(consortium.orgs[0].msp_id, "bench", "hospital")
    ids = _Identities(user.serialize(), [o.peer_identity.serialize() for o in consortium.orgs[:2]])
    for n in range(1, blocks):
        if model_every and n % model_every == 0:
            ledger.commit([_model_tx(ids, n, model_kb)])
        else:
            ledger.commit([_small_tx(ids, n, i) for i in range(tx_per_block)])
    ledger.close()
    return workdir / "ledger"


# --- measuring a start ------------------------------------------------------------------------------
class _Clock:
    """Wall and CPU seconds accumulated per phase."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, phase: str, wall0: float, cpu0: float) -> None:
        self.wall[phase] = self.wall.get(phase, 0.0) + time.perf_counter() - wall0
        self.cpu[phase] = self.cpu.get(phase, 0.0) + time.process_time() - cpu0


def measure(workdir: Path) -> dict:
    """Open the ledger like the devnet does, timing chain verification, replay and comparison separately."""
    from fedchain.identity import Consortium

    from fedchain_devnet.ledger import Ledger

    consortium = Consortium.load(workdir / "crypto")
    orderer = consortium.orderer
    clock = _Clock()
    w0, c0 = time.perf_counter(), time.process_time()
    ledger = Ledger(workdir / "ledger", CHANNEL, lambda state: _PassThrough(), consortium.msp_manager(),
                    orderer.node_identity, {orderer.msp_id})
    expected = ExpectedState()
    prev, prev_commit = None, b""
    for n in range(ledger.height):
        w, c = time.perf_counter(), time.process_time()
        block = ledger._read_verified(n, prev, prev_commit)
        prev, prev_commit = block, ledger._commit_hash_of(block)
        clock.add("verify_chain", w, c)
        w, c = time.perf_counter(), time.process_time()
        expected.add_block(n, *block_effects(block))
        clock.add("replay_write_sets", w, c)
    w, c = time.perf_counter(), time.process_time()
    check_state(ledger.state, expected)
    clock.add("compare_state_db", w, c)
    clock.add("total", w0, c0)
    height = ledger.height
    ledger.close()
    sizes = {f.name: f.stat().st_size for f in (workdir / "ledger").iterdir()}
    return {"blocks": height, "keys": len(expected.state), "history_keys": len(expected.history),
            "wall_s": {k: round(v, 3) for k, v in clock.wall.items()},
            "cpu_s": {k: round(v, 3) for k, v in clock.cpu.items()},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "blocks_mb": round(sizes.get("blocks.bin", 0) / 2**20, 1),
            "state_db_mb": round(sum(v for k, v in sizes.items() if k.startswith("state")) / 2**20, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fedchain_devnet.startbench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--tx-per-block", type=int, default=10)
    p.add_argument("--model-every", type=int, default=50, help="a model publication every N blocks (0 = none)")
    p.add_argument("--model-kb", type=int, default=4096, help="model size (stored in 1 MiB chunks)")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure an existing workdir in this process
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(Path(args.measure))))
        return 0
    results = []
    for n in args.blocks:
        workdir = Path(tempfile.mkdtemp(prefix=f"devnet-startbench-{n}-"))
        try:
            build_ledger(workdir, n, args.tx_per_block, args.model_every, args.model_kb)
            out = subprocess.run([sys.executable, "-m", "fedchain_devnet.startbench", "--measure", str(workdir)],
                                 check=True, capture_output=True, text=True)
            result = json.loads(out.stdout) | {"tx_per_block": args.tx_per_block, "model_every": args.model_every,
                                               "model_kb": args.model_kb}
            print(json.dumps(result), flush=True)
            results.append(result)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
