"""Submit throughput and commit latency of the devnet through the fedchain gateway client.

    python -m fedchain_devnet.bench --tx 1000 --in-flight 30 [--orgs 3] [--policy MAJORITY] [--json out.json]

Builds a throw-away consortium, starts the project's chaincode server (`python -m
fedchain_cc`, the test chaincode, one `put` per transaction to a distinct key) and the
devnet, then keeps `--in-flight` submissions (endorse + submit + wait for commit) running
from separate client threads and identities. Latency = submit() call to VALID commit status.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fedchain.gateway import Gateway
from fedchain.identity import generate_consortium

from fedchain_devnet.config import ChaincodeDef, make_devnet_config
from fedchain_devnet.launch import DevnetProcess


def _start_chaincode(log_path: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, CHAINCODE_ID="testcc_1.0:bench", CHAINCODE_SERVER_ADDRESS="127.0.0.1:0",
               FEDCHAIN_CHAINCODE="testcc", FEDCHAIN_CC_LOG_LEVEL="WARNING")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "fedchain_cc"], stdout=subprocess.PIPE, stderr=log, env=env)
    line = proc.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"chaincode server did not start: {line!r} (see {log_path})")
    return proc, line.split()[1]


def run(tx: int, in_flight: int, orgs: int, policy: str, batch_timeout_ms: int, max_count: int,
        workdir: Path, value_bytes: int = 100) -> dict:
    consortium = generate_consortium(workdir / "crypto", [f"Org{i + 1}" for i in range(orgs)])
    cc, address = _start_chaincode(workdir / "chaincode.log")
    cfg = make_devnet_config(consortium, workdir / "ledger", "127.0.0.1:0", [ChaincodeDef("testcc", address, policy)],
                             batch_timeout_ms=batch_timeout_ms, max_message_count=max_count)
    (workdir / "devnet.json").write_text(json.dumps(cfg))
    devnet = DevnetProcess(workdir / "devnet.json")
    try:
        endpoint = devnet.start()
        tls = consortium.orgs[0].tls_ca_cert_path.read_bytes()
        users = [consortium.enroll(consortium.orgs[i % orgs].msp_id, f"bench{i}", "hospital") for i in range(10)]
        gateways = [Gateway.connect(u, endpoint, tls_root_cert=tls) for u in users]
        contracts = [g.network("fedchain").contract("testcc") for g in gateways]
        for c in contracts[:2]:
            c.submit("put", "warm-up", "x")
        latencies: list[float] = []
        blocks: set[int] = set()
        failures: list[str] = []
        lock = threading.Lock()
        counter = iter(range(tx))
        value = "v" * value_bytes

        def worker(w: int) -> None:
            contract = contracts[w % len(contracts)]
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                try:
                    res = contract.submit("put", f"bench-{i}", value)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        failures.append(str(exc)[:200])
                    continue
                with lock:
                    latencies.append(time.perf_counter() - t)
                    blocks.add(res.block_number)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(in_flight)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        elapsed = time.perf_counter() - t0
        for g in gateways:
            g.close()
    finally:
        devnet.stop()
        cc.terminate()
        cc.wait(10)
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 1) if latencies else float("nan")

    return {
        "transactions": tx, "valid": len(latencies), "failed": len(failures), "first_failures": failures[:3],
        "in_flight": in_flight, "orgs": orgs, "policy": policy, "batch_timeout_ms": batch_timeout_ms,
        "max_message_count": max_count, "cpus": os.cpu_count(), "elapsed_s": round(elapsed, 2),
        "throughput_tx_s": round(len(latencies) / elapsed, 1),
        "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                       "mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None},
        "blocks": len(blocks), "avg_tx_per_block": round(len(latencies) / max(1, len(blocks)), 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fedchain_devnet.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tx", type=int, default=1000)
    p.add_argument("--in-flight", type=int, default=30)
    p.add_argument("--orgs", type=int, default=3)
    p.add_argument("--policy", default="MAJORITY")
    p.add_argument("--batch-timeout-ms", type=int, default=50)
    p.add_argument("--max-message-count", type=int, default=100)
    p.add_argument("--json", help="also write the result here")
    p.add_argument("--keep", action="store_true", help="keep the work folder (ledger, logs)")
    args = p.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="devnet-bench-"))
    result = run(args.tx, args.in_flight, args.orgs, args.policy, args.batch_timeout_ms, args.max_message_count, workdir)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
