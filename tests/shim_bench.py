"""Shim throughput and per-transaction CPU: `python tests/shim_bench.py [--n 3000] [--inflight 64]`.

Starts `python -m fedchain_cc --chaincode testcc` as its own process (so the fake peer's CPU is
not counted), drives N transactions over ONE stream with the in-test fake peer, and reports
tx/s plus the chaincode process's CPU time per transaction (from /proc, user+system) as JSON.
Workloads: put (1 PUT_STATE), inc (GET_STATE + PUT_STATE), whoami (creator identity, no ledger call).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from shim_peer import FakePeer, creator_bytes  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_chaincode(tls_env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    env = dict(
        os.environ,
        CHAINCODE_ID="testcc:bench",
        CHAINCODE_SERVER_ADDRESS="127.0.0.1:0",
        FEDCHAIN_CC_LOG_LEVEL="WARNING",
        **tls_env,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedchain_cc", "--chaincode", "testcc"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"chaincode did not start: {line!r}")
    return proc, line.split()[1]


def _mtls(tmp: Path, ca_key, ca_cert) -> tuple[dict[str, str], grpc.ChannelCredentials]:  # noqa: ANN001
    """Server cert/key + client CA files for the chaincode, client credentials for the fake peer."""
    from cryptography.hazmat.primitives import serialization
    from fedchain.identity.certs import cert_to_pem, issue_certificate

    def pem(key) -> bytes:  # noqa: ANN001
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    skey, scert = issue_certificate(ca_key, ca_cert, "cc", org="Org1MSP", ou="peer", tls=True)
    ckey, ccert = issue_certificate(ca_key, ca_cert, "peer0", org="Org1MSP", ou="peer", tls=True)
    files = {"tls.crt": cert_to_pem(scert), "tls.key": pem(skey), "ca.crt": cert_to_pem(ca_cert)}
    for name, data in files.items():
        (tmp / name).write_bytes(data)
    (tmp / "tls.key").chmod(0o600)
    env = {
        "CHAINCODE_TLS_CERT": str(tmp / "tls.crt"),
        "CHAINCODE_TLS_KEY": str(tmp / "tls.key"),
        "CHAINCODE_TLS_CLIENT_CA": str(tmp / "ca.crt"),
    }
    creds = grpc.ssl_channel_credentials(files["ca.crt"], pem(ckey), cert_to_pem(ccert))
    return env, creds


def run(
    n: int, inflight: int, workloads: list[str], write_batch: int | None = None, tls: bool = False
) -> dict[str, object]:
    from fedchain.identity.certs import cert_to_pem, create_ca, issue_certificate

    ca_key, ca_cert = create_ca("ca.bench", "Org1MSP")
    _, cert = issue_certificate(ca_key, ca_cert, "bench", org="Org1MSP", ou="client", role="hospital")
    creator = creator_bytes("Org1MSP", cert_to_pem(cert))
    tmp = Path(tempfile.mkdtemp(prefix="shim-bench-"))
    tls_env, creds = _mtls(tmp, ca_key, ca_cert) if tls else ({}, None)
    proc, address = start_chaincode(tls_env)
    out: dict[str, object] = {
        "n": n,
        "inflight": inflight,
        "write_batch": write_batch,
        "mutual_tls": tls,
        "cores": os.cpu_count(),
    }
    try:
        with FakePeer(address, write_batch=write_batch, credentials=creds, server_name="localhost") as peer:
            for _ in range(50):  # warm-up
                peer.call("put", "warm", "x", creator=creator)
            for workload in workloads:
                args = {
                    "put": lambda i: ("put", f"k{i}", "v" * 64),
                    "inc": lambda i: ("inc", f"c{i % 1000}"),
                    "whoami": lambda i: ("whoami",),
                }[workload]
                cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                pending, done = [], 0
                for i in range(n):
                    pending.append(peer.submit(*args(i), creator=creator))
                    if len(pending) >= inflight:
                        assert pending.pop(0).result(60).ok
                        done += 1
                for f in pending:
                    assert f.result(60).ok
                elapsed, cpu = time.perf_counter() - t0, cpu_seconds(proc.pid) - cpu0
                out[workload] = {
                    "tx_per_s": round(n / elapsed, 1),
                    "chaincode_cpu_us_per_tx": round(cpu / n * 1e6, 1),
                }
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--workloads", default="put,inc,whoami")
    p.add_argument(
        "--write-batch",
        type=int,
        default=None,
        help="offer WRITE_BATCH_STATE with this max size (as newer Fabric peers do)",
    )
    p.add_argument("--tls", action="store_true", help="mutual TLS between the fake peer and the chaincode")
    a = p.parse_args()
    print(json.dumps(run(a.n, a.inflight, a.workloads.split(","), a.write_batch, a.tls), indent=2))


if __name__ == "__main__":
    main()
