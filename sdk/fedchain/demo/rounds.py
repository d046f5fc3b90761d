"""`fedchain demo`'s main job: hospitals, operator and MPC nodes run R real rounds on a network.

Everything goes through the real system: each hospital has its own enrolled identity and
gateway connection and talks only to the gateway and the MPC nodes (HospitalClient); the
operator creates and closes rounds; the MPC node processes verify, aggregate, attest and
publish. Hospitals train one after another (2 cores: parallel training only thrashes) and
deliver shares and commitments concurrently. The demo then evaluates the model the ledger
published (hash-checked) on the held-out test set.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from fedchain.campaign.driver import DriverSettings, RoundDriver, RoundResult, settle_last_round
from fedchain.campaign.genesis import initial_model
from fedchain.campaign.ledger import outcome_note
from fedchain.campaign.recipe import RoundMaker, RoundRecipe, auto_cosine_min
from fedchain.canonical import sha256_hex
from fedchain.data import Dataset, dirichlet_split, generate_synthetic, load_npz
from fedchain.fl_client import participant_entry
from fedchain.hospital import HospitalClient, Prepared, RoundOutcome
from fedchain.models import ModelSpec, load_model_bytes
from fedchain.records import Head, RoundId
from fedchain.training import TrainConfig, evaluate

from .adversary import KNOWLEDGE_NOTE, Coalition
from .config import DemoConfig
from .operator import Operator
from .report import RoundRecord, build_report, hospital_ids

__all__ = ["Demo", "DemoConfig", "auto_cosine_min", "hospital_ids", "load_data"]


def load_data(cfg: DemoConfig, net_dir: Path) -> Dataset:
    if cfg.dataset:
        return load_npz(cfg.dataset)
    path = net_dir / "data" / f"synthetic-s{cfg.seed}-n{cfg.n_train}-t{cfg.n_test}.npz"
    if not path.exists():
        generate_synthetic(path, n_train=cfg.n_train, n_val=max(200, 2 * cfg.root_size), n_test=cfg.n_test,
                           seed=cfg.seed)
    return load_npz(path)


class Demo:
    """One demo run against a running network (`net` = fedchain.netconfig.NetworkConfig)."""

    def __init__(self, cfg: DemoConfig, net: Any, *, out: Callable[[str], None] = print,
                 policy_check: Callable[[dict[str, Any]], None] | None = None, progress: bool | None = None,
                 data: Dataset | None = None) -> None:
        """`data`: the --dataset the CLI already loaded and checked (default: load cfg.dataset or synthetic data)."""
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
        self.data = data if data is not None else load_data(cfg, Path(net.directory))
        self.ids = hospital_ids(cfg.hospitals)
        attack = cfg.attack if cfg.attack and cfg.malicious else None
        self.malicious = self.ids[len(self.ids) - cfg.malicious:] if attack else []
        self.coalition = Coalition(attack, self.malicious, cfg.hospitals, self.data.n_classes, cfg.seed,
                                   cfg.attack_params) if attack else None
        from fedchain.campaign.command import default_arch

        self.spec = ModelSpec(arch=default_arch(cfg.inference_check), in_channels=self.data.channels,
                              n_classes=self.data.n_classes)
        self.hp = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum)
        # the operator's round recipe and loop are fedchain.campaign's, as for `fedchain operator run`
        recipe = RoundRecipe(train=self.hp, seed=cfg.seed, policy=replace(cfg.policy, defense=cfg.defense),
                             cosine_min_auto=cfg.cosine_min_auto, auto_cosine_lo=cfg.auto_cosine_lo,
                             auto_cosine_hi=cfg.auto_cosine_hi, inference_check=cfg.inference_check,
                             inference=dict(cfg.inference))
        self.maker = RoundMaker(recipe, self.spec, (self.data.val.images, self.data.val.labels), cfg.root_size,
                                policy_check=policy_check)
        self.root = self.maker.root
        if cfg.dataset:  # a given npz sets the sizes (e.g. digits: val 179 < root_size 200): report the real ones
            self.cfg = cfg = replace(cfg, root_size=self.root.size, n_train=len(self.data.train),
                                     n_test=len(self.data.test))
        self.spec_json = self.maker.spec_json
        self.operator = Operator(net)
        self.clients: dict[str, HospitalClient] = {}
        self.model_checks: list[dict[str, Any]] = []
        self.audit_report: dict[str, Any] | None = None
        self.cosine_min_by_round: dict[RoundId, dict[str, Any]] = {}
        self._model_checked = False

    # ---------------------------------------------------------------- setup
    def enrol(self) -> None:
        """Each hospital: its own certificate (role hospital) in the wallet, registered with its sample cap."""
        from fedchain.identity import Consortium

        shards = dirichlet_split(self.data.train.labels, self.cfg.hospitals, self.cfg.alpha, seed=self.cfg.seed,
                                 min_size=self.cfg.batch_size)
        wallet = self.net.wallet
        registered = {p.id for p in self.operator.fl.list_participants("hospital")}
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
        model = initial_model(self.spec, self.root, self.cfg.warmup_epochs, self.hp, self.cfg.seed)
        if not self.operator.ensure_genesis(self.spec_json, model):
            head = self.operator.fl.head()
            rec = self.operator.fl.get_model(self._finalized(head))
            if rec.model_spec.param_count != self.spec_json["param_count"]:
                raise ValueError("the network's model has another parameter count than this demo's model; "
                                 "use a fresh network folder (--network)")
            self.out(f"network already has a model (round {head.finalized_round_id}): continuing from it")
        return self.evaluate(self.operator.fl.get_model(self._finalized(self.operator.fl.head())).model)

    @staticmethod
    def _finalized(head: Head) -> RoundId:
        """The round of the ledger's current model (after genesis there always is one)."""
        if head.finalized_round_id is None:
            raise RuntimeError("the ledger has no model yet")
        return head.finalized_round_id

    def settle_previous_round(self) -> None:
        """On a reused network a round may have been left OPEN or CLOSED (rounds run one at a time):
        close it and wait until the MPC nodes finish it, so this demo's rounds can start."""
        settle_last_round(self.operator, self.out, self.cfg.round_timeout_s)

    _failed_note = staticmethod(outcome_note)

    def evaluate(self, model_bytes: bytes) -> tuple[float, float]:
        return evaluate(load_model_bytes(model_bytes, self.spec), self.data.test.images, self.data.test.labels)

    # ---------------------------------------------------------------- a round
    def driver(self, on_result: Callable[[RoundResult], None]) -> RoundDriver:
        """The campaign's round loop with this demo's hospitals taking part while a round is OPEN."""
        cfg = self.cfg
        settings = DriverSettings(deadline_s=cfg.deadline_s, close_after=cfg.hospitals,
                                  min_updates=min(cfg.min_updates, cfg.hospitals), round_timeout_s=cfg.round_timeout_s)
        return RoundDriver(self.operator, self.maker, settings, participate=self.take_part, on_result=on_result,
                           out=self.out, stop_on_dispute=True)

    def take_part(self, rid: RoundId) -> dict[str, float]:
        """Every hospital trains (one at a time), then all deliver at once; seconds per phase."""
        timings = {"train": 0.0, "share": 0.0, "ledger": 0.0}
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
        return timings

    def record(self, res: RoundResult) -> RoundRecord:
        """The demo's view of a finished round: accuracy of the model it ends with, hospital's hash check."""
        self.cosine_min_by_round[res.round_id] = res.cosine_min
        if res.new_model:
            self._check_hospital_view(res.round_id, res.model_hash)
        else:  # FAILED (too few accepted) or aggregate out of range: the model stays the base model
            self.out(f"warning: {res.note}")
        acc, loss = self.evaluate(res.model)
        return RoundRecord(round=res.round_id, accuracy=acc, loss=loss, accepted=res.accepted,
                           rejected=res.rejected, malicious=list(self.malicious), model_hash=res.model_hash,
                           timings_s=res.timings_s)

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

    def _prepare_all(self, rid: RoundId) -> tuple[dict[str, Prepared | RoundOutcome], float, float]:
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

    def _check_hospital_view(self, rid: RoundId, ledger_hash: str) -> None:
        """A hospital fetches the new model the way it will as next round's base: hashes must agree."""
        c = self.clients[self.ids[0]]
        rec = c.fl.get_model(rid)  # GetModel bytes checked against the recorded SHA-256
        loaded = sha256_hex(rec.model)
        self.model_checks.append({"round": rid, "ledger_model_hash": ledger_hash, "hospital_loaded_hash": loaded,
                                  "equal": loaded == ledger_hash})
        if loaded != ledger_hash:
            raise RuntimeError(f"round {rid}: hospital loaded model {loaded}, ledger says {ledger_hash}")

    # ---------------------------------------------------------------- all
    def check_network_model(self) -> None:
        """On a reused network the ledger's model must be this demo's (channels, classes, size), checked before a
        hospital is enrolled: ArgumentProblem names both, the demo's data is the argument to change."""
        from fedchain.campaign.command import ArgumentProblem

        head = self.operator.fl.head()
        self._model_checked = True
        if head.model_hash is None:
            return  # empty ledger: this demo publishes the genesis model
        record = self.operator.fl.get_model(self._finalized(head)).model_spec
        theirs = record.to_json()  # freeform but for param_count: channels and classes are the model's own keys
        keys = ("in_channels", "n_classes")
        if (record.param_count != int(self.spec_json["param_count"])
                or any(int(theirs.get(k, -1)) != int(self.spec_json[k]) for k in keys)):
            data = self.cfg.dataset or "the synthetic data"
            raise ArgumentProblem(
                f"the network in {self.net.directory} trains a model for {theirs.get('in_channels')}-channel images "
                f"and {theirs.get('n_classes')} classes ({record.param_count} parameters); {data} needs "
                f"{self.spec_json['in_channels']}-channel images and {self.spec_json['n_classes']} classes "
                f"({self.spec_json['param_count']}): use a fresh --network folder or the network's dataset")
        mine = self.spec_json.get("arch", "cnn")
        their_arch = record.arch if record.arch is not None else "cnn"
        if their_arch != mine:  # same parameters, another forward pass: not this demo's model
            flag = "without --inference-check" if self.cfg.inference_check else "with --inference-check"
            raise ArgumentProblem(
                f"the network in {self.net.directory} trains the {their_arch!r} model; this demo uses "
                f"{mine!r}: use a fresh --network folder, or run the demo {flag} as on that network")

    def data_summary(self) -> dict[str, Any]:
        """The data actually trained and evaluated on, for the report (path, split sizes, classes, channels)."""
        from .checks import summarize

        return summarize(self.data, "npz" if self.cfg.dataset else "synthetic").as_dict()

    def run(self, on_round: Callable[[RoundRecord], None] | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        if not self._model_checked:
            self.check_network_model()
        self.enrol()
        acc0, _ = self.genesis()
        self.settle_previous_round()
        records: list[RoundRecord] = []

        def finished(res: RoundResult) -> None:
            rec = self.record(res)
            records.append(rec)
            if on_round is not None:
                on_round(rec)

        start = self.operator.fl.head().last_round_id
        self.driver(finished).run(start + self.cfg.rounds)
        config = self.cfg.as_dict() | {
            "network": str(self.net.directory), "network_kind": self.net.kind, "hospital_ids": self.ids,
            "malicious_ids": self.malicious, "model_spec": self.spec_json, "data": self.data_summary(),
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
        from fedchain.audit.report import all_findings, run_audit

        with self.net.connect("auditor") as gw:
            self.audit_report = run_audit(gw.network(self.net.channel), self.net.chaincode)
        chain = self.audit_report["chain"]
        return {"ok": self.audit_report["ok"], "blocks": chain["height"], "transactions": chain["transactions"],
                "validation_codes": chain["validation_codes"], "findings": all_findings(self.audit_report)}

    def close(self) -> None:
        for c in self.clients.values():
            c.close()
        self.operator.close()
