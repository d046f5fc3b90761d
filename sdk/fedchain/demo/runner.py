"""`fedchain demo`'s main job: hospitals, operator and MPC nodes run R real rounds on a network.

Everything goes through the real system: each hospital has its own enrolled identity and
gateway connection and talks only to the gateway and the MPC nodes (HospitalClient); the
operator creates and closes rounds; the MPC node processes verify, aggregate, attest and
publish. Hospitals train one after another (2 cores: parallel training only thrashes) and
deliver shares and commitments concurrently. The demo then evaluates the model the ledger
published (hash-checked) on the held-out test set.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedchain.data import Dataset, dirichlet_split, generate_synthetic, load_npz
from fedchain.fl_client import TERMINAL_STATES, participant_entry
from fedchain.hospital import HospitalClient, Prepared, RoundOutcome
from fedchain.models import ModelSpec, build_model, load_model_bytes, param_count, to_safetensors_bytes
from fedchain.reference import reference_update, root_dataset, root_split_alignment
from fedchain.simulation import SimConfig
from fedchain.training import TrainConfig, evaluate
from fedchain.verification.presets import PolicySettings

from .adversary import KNOWLEDGE_NOTE, Coalition
from .operator import Operator, publish_reference, retry_mvcc
from .report import RoundRecord, build_report

_SIM = SimConfig()  # the plaintext simulation's settings: the demo runs the same, for real


@dataclass
class DemoConfig:
    rounds: int = _SIM.rounds
    hospitals: int = _SIM.hospitals
    malicious: int = _SIM.malicious
    attack: str | None = _SIM.attack
    attack_params: dict[str, Any] = field(default_factory=dict)
    defense: str = "mpc"
    dataset: str | None = None  # MedMNIST npz; None = synthetic (cached in D/data)
    seed: int = 0
    alpha: float = _SIM.alpha  # Dirichlet non-IID concentration
    steps: int = _SIM.steps
    batch_size: int = _SIM.batch_size
    lr: float = _SIM.lr
    momentum: float = _SIM.momentum
    root_size: int = _SIM.root_size
    warmup_epochs: int = _SIM.warmup_epochs
    n_train: int = _SIM.n_train
    n_test: int = _SIM.n_test
    # the operator's verification settings (fedchain.verification.presets): each round's policy is
    # built from them and the public reference update's norm
    policy: PolicySettings = field(default_factory=PolicySettings)
    # "auto" = the absolute cosine floor per round from the public root set (auto_cosine_min), or None
    # for policy.cosine_min (the relative rule does the work since 2026-11-30)
    cosine_min_auto: bool = False
    auto_cosine_lo: float = 0.05
    auto_cosine_hi: float = 0.20
    min_updates: int = 2
    deadline_s: float = 600.0
    round_timeout_s: float = 300.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_data(cfg: DemoConfig, net_dir: Path) -> Dataset:
    if cfg.dataset:
        return load_npz(cfg.dataset)
    path = net_dir / "data" / f"synthetic-s{cfg.seed}-n{cfg.n_train}-t{cfg.n_test}.npz"
    if not path.exists():
        generate_synthetic(path, n_train=cfg.n_train, n_val=max(200, 2 * cfg.root_size), n_test=cfg.n_test,
                           seed=cfg.seed)
    return load_npz(path)


def auto_cosine_min(split_cosine: float, lo: float, hi: float) -> float:
    """Per-round cosine threshold from the public root-split agreement a = cos(Δ_A, Δ_B): clamp(a², lo, hi).

    Why a²: if an update's cosine with the true direction is ρ, two independent ones agree ≈ ρ_1·ρ_2,
    so a ≈ ρ_half² tracks how much signal a round's training still carries. Measured in plaintext on the
    demo setup (8 hospitals, α = 1, 100 steps, seeds 0–2): round 1 a = 0.44–0.53 (→ 0.19–0.20) with honest
    cosines 0.31–0.58 (one very skewed hospital 0.14) and label flippers ≤ 0.16; later rounds a = 0.12–0.36
    (→ 0.05–0.13) with honest cosines down to 0.05–0.13. A linear k·a cannot do both: k ≥ 0.4 for round 1
    rejects honest updates in round 6 (a = 0.25, honest 0.075). The ceiling 0.20 matters with few local
    steps: at 30 steps / 4 hospitals a = 0.55–0.75, and a ceiling of 0.30 rejected 2 of 6 honest updates.
    """
    a = max(0.0, split_cosine)  # halves disagreeing: no signal to go by, the floor
    return round(float(min(hi, max(lo, a * a))), 4)


def hospital_ids(n: int) -> list[str]:
    return [f"hospital{i + 1}" for i in range(n)]


class Demo:
    """One demo run against a running network (`net` = fedchain.netconfig.NetworkConfig)."""

    def __init__(self, cfg: DemoConfig, net: Any, *, out: Callable[[str], None] = print,
                 policy_check: Callable[[dict[str, Any]], None] | None = None, progress: bool | None = None) -> None:
        if cfg.malicious > cfg.hospitals or cfg.hospitals < 2:
            raise ValueError("need at least 2 hospitals and no more malicious hospitals than hospitals")
        if cfg.defense == "mpc" and cfg.hospitals < cfg.policy.min_accepted:
            raise ValueError(f"{cfg.hospitals} hospitals cannot reach the privacy floor of {cfg.policy.min_accepted} "
                             "accepted updates: every round would fail")
        self.cfg = cfg
        self.net = net
        self.out = out
        self.policy_check = policy_check
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.data = load_data(cfg, Path(net.directory))
        self.ids = hospital_ids(cfg.hospitals)
        attack = cfg.attack if cfg.attack and cfg.malicious else None
        self.malicious = self.ids[len(self.ids) - cfg.malicious:] if attack else []
        self.coalition = Coalition(attack, self.malicious, cfg.hospitals, self.data.n_classes, cfg.seed,
                                   cfg.attack_params) if attack else None
        self.spec = ModelSpec(in_channels=self.data.channels, n_classes=self.data.n_classes)
        self.spec_json = json.loads(self.spec.to_json()) | {"param_count": param_count(self.spec)}
        self.hp = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum)
        self.root = root_dataset(self.data.val.images, self.data.val.labels, cfg.root_size, seed=cfg.seed)
        if cfg.dataset:  # a given npz sets the sizes (e.g. digits: val 179 < root_size 200): report the real ones
            self.cfg = cfg = replace(cfg, root_size=len(self.root[1]), n_train=len(self.data.train),
                                     n_test=len(self.data.test))
        self.operator = Operator(net)
        self.clients: dict[str, HospitalClient] = {}
        self.model_checks: list[dict[str, Any]] = []
        self.audit_report: dict[str, Any] | None = None
        self.cosine_min_by_round: dict[int, dict[str, Any]] = {}

    # ---------------------------------------------------------------- setup
    def enrol(self) -> None:
        """Each hospital: its own certificate (role hospital) in the wallet, registered with its sample cap."""
        from fedchain.identity import Consortium

        shards = dirichlet_split(self.data.train.labels, self.cfg.hospitals, self.cfg.alpha, seed=self.cfg.seed,
                                 min_size=self.cfg.batch_size)
        wallet = self.net.wallet
        registered = {p["id"]: p for p in self.operator.fl.list_participants("hospital")}
        consortium = None
        for i, (hid, idx) in enumerate(zip(self.ids, shards, strict=True)):
            if not wallet.exists(hid):
                if consortium is None:
                    consortium = Consortium.load(Path(self.net.directory) / "crypto")
                org = consortium.orgs[i % len(consortium.orgs)].msp_id
                wallet.put(hid, consortium.enroll(org, hid, "hospital"))
            ident = wallet.get(hid)
            if hid not in registered:
                self.operator.fl.register_participant(participant_entry(hid, ident, "hospital", sample_cap=len(idx)))
            x, y = self.data.train.images[idx], self.data.train.labels[idx]
            if self.coalition is not None and hid in self.malicious:
                x, y = self.coalition.poison_data(x, y)
            self.clients[hid] = HospitalClient(self.net, ident, hid, x, y, Path(self.net.directory) / "hospitals" / hid,
                                               progress=self.progress)

    def genesis(self) -> tuple[float, float]:
        model = build_model(self.spec, seed=self.cfg.seed)
        if self.cfg.warmup_epochs:
            from fedchain.models import flatten, unflatten
            from fedchain.training import train_local

            w = train_local(model, *self.root, epochs=self.cfg.warmup_epochs, batch_size=self.cfg.batch_size,
                            lr=self.cfg.lr, seed=self.cfg.seed, progress=False, momentum=self.cfg.momentum)
            unflatten(model, flatten(model) + w)
        if not self.operator.ensure_genesis(self.spec_json, to_safetensors_bytes(model)):
            head = self.operator.fl.head()
            rec = self.operator.fl.get_model(head["finalized_round_id"])
            if int(rec["model_spec"]["param_count"]) != self.spec_json["param_count"]:
                raise ValueError("the network's model has another parameter count than this demo's model; "
                                 "use a fresh network folder (--network)")
            self.out(f"network already has a model (round {head['finalized_round_id']}): continuing from it")
        head = self.operator.fl.head()
        return self.evaluate(self.operator.fl.get_model(head["finalized_round_id"])["model"])

    def settle_previous_round(self) -> None:
        """On a reused network a round may have been left OPEN or CLOSED (rounds run one at a time):
        close it and wait until the MPC nodes finish it, so this demo's rounds can start."""
        fl = self.operator.fl
        last = int(fl.head()["last_round_id"])
        if not last:
            return
        rnd = fl.get_round(last)
        if rnd["state"] in TERMINAL_STATES:
            return
        self.out(f"round {last} was left {rnd['state']}: closing it and waiting for the MPC nodes")
        if rnd["state"] == "OPEN":
            retry_mvcc(lambda: fl.close_round(last), done=lambda: fl.get_round(last)["state"] != "OPEN")
        try:
            rnd, model = self.operator.wait_published(last, self.cfg.round_timeout_s)
            if model is None:  # FAILED: no model; the next round builds on the last finalized model
                self.out(f"warning: {self._failed_note(rnd)}")
        except RuntimeError as exc:  # DISPUTED also ends a round; the next one builds on the last finalized model
            self.out(f"warning: {exc}")

    @staticmethod
    def _failed_note(rnd: dict[str, Any]) -> str:
        agreed = rnd.get("agreed") or {}
        if rnd["state"] == "DISPUTED":
            return (f"round {rnd['round_id']} DISPUTED ({rnd.get('dispute_reason')}): the MPC nodes refused to "
                    f"publish its aggregate; no new model, the next round builds on round "
                    f"{rnd.get('base_round_id')}'s model")
        floor = (rnd.get("policy") or {}).get("min_accepted")
        return (f"round {rnd['round_id']} FAILED ({rnd.get('failure_reason')}): {len(agreed.get('accepted') or [])} "
                f"update(s) accepted, the privacy floor is {floor}; no new model, the next round builds on "
                f"round {rnd.get('base_round_id')}'s model")

    def evaluate(self, model_bytes: bytes) -> tuple[float, float]:
        return evaluate(load_model_bytes(model_bytes, self.spec), self.data.test.images, self.data.test.labels)

    # ---------------------------------------------------------------- a round
    def run_round(self) -> RoundRecord:
        cfg, op = self.cfg, self.operator
        t_start = time.perf_counter()
        timings = {"train": 0.0, "share": 0.0, "mpc": 0.0, "ledger": 0.0}
        head = op.fl.head()
        rid = int(head["last_round_id"]) + 1
        base = op.fl.get_model(head["finalized_round_id"])
        t0 = time.perf_counter()
        ref = reference_update(load_model_bytes(base["model"], self.spec), *self.root, self.hp,
                               seed=cfg.seed * 7 + rid)
        cosine_min, public = self._cosine_min(base["model"], rid)
        self.cosine_min_by_round[rid] = {"cosine_min": cosine_min} | {
            k: public[k] for k in ("root_split_cosine",) if k in public}
        timings["train"] += time.perf_counter() - t0
        settings = replace(cfg.policy, defense=cfg.defense, cosine_min=cosine_min)
        policy = settings.round_policy(float(np.linalg.norm(ref.vector))).to_dict()
        if self.policy_check is not None:
            self.policy_check(policy)
        hyper = json.loads(self.hp.to_json()) | {"seed": cfg.seed, "reference_sha256": ref.sha256,
                                                 "root_size": len(self.root[1])} | public
        t0 = time.perf_counter()
        op.create_round(rid, head["model_hash"], self.spec_json, hyper, policy, cfg.deadline_s,
                        min(cfg.min_updates, cfg.hospitals))
        publish_reference(self.net, op.fl, rid, ref.vector)
        timings["ledger"] += time.perf_counter() - t0

        prepared, train_s, share_s = self._prepare_all(rid)
        timings["train"] += train_s
        timings["share"] += share_s
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(prepared)) as pool:
            results = list(pool.map(self._deliver, prepared.items()))
        outcomes = [o for o in results if o is not None]
        if not outcomes:
            raise RuntimeError(f"round {rid}: no hospital could deliver its update")
        deliver_s = time.perf_counter() - t0
        sent = sum(o.timings_s.get("share", 0.0) for o in outcomes)
        committed = sum(o.timings_s.get("ledger", 0.0) for o in outcomes)
        # concurrent: split the wall time of delivery in proportion to the two parts
        frac = sent / (sent + committed) if sent + committed > 0 else 0.5
        timings["share"] += deliver_s * frac
        timings["ledger"] += deliver_s * (1 - frac)

        t0 = time.perf_counter()
        op.fl.close_round(rid)
        t1 = time.perf_counter()
        timings["ledger"] += t1 - t0
        rnd, model = op.wait_published(rid, cfg.round_timeout_s)
        timings["mpc"] = time.perf_counter() - t1
        if model is None:  # FAILED (too few accepted) or aggregate out of range: the model stays the base model
            self.out(f"warning: {self._failed_note(rnd)}")
            agreed = rnd.get("agreed") or {}
            acc, loss = self.evaluate(base["model"])
            timings["total"] = time.perf_counter() - t_start
            return RoundRecord(round=rid, accuracy=acc, loss=loss, accepted=list(agreed.get("accepted") or []),
                               rejected=dict(agreed.get("rejected") or {}), malicious=list(self.malicious),
                               model_hash=rnd["base_model_hash"], timings_s=timings)
        fin = rnd["finalized"]
        if model["sha256"] != fin["model_hash"]:
            raise RuntimeError(f"round {rid}: published model {model['sha256']} is not the finalized {fin['model_hash']}")
        self._check_hospital_view(rid, fin["model_hash"])
        acc, loss = self.evaluate(model["model"])
        timings["total"] = time.perf_counter() - t_start
        return RoundRecord(round=rid, accuracy=acc, loss=loss, accepted=list(fin["accepted"]),
                           rejected=dict(fin["rejected"]), malicious=list(self.malicious),
                           model_hash=fin["model_hash"], timings_s=timings)

    def _cosine_min(self, base_model: bytes, rid: int) -> tuple[float, dict[str, Any]]:
        """(this round's cosine_min, public hyperparameters that let anyone recompute it)."""
        cfg = self.cfg
        if not cfg.cosine_min_auto:
            return float(cfg.policy.cosine_min), {}
        al = root_split_alignment(load_model_bytes(base_model, self.spec), *self.root, self.hp,
                                  seed=cfg.seed * 7 + rid)
        value = auto_cosine_min(al.split_cosine, cfg.auto_cosine_lo, cfg.auto_cosine_hi)
        return value, {"cosine_min_rule": f"clamp(a^2, {cfg.auto_cosine_lo:g}, {cfg.auto_cosine_hi:g}), "
                                          "a = cos(root half A update, root half B update)",
                       "root_split_cosine": round(al.split_cosine, 6), "root_split_sha256": [al.sha256_a, al.sha256_b],
                       "reference_seed": cfg.seed * 7 + rid, "cosine_min": value}

    def _deliver(self, item: tuple[str, Prepared | RoundOutcome]) -> RoundOutcome | None:
        """One hospital's delivery; a failure leaves that hospital out of the round (said on stderr)."""
        hid, p = item
        if not isinstance(p, Prepared):
            return p
        try:
            return self.clients[hid].deliver(p)
        except Exception as exc:  # the round goes on without it, as it would in production
            self.out(f"warning: {hid} could not deliver its round {p.state.round_id} update: {exc}")
            return None

    def _prepare_all(self, rid: int) -> tuple[dict[str, Prepared | RoundOutcome], float, float]:
        """Train every hospital (one at a time); the coalition crafts its updates from its own benign ones."""
        prepared: dict[str, Prepared | RoundOutcome] = {}
        benign: dict[str, np.ndarray] = {}
        t0 = time.perf_counter()
        crafting = self.coalition is not None and self.coalition.rewrites_updates
        if crafting:
            rnd = self.clients[self.malicious[0]].fl.get_round(rid)
            for hid in self.malicious:
                c = self.clients[hid]
                model, _ = c.fetch_base_model(rnd)
                benign[hid] = c.compute_update(rnd, model)
            poisoned = self.coalition.craft(benign)
        for hid in self.ids:
            fn = Coalition.fixed(poisoned[hid]) if crafting and hid in self.malicious else None
            prepared[hid] = self.clients[hid].prepare(rid, update_fn=fn)
        wall = time.perf_counter() - t0
        share = sum(p.timings_s.get("share", 0.0) for p in prepared.values() if isinstance(p, Prepared))
        return prepared, wall - share, share

    def _check_hospital_view(self, rid: int, ledger_hash: str) -> None:
        """A hospital fetches the new model the way it will as next round's base: hashes must agree."""
        c = self.clients[self.ids[0]]
        rec = c.fl.get_model(rid)  # GetModel bytes checked against the recorded SHA-256
        loaded = hashlib.sha256(rec["model"]).hexdigest()
        self.model_checks.append({"round": rid, "ledger_model_hash": ledger_hash, "hospital_loaded_hash": loaded,
                                  "equal": loaded == ledger_hash})
        if loaded != ledger_hash:
            raise RuntimeError(f"round {rid}: hospital loaded model {loaded}, ledger says {ledger_hash}")

    # ---------------------------------------------------------------- all
    def run(self, on_round: Callable[[RoundRecord], None] | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.enrol()
        acc0, _ = self.genesis()
        self.settle_previous_round()
        records: list[RoundRecord] = []
        for _ in range(self.cfg.rounds):
            rec = self.run_round()
            records.append(rec)
            if on_round is not None:
                on_round(rec)
        config = self.cfg.as_dict() | {
            "network": str(self.net.directory), "network_kind": self.net.kind, "hospital_ids": self.ids,
            "malicious_ids": self.malicious, "model_spec": self.spec_json,
            "attack_description": self.coalition.attack.description if self.coalition else None,
            "attack_knowledge": KNOWLEDGE_NOTE if self.coalition and self.coalition.attack.omniscient else None,
        }
        report = build_report(config, records, baseline_accuracy=acc0)
        report["model_checks"] = self.model_checks
        for r in report["rounds"]:  # the threshold each round used (also in its hyperparameters on the ledger)
            r.update(self.cosine_min_by_round.get(r["round"], {}))
        report["audit"] = self.audit()
        report["wall_time_s"] = round(time.perf_counter() - t0, 2)
        return report

    def audit(self) -> dict[str, Any]:
        """Re-validate the whole chain from outside, as the consortium's auditor would (fedchain audit verify)."""
        from fedchain.audit.report import run_audit

        with self.net.connect("auditor") as gw:
            self.audit_report = run_audit(gw.network(self.net.channel), self.net.chaincode)
        chain, fl = self.audit_report["chain"], self.audit_report["fl"]
        return {"ok": self.audit_report["ok"], "blocks": chain["height"], "transactions": chain["transactions"],
                "validation_codes": chain["validation_codes"], "findings": chain["findings"] + fl["findings"]}

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.operator.close()
