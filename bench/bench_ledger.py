"""Ledger throughput and latency through the Fabric Gateway client.

Runs N `put(key, value)` submissions of the test chaincode (`fedchain_cc.testcc`) with C
transactions in flight from 10 identities spread over the orgs, each writing distinct keys
(no MVCC conflicts by construction), and reports committed tx/s and latency percentiles:

* e2e: proposal built → commit status returned (what an application waits for);
* commit: Submit sent → commit status returned (ordering + validation + commit);
* endorse: Endorse round trip (all endorsing orgs simulate and sign).

Either starts a 3-org devnet (MAJORITY endorsement) in a temporary folder, or measures an
already running network with `--network DIR` (a folder with network.json and crypto/).
Usage: python bench/bench_ledger.py [-n 1000] [-c 30,100] [--json out.json] [--network DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fedchain.gateway import CommitError, Contract, Gateway, GatewayError

IDENTITIES = 10


@dataclass
class Sample:
    start: float
    endorsed: float = 0.0
    submitted: float = 0.0
    committed: float = 0.0
    outcome: str = "VALID"


@dataclass
class LevelResult:
    concurrency: int
    transactions: int
    committed_valid: int
    failures: dict[str, int]
    wall_s: float
    tx_per_s: float
    e2e_ms: dict[str, float]
    commit_ms: dict[str, float]
    endorse_ms: dict[str, float]
    client_cpu_ms_per_tx: float
    extra: dict[str, object] = field(default_factory=dict)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50": pick(0.50), "p95": pick(0.95), "p99": pick(0.99), "max": round(ordered[-1] * 1000, 2),
            "mean": round(statistics.fmean(ordered) * 1000, 2)}


def one_transaction(contract: Contract, key: str, value: bytes) -> Sample:
    s = Sample(time.perf_counter())
    try:
        tx = contract.new_proposal("put", [key, value]).endorse()
        s.endorsed = s.submitted = time.perf_counter()  # Submit is sent right away
        commit = tx.submit()
        status = commit.status()
        s.committed = time.perf_counter()
        if not status.successful:
            s.outcome = status.code_name
    except CommitError as exc:
        s.outcome = exc.validation_code_name
    except GatewayError as exc:
        s.outcome = f"{type(exc).__name__}:{exc.grpc_code.name if exc.grpc_code else '-'}"
    return s


def run_level(contracts: list[Contract], n: int, concurrency: int, tag: str, value_size: int) -> LevelResult:
    value = os.urandom(value_size // 2).hex().encode()[:value_size]
    samples: list[Sample] = []
    lock = threading.Lock()

    def task(i: int) -> None:
        sample = one_transaction(contracts[i % len(contracts)], f"bench/{tag}/{i:07d}", value)
        with lock:
            samples.append(sample)

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench") as pool:
        list(pool.map(task, range(n)))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    ok = [s for s in samples if s.outcome == "VALID"]
    return LevelResult(
        concurrency=concurrency, transactions=n, committed_valid=len(ok),
        failures=dict(Counter(s.outcome for s in samples if s.outcome != "VALID")),
        wall_s=round(wall, 3), tx_per_s=round(len(ok) / wall, 1),
        e2e_ms=percentiles([s.committed - s.start for s in ok]),
        commit_ms=percentiles([s.committed - s.submitted for s in ok]),
        endorse_ms=percentiles([s.endorsed - s.start for s in ok]),
        client_cpu_ms_per_tx=round(cpu / n * 1000, 3),
    )


def print_table(results: list[LevelResult]) -> None:
    head = f"{'in flight':>9} {'tx':>6} {'valid':>6} {'tx/s':>7} {'e2e p50':>8} {'e2e p95':>8} " \
           f"{'commit p50':>10} {'commit p95':>10} {'endorse p50':>11} {'cpu ms/tx':>9}  failures"
    print(head)
    print("-" * len(head))
    for r in results:
        print(f"{r.concurrency:>9} {r.transactions:>6} {r.committed_valid:>6} {r.tx_per_s:>7} "
              f"{r.e2e_ms.get('p50', 0):>8} {r.e2e_ms.get('p95', 0):>8} {r.commit_ms.get('p50', 0):>10} "
              f"{r.commit_ms.get('p95', 0):>10} {r.endorse_ms.get('p50', 0):>11} {r.client_cpu_ms_per_tx:>9}  "
              f"{r.failures or '-'}")


def bench_identities(consortium, wallet_dir: Path, count: int) -> list:
    """`count` client identities spread round-robin over the orgs (enrolled once, reused)."""
    from fedchain.identity import Wallet

    wallet = Wallet(wallet_dir)
    out = []
    for i in range(count):
        org = consortium.orgs[i % len(consortium.orgs)]
        name = f"bench{i}"
        if not wallet.exists(name):
            wallet.put(name, consortium.enroll(org.msp_id, name, "hospital"))
        out.append(wallet.get(name))
    return out


def existing_network(network_dir: Path, chaincode: str | None) -> tuple[str, bytes | None, str | None, list, str, str]:
    from fedchain.identity import Consortium
    from fedchain.netconfig import load_network

    cfg = load_network(network_dir)
    crypto = cfg.directory / str(cfg.extra.get("crypto", "crypto"))
    identities = bench_identities(Consortium.load(crypto), cfg.directory / "bench-wallet", IDENTITIES)
    return (cfg.gateway.endpoint, cfg.gateway.root_cert_bytes(), cfg.gateway.server_name, identities, cfg.channel,
            chaincode or cfg.chaincode)


def serve_chaincode(address: str) -> int:
    """Child-process mode: serve the test chaincode (chaincode-as-a-service) until SIGTERM."""
    import signal

    from fedchain_cc.shim.server import ChaincodeServer
    from fedchain_cc.testcc import TestChaincode

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = ChaincodeServer(TestChaincode(), address, chaincode_id="testcc:bench", max_concurrent_tx=64).start()
    print(f"READY {server.address}", flush=True)
    stop.wait()
    server.stop(grace=1.0)
    return 0


def start_devnet(stack: ExitStack, workdir: Path, args: argparse.Namespace) -> tuple[str, bytes, None, list, str, str]:
    """A fresh 3-org devnet (MAJORITY endorsement) with the test chaincode in its own process."""
    import subprocess

    from fedchain.identity import generate_consortium
    from fedchain_devnet.config import ChaincodeDef, make_devnet_config
    from fedchain_devnet.launch import DevnetProcess

    consortium = generate_consortium(workdir / "crypto")
    cc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-chaincode", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=open(workdir / "chaincode.log", "ab"), start_new_session=True)
    stack.callback(lambda: (cc.terminate(), cc.wait(10)))
    line = cc.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"test chaincode did not start; see {workdir / 'chaincode.log'}")
    config = make_devnet_config(consortium, workdir / "ledger", "127.0.0.1:0",
                                [ChaincodeDef("testcc", line.split()[1], policy="MAJORITY")],
                                batch_timeout_ms=args.batch_timeout_ms, max_message_count=args.max_message_count)
    (workdir / "devnet.json").write_text(json.dumps(config, indent=2))
    devnet = DevnetProcess(workdir / "devnet.json")
    endpoint = devnet.start()
    stack.callback(devnet.stop)
    identities = bench_identities(consortium, workdir / "bench-wallet", IDENTITIES)
    ca = consortium.orgs[0].tls_ca_cert_path.read_bytes()
    return endpoint, ca, None, identities, "fedchain", args.chaincode or "testcc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--transactions", type=int, default=1000, help="per concurrency level")
    parser.add_argument("-c", "--concurrency", default="30,100", help="comma-separated in-flight levels")
    parser.add_argument("--value-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--network", type=Path, help="measure this running network instead of starting one")
    parser.add_argument("--chaincode", help="chaincode name (default: the network's, or testcc for a fresh devnet)")
    parser.add_argument("--batch-timeout-ms", type=int, default=50)
    parser.add_argument("--max-message-count", type=int, default=100)
    parser.add_argument("--workdir", type=Path, help="folder for a fresh devnet (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--serve-chaincode", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c]

    if args.serve_chaincode:
        return serve_chaincode(args.serve_chaincode)
    import tempfile

    with ExitStack() as stack:
        if args.network:
            endpoint, ca, server_name, identities, channel, chaincode = existing_network(args.network, args.chaincode)
            meta = {"network": str(args.network), "kind": "existing"}
        else:
            workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ledger-")))
            workdir.mkdir(parents=True, exist_ok=True)
            print(f"starting a 3-org devnet (MAJORITY, test chaincode) in {workdir} ...", flush=True)
            endpoint, ca, server_name, identities, channel, chaincode = start_devnet(stack, workdir, args)
            meta = {"network": "fresh devnet", "kind": "devnet", "orgs": 3, "policy": "MAJORITY"}
        meta |= {"endpoint": endpoint, "channel": channel, "chaincode": chaincode}
        contracts = []
        for ident in identities:
            gateway = stack.enter_context(Gateway.connect(ident, endpoint, tls_root_cert=ca, server_name=server_name))
            contracts.append(gateway.network(channel).contract(chaincode))
        if args.warmup:
            run_level(contracts, args.warmup, min(10, args.warmup), f"warmup-{time.time_ns()}", args.value_size)
        results = []
        for level in levels:
            results.append(run_level(contracts, args.transactions, level, f"c{level}-{time.time_ns()}", args.value_size))
            print_table(results[-1:])
    print()
    print_table(results)
    report = {
        "benchmark": "ledger", "identities": IDENTITIES, "value_size": args.value_size, "warmup": args.warmup, **meta,
        "batch_timeout_ms": args.batch_timeout_ms, "max_message_count": args.max_message_count,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "levels": [asdict(r) for r in results],
        "targets": {"tx_per_s": 200, "e2e_p50_ms": 150},
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"results written to {args.json}")
    failures = sum(r.transactions - r.committed_valid for r in results)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
