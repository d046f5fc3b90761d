"""WAN benchmark: the three MPC parties on three namespace hosts with a round-trip time between them.

Why: MPyC runs many sequential communication rounds, so a run that takes about a second on loopback
pays one one-way delay per round on a WAN. This measures it per phase and counts the rounds.

Topology (fedchain.netctl.netns, root only): hosts `hosp`, `ledger`, `mpc0`, `mpc1`, `mpc2`, each a
network namespace; every pair of hosts has the asked RTT and every host's uplink the asked rate
(user-space relay: this kernel has no sch_netem). Per RTT, with fresh synthetic updates (honest
ones plus a sign flip, a x4 scaling and a shifted direction, fedchain_mpc.bench.synthetic) and the
operator's default policy (fedchain.verification.presets.PolicySettings, what the demo uses):

- upload: the hospital host sends every hospital's share j to node j over gRPC with mutual TLS
  through the real intake service (fedchain_mpc.intake; see `_upload`).
- mpc_checks: seed, local products and every check stage; aggregate: the aggregate's opening.
  Three party processes (fedchain_mpc.wan_party: mpc_program plus the round counter), one per MPC
  host, `-P <host address>:port`.
- attest: one ledger transaction (endorse, order into a block, commit status) from the MPC host mpc0
  to the embedded ledger (devnet + chaincode server) on the ledger host (`fedchain network up --hosts
  --only chaincode|devnet`): RegisterParticipant by the operator, the same path as AttestResult
  (fedchain_mpc.wan_services.ledger_tx says why not AttestResult itself).

Reported per phase: wall seconds (max over nodes), CPU seconds (max over nodes), bytes sent (sum
over nodes, payload as MPyC counts it), sequential rounds (fedchain_mpc.rounds; max over nodes), and
the cross-check implied_rounds = (T(rtt) - T(0)) / (rtt / 2).
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fedchain.netctl import netns
from fedchain.records import RoundId
from fedchain.verification.presets import PolicySettings

from fedchain_mpc import bench
from fedchain_mpc.job import JOB_ENV, JobResult, MPCJob

HOSTS = ["hosp", "ledger", "mpc0", "mpc1", "mpc2"]
PARTY_PORT = 11365
MPC_PHASES = ("seed", "local_products")  # plus the check stages; "aggregate" is its own phase


class WanUnavailable(RuntimeError):
    """Namespaces cannot be created here (not root, no iproute2, no TUN): the reason is the message."""


@dataclass(frozen=True)
class WanSettings:
    rtts_ms: tuple[float, ...] = (0.0, 10.0, 50.0, 100.0)
    rate: str | None = "100mbit"
    clients: int = 10
    dim: int = 100_000
    poisoned: int = 3
    reps: int = 1
    seed: int = 0
    upload: bool = True
    attest: bool = True


def default_policy(reference: np.ndarray) -> Any:
    """The demo's round policy (operator defaults) for this reference update."""
    return PolicySettings().round_policy(float(np.linalg.norm(reference)))


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_parties(topo: netns.Topology, jobs: list[Path],
                timeout: float = 900.0) -> tuple[list[JobResult], list[dict], float]:
    """Run one wan_party per MPC host; (outputs, round files, wall seconds)."""
    addrs = [topo.address(f"mpc{j}") for j in range(len(jobs))]
    args = [a for addr in addrs for a in ("-P", f"{addr}:{PARTY_PORT}")]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = []
    started = time.perf_counter()
    for j, job in enumerate(jobs):
        procs.append(topo.popen(f"mpc{j}", [sys.executable, "-m", "fedchain_mpc.wan_party", *args, "-I", str(j)],
                                env=dict(env, **{JOB_ENV: str(job)}), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE))
    outs, rounds = [], []
    for j, proc in enumerate(procs):
        _, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"party {j} exited {proc.returncode}: {err.decode(errors='replace')[-2000:]}")
    wall = time.perf_counter() - started
    for job in jobs:
        out = Path(MPCJob.load(job).output_path)
        outs.append(bench.run_result(out))
        rounds.append(json.loads(out.with_name(out.name + ".rounds.json").read_text()))
    return outs, rounds, wall


INTAKE_PORT = 7051


