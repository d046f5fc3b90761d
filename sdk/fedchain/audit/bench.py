"""How long `audit verify` takes per 1,000 transactions, measured on a synthetic FL chain.

    python -m fedchain.audit.bench --hospitals 50 --rounds 40

builds a signed chain (config block with Fabric's policies, InitConsortium, registrations, then
rounds of CreateRound, one SubmitUpdate per hospital, CloseRound and two attestations, every
transaction endorsed by two of three orgs, 10 per block) and times the offline part of the audit
on it: chain checks (hashes, signatures, policies, MVCC replay), FL replay and the world-state
rebuild. Fetching blocks through the gateway is not included (it depends on the network).
The chain is honest: the audit must report nothing, which the script checks.
"""

from __future__ import annotations

import argparse
import base64
import time

from fedchain.audit.synthetic import SyntheticChannel
from fedchain.canonical import canonical_text, sha256_hex
from fedchain.identity import SigningIdentity


class FLChainBuilder:
    """Honest FL transactions on a SyntheticChannel, with the keys the FL contract writes."""

    def __init__(self, hospitals: int, param_count: int = 1000, per_block: int = 10) -> None:
        self.ch = SyntheticChannel()
        self.orgs = list(self.ch.orgs)
        self.per_block = per_block
        self.param_count = param_count
        self.pending: list[bytes] = []
        self.operator = self.ch.member(self.orgs[0], "operator", ou="admin", role="operator")
        self.nodes = [self.ch.member(m, f"mpc{j}", role="mpc_node") for j, m in enumerate(self.orgs)]
        self.hospitals = {f"h{i}": self.ch.member(self.orgs[i % 3], f"h{i}", role="hospital")
                          for i in range(1, hospitals + 1)}
        self.ch.config_block()
        self._n = 0

    def submit(self, who: SigningIdentity, fn: str, *args: str, writes: dict[str, bytes] | None = None) -> None:
        self._n += 1
        endorsers = [self.ch.peer(self.orgs[self._n % 3]), self.ch.peer(self.orgs[(self._n + 1) % 3])]
        self.pending.append(self.ch.tx(who, "fedchain", fn, args, endorsers=endorsers, writes=writes or {}))
        if len(self.pending) >= self.per_block:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.ch.block(self.pending)
            self.pending = []

    def setup(self) -> str:
        nodes = [{"id": f"mpc{j}", "msp_id": n.msp_id, "identity": n.identity.fabric_id} for j, n in enumerate(self.nodes)]
        self.submit(self.operator, "InitConsortium", canonical_text({"mpc_nodes": nodes, "threshold": 1, "quorum": 2,
                                                         "min_accepted": 1}), writes={"consortium": b"{}"})
        for name, ident in self.hospitals.items():
            entry = {"id": name, "role": "hospital", "msp_id": ident.msp_id, "identity": ident.identity.fabric_id,
                     "sample_cap": 1000}
            self.submit(self.operator, "RegisterParticipant", canonical_text(entry),
                        writes={f"\x00participant\x00{name}\x00": canonical_text(entry).encode()})
        genesis = bytes(4 * self.param_count)
        self.submit(self.operator, "PublishGenesisModel", canonical_text({"param_count": self.param_count}),
                    base64.b64encode(genesis).decode())
        return sha256_hex(genesis)

    def round(self, rid: int, base: str, start: float) -> None:
        self.submit(self.operator, "CreateRound", canonical_text({
            "round_id": rid, "base_model_hash": base, "model_spec": {"param_count": self.param_count},
            "policy": {"cosine_enabled": False}, "deadline": start + 10**6, "min_updates": 1}))
        for name, ident in self.hospitals.items():
            upd = {"round_id": rid, "share_hashes": [sha256_hex(f"{rid}{name}{j}".encode())
                                                     for j in range(3)], "n_samples": 100, "dim": self.param_count}
            self.submit(ident, "SubmitUpdate", canonical_text(upd), writes={f"\x00update\x00{rid:020d}\x00{name}\x00": canonical_text(upd).encode()})
        self.submit(self.operator, "CloseRound", str(rid))
        att = {"round_id": rid, "model_hash": base, "accepted": sorted(self.hospitals), "rejected": {},
               "report_hash": "ab" * 32}
        for node in self.nodes[:2]:
            self.submit(node, "AttestResult", canonical_text(att))


def build_chain(hospitals: int, rounds: int) -> FLChainBuilder:
    b = FLChainBuilder(hospitals)
    base = b.setup()
    start = b.ch.next_time().timestamp()
    for rid in range(1, rounds + 1):
        b.round(rid, base, start)
    b.flush()
    return b


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fedchain.audit.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--hospitals", type=int, default=50)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--json", default=None, metavar="PATH", help="also write the figures here")
    args = p.parse_args(argv)
    from fedchain.audit.report import audit_chain, build_report
    from fedchain.audit.state import rebuild_state

    t = time.perf_counter()
    chain = build_chain(args.hospitals, args.rounds).ch.blocks
    built = time.perf_counter() - t
    wall, cpu = time.perf_counter(), time.process_time()
    audited, fl = audit_chain(chain)
    rebuild_state(audited.transactions, "fedchain")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = build_report(audited, fl)
    n = report["chain"]["transactions"]
    findings = report["chain"]["findings"] + report["fl"]["findings"]
    print(f"{len(chain)} blocks, {n} transactions (built in {built:.1f} s); audit {wall:.2f} s wall, "
          f"{cpu:.2f} CPU-s: {1000 * wall / n:.3f} s and {1000 * cpu / n:.3f} CPU-s per 1,000 transactions")
    for f in findings[:10]:
        print(f"unexpected finding: block {f['block']}: {f['problem']}")
    if args.json:
        import json
        from pathlib import Path

        Path(args.json).write_text(json.dumps({
            "blocks": len(chain), "transactions": n, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "per_1000_tx_s": round(1000 * wall / n, 3), "per_1000_tx_cpu_s": round(1000 * cpu / n, 3),
            "findings": len(findings)}, indent=1) + "\n")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