class _UploadWorld:
    """The consortium's certificates, the three real intakes (one per MPC host) and the hospital uploader."""

    def __init__(self, root: Path, topo: netns.Topology, clients: int, dim: int) -> None:
        self.root, self.topo, self.clients, self.dim = root, topo, clients, dim
        self.intakes: list[subprocess.Popen[str]] = []

    def start(self) -> None:
        from fedchain.identity import generate_consortium

        from fedchain_mpc.wan_services import ORG

        self.root.mkdir(parents=True)
        cons = generate_consortium(self.root / "crypto", ("Org1", "Org2"))
        participants = []
        for i in range(self.clients):
            ident = cons.enroll(ORG, f"h{i}", "hospital")
            participants.append({"id": f"h{i}", "role": "hospital", "msp_id": ident.msp_id,
                                 "identity": ident.identity.fabric_id, "sample_cap": 100_000})
        for j in range(3):
            ident = cons.enroll(ORG, f"mpc{j}", "mpc_node")
            participants.append({"id": f"mpc{j}", "role": "mpc_node", "msp_id": ident.msp_id,
                                 "identity": ident.identity.fabric_id, "node_index": j})
        for j in range(3):
            cfg = self.root / f"intake{j}.json"
            cfg.write_text(json.dumps({"crypto": str(self.root / "crypto"), "index": j, "dim": self.dim,
                                       "address": self.topo.address(f"mpc{j}"), "port": INTAKE_PORT,
                                       "store": str(self.root / f"store{j}"), "participants": participants}))
            proc = self.topo.popen(f"mpc{j}", [sys.executable, "-m", "fedchain_mpc.wan_services", "intake", str(cfg)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
            self.intakes.append(proc)
        for j, proc in enumerate(self.intakes):
            line = proc.stdout.readline() if proc.stdout else ""
            if line.strip() != "READY":
                raise RuntimeError(f"intake of mpc{j} did not start (exit {proc.poll()})")

    def _intake_cpu(self) -> list[float]:
        out = []
        for proc in self.intakes:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("cpu\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            while line and not line.startswith("CPU "):  # anything else the intake printed
                line = proc.stdout.readline()
            out.append(float(line.split()[1]))
        return out

    def upload(self, work: Path, round_id: RoundId) -> dict[str, float]:
        """All hospitals upload their shares of this round (in parallel); wall, CPU and wire bytes."""
        cfg = work / "upload.json"
        cfg.write_text(json.dumps({
            "crypto": str(self.root / "crypto"), "round_id": round_id,
            "endpoints": [f"{self.topo.address(f'mpc{j}')}:{INTAKE_PORT}" for j in range(3)],
            "uploads": [{"hospital": f"h{i}", "paths": [str(work / f"h{i}.node{j}.share") for j in range(3)]}
                        for i in range(self.clients)]}))
        relay0, cpu0 = self.topo.relay_stats(), self._intake_cpu()
        done = self.topo.run("hosp", [sys.executable, "-m", "fedchain_mpc.wan_services", "upload", str(cfg)],
                             capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"upload failed: {done.stderr[-2000:]}")
        relay1, cpu1 = self.topo.relay_stats(), self._intake_cpu()
        got = json.loads(done.stdout.strip().splitlines()[-1])
        if got["receipts"] != 3 * self.clients:
            raise RuntimeError(f"upload: {got['receipts']} receipts for {3 * self.clients} shares")
        return {"wall_s": got["wall_s"], "cpu_s": got["cpu_s"],
                "cpu_s_node_max": max(b - a for a, b in zip(cpu0, cpu1, strict=True)),
                "bytes": relay1["hosts"]["hosp"]["bytes"] - relay0["hosts"]["hosp"]["bytes"],
                "share_bytes": got["share_bytes"], "rounds": 0}

    def stop(self) -> None:
        for proc in self.intakes:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()


FEDCHAIN = [sys.executable, "-c", "import sys; from fedchain.cli.main import main; sys.exit(main())"]
LEDGER_BASE_PORT = 7050


class _LedgerWorld:
    """The embedded ledger (devnet + chaincode server) on the ledger host, reached from mpc0's host."""

    def __init__(self, root: Path, topo: netns.Topology) -> None:
        self.root, self.topo = root, topo
        self.started: list[str] = []
        self.count = 0

    def start(self) -> None:
        addr = self.topo.address
        hosts = self.root.with_name("ledger-hosts.json")
        hosts.write_text(json.dumps({"ledger": addr("ledger"), "chaincode": addr("ledger"),
                                     "mpc": [addr(f"mpc{j}") for j in range(3)]}))
        for only in ("chaincode", "devnet"):
            extra = ["--hosts", str(hosts), "--base-port", str(LEDGER_BASE_PORT)] if only == "chaincode" else []
            done = self.topo.run("ledger", [*FEDCHAIN, "network", "up", "--network", str(self.root), *extra,
                                            "--only", only], capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise RuntimeError(f"ledger host: network up --only {only}: {done.stderr[-2000:]}")
            self.started.append(only)

    def attest(self) -> dict[str, float]:
        """One ledger transaction from mpc0's host (see wan_services.ledger_tx): wall/CPU and bytes both ways."""
        self.count += 1
        cfg = self.root.with_name(f"ledger-tx{self.count}.json")
        cfg.write_text(json.dumps({"network": str(self.root), "name": f"wan{self.count}"}))
        relay0 = self.topo.relay_stats()
        done = self.topo.run("mpc0", [sys.executable, "-m", "fedchain_mpc.wan_services", "ledger-tx", str(cfg)],
                             capture_output=True, text=True, timeout=300)
        relay1 = self.topo.relay_stats()
        if done.returncode != 0:
            raise RuntimeError(f"ledger transaction failed: {done.stderr[-2000:]}")
        got = json.loads(done.stdout.strip().splitlines()[-1])
        sent = sum(relay1["hosts"][h]["bytes"] - relay0["hosts"][h]["bytes"] for h in ("mpc0", "ledger"))
        return {"wall_s": got["wall_s"], "cpu_s": got["cpu_s"], "connect_s": got["connect_s"], "bytes": sent,
                "rounds": 0, "code": got["code"]}

    def stop(self) -> None:
        for only in reversed(self.started):
            self.topo.run("ledger", [*FEDCHAIN, "network", "down", "--network", str(self.root), "--only", only],
                          capture_output=True, timeout=120)
        self.started.clear()


def _phase_table(outs: list[JobResult], rnds: list[dict]) -> dict[str, dict[str, float]]:
    """Per MPC phase: wall/CPU max over nodes, bytes summed over nodes, rounds max over nodes."""
    names = [k for k in outs[0].phases if k not in ("load", "total")]
    table = {}
    for k in names:
        table[k] = {"wall_s": max(o.phases[k] for o in outs), "cpu_s": max(o.phases_cpu[k] for o in outs),
                    "bytes": sum(r["phase_bytes"].get(k, 0) for r in rnds),
                    "rounds": max(r["phase_rounds"].get(k, 0) for r in rnds)}
    return table


def _merge(table: dict[str, dict[str, float]], names: list[str]) -> dict[str, float]:
    return {"wall_s": sum(table[k]["wall_s"] for k in names), "cpu_s": sum(table[k]["cpu_s"] for k in names),
            "bytes": sum(table[k]["bytes"] for k in names), "rounds": sum(table[k]["rounds"] for k in names)}


def run(settings: WanSettings, progress: Any = print) -> dict:
    """The benchmark; a JSON-serializable report."""
    ok, why = netns.can_create_namespaces()
    if not ok:
        raise WanUnavailable(why)
    rng = np.random.default_rng(settings.seed)
    results = []
    with tempfile.TemporaryDirectory(prefix="fc-wan-") as tmp, \
            netns.Topology(HOSTS, rtt_ms=0, rate=settings.rate, prefix="fcwan", subnet="10.78.0.0/24") as topo:
        upload_ctx = (_UploadWorld(Path(tmp) / "upload", topo, settings.clients, settings.dim)
                      if settings.upload else None)
        round_id = RoundId(0)
        attest_ctx = _LedgerWorld(Path(tmp) / "ledger", topo) if settings.attest else None
        try:
            if upload_ctx is not None:
                upload_ctx.start()
            if attest_ctx is not None:
                attest_ctx.start()
            for rtt in settings.rtts_ms:
                topo.set_rtt(rtt)
                reps = []
                for rep in range(settings.reps):
                    x, ref, kinds = bench.synthetic(settings.clients, settings.dim, settings.poisoned, rng)
                    ns = [int(v) for v in rng.integers(50, 500, settings.clients)]
                    policy = default_policy(ref)
                    work = Path(tmp) / f"rtt{rtt:g}-{rep}"
                    work.mkdir()
                    round_id = RoundId(round_id + 1)
                    jobs = bench.write_round(work, x, ref, ns, policy, round_id=round_id,
                                             seed=f"wan-{settings.seed}-{rtt:g}-{rep}")
                    phases: dict[str, dict[str, float]] = {}
                    if upload_ctx is not None:
                        phases["upload"] = upload_ctx.upload(work, round_id)
                    relay0 = topo.relay_stats()
                    cpu0 = _children_cpu()
                    outs, rnds, wall = run_parties(topo, jobs)
                    relay1 = topo.relay_stats()
                    table = _phase_table(outs, rnds)
                    checks = [k for k in table if k != "aggregate"]
                    phases["mpc_checks"] = _merge(table, checks)
                    phases["aggregate"] = _merge(table, ["aggregate"])
                    if attest_ctx is not None:
                        phases["attest"] = attest_ctx.attest()
                    accept = [outs[0].verdicts[f"h{i}"].accept for i in range(settings.clients)]
                    from fedchain_mpc import plaintext

                    pt, _ = plaintext.evaluate(x, ns, policy, ref, outs[0].seed)
                    reps.append({
                        "phases": phases, "mpc_phases": table, "party_wall_s": wall,
                        "party_cpu_s": _children_cpu() - cpu0,
                        "wire_bytes_mpc_hosts": sum(relay1["hosts"][h]["bytes"] - relay0["hosts"][h]["bytes"]
                                                    for h in ("mpc0", "mpc1", "mpc2")),
                        "reasons": [outs[0].verdicts[f"h{i}"].reason for i in range(settings.clients)],
                        "kinds": kinds,
                        "accept_equals_plaintext": accept == [a for a, _ in pt],
                        "nodes_agree": len({o.aggregate_sha256 for o in outs}) == 1,
                    })
                res = _median_rep(reps, rtt)
                results.append(res)
                progress(_row(res))
        finally:
            if upload_ctx is not None:
                upload_ctx.stop()
            if attest_ctx is not None:
                attest_ctx.stop()
    base = next((r for r in results if r["rtt_ms"] == 0), None)
    for r in results:
        if base is not None and r["rtt_ms"] > 0:
            for k in ("mpc_checks", "aggregate"):
                extra = r["phases"][k]["wall_s"] - base["phases"][k]["wall_s"]
                r["phases"][k]["implied_rounds"] = extra / (r["rtt_ms"] / 2000.0)
    return {"settings": {**settings.__dict__, "rtts_ms": list(settings.rtts_ms)},
            "policy": json.loads(default_policy(np.ones(4)).to_json()) | {"note": "norm-dependent fields per run"},
            "hosts": HOSTS, "load_avg": os.getloadavg(), "results": results}


def _median_rep(reps: list[dict], rtt: float) -> dict:
    phases = {}
    for k in reps[0]["phases"]:
        phases[k] = {f: statistics.median(r["phases"][k][f] for r in reps) for f, v in reps[0]["phases"][k].items()
                     if isinstance(v, (int, float))}
    mpc_phases = {}
    for k in reps[0]["mpc_phases"]:
        mpc_phases[k] = {f: statistics.median(r["mpc_phases"][k][f] for r in reps) for f in reps[0]["mpc_phases"][k]}
    return {"rtt_ms": rtt, "phases": phases, "mpc_phases": mpc_phases,
            "checks_plus_aggregate_s": statistics.median(
                r["phases"]["mpc_checks"]["wall_s"] + r["phases"]["aggregate"]["wall_s"] for r in reps),
            "party_cpu_s": statistics.median(r["party_cpu_s"] for r in reps),
            "wire_bytes_mpc_hosts": statistics.median(r["wire_bytes_mpc_hosts"] for r in reps),
            "accept_equals_plaintext": all(r["accept_equals_plaintext"] for r in reps),
            "nodes_agree": all(r["nodes_agree"] for r in reps),
            "reasons": reps[-1]["reasons"], "kinds": reps[-1]["kinds"], "reps": len(reps)}


def _row(res: dict) -> str:
    parts = [f"RTT {res['rtt_ms']:g} ms:"]
    for k, v in res["phases"].items():
        parts.append(f"{k} {v['wall_s']:.2f}s/{v['cpu_s']:.2f}cpu {v['bytes'] / 1e6:.2f}MB {int(v['rounds'])}r")
    parts.append(f"checks+aggregate {res['checks_plus_aggregate_s']:.2f}s")
    return "  ".join(parts)


def table(report: dict) -> str:
    """Markdown table: per RTT and phase, wall/CPU seconds, bytes and sequential rounds."""
    lines = ["| RTT ms | phase | wall s | CPU s (max node) | bytes sent | rounds | (T(rtt)-T(0))/(rtt/2) |",
             "|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        for k, v in r["phases"].items():
            implied = f"{v['implied_rounds']:.0f}" if "implied_rounds" in v else ""
            lines.append(f"| {r['rtt_ms']:g} | {k} | {v['wall_s']:.2f} | {v['cpu_s']:.2f} | {int(v['bytes']):,} | "
                         f"{int(v['rounds'])} | {implied} |")
        lines.append(f"| {r['rtt_ms']:g} | **checks + aggregate** | **{r['checks_plus_aggregate_s']:.2f}** | | | "
                     f"{int(r['phases']['mpc_checks']['rounds'] + r['phases']['aggregate']['rounds'])} | |")
    lines.append("")
    lines.append("MPC rounds per phase: " + "; ".join(
        f"{k} {int(v['rounds'])}" for k, v in report["results"][-1]["mpc_phases"].items()))
    ok = all(r["accept_equals_plaintext"] and r["nodes_agree"] for r in report["results"])
    lines.append(f"verdicts equal the plaintext reference and nodes agree at every RTT: {ok}")
    return "\n".join(lines)
