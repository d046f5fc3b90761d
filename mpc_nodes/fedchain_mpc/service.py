"""One MPC node at work: the share intake, the round worker and the ledger connection, started and stopped together.

`NodeService` wires the parts (ledger adapter, share store, node state, ledger guard, intake, round
worker); `run` is the process's life: start the intake, print "READY <host:port>" on stdout (the network
launcher waits for that line), follow rounds until SIGTERM/SIGINT. Logs go to stderr (or the config's
log_file): ids, sizes, hashes and timings only, never share values or decoded numbers.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from fedchain.gateway import FileCheckpoint
from fedchain.gateway.watermark import LedgerRollback, LedgerWatermark
from fedchain.identity import Consortium

from fedchain_mpc.config import ConfigError, NodeConfig
from fedchain_mpc.guard import LedgerGuard
from fedchain_mpc.intake import IntakeSettings, ShareIntake, serve
from fedchain_mpc.ledger_adapter import FLLedger, LedgerError, LedgerView
from fedchain_mpc.node import RoundContext, RoundProcessor, RoundWorker
from fedchain_mpc.store import NodeState, ShareStore

log = logging.getLogger("fedchain_mpc")


def check_membership(ledger: LedgerView, cfg: NodeConfig, signer: Any) -> str:
    """This node's on-ledger id; raises if the ledger's consortium disagrees with node.json."""
    cons = ledger.get_consortium()
    nodes = cons.mpc_nodes
    if len(nodes) != cfg.m:
        raise ConfigError(f"the ledger lists {len(nodes)} MPC nodes, node.json has {cfg.m} MPC parties")
    if cons.threshold != cfg.runner.threshold:
        raise ConfigError(f"ledger threshold {cons.threshold} differs from node.json's {cfg.runner.threshold}")
    me = nodes[cfg.node_index]
    if (me.msp_id, me.identity) != (signer.msp_id, signer.identity.fabric_id):
        raise ConfigError(f"MPC node {cfg.node_index} on the ledger is {me.id} with another identity than "
                          f"this node's wallet identity")
    return me.id


class NodeService:
    """One node's parts, wired once: its ledger view (FLLedger unless given), share store, round state,
    ledger guard, share intake and, once the ledger knows this node, the round worker."""

    def __init__(self, cfg: NodeConfig, ledger: LedgerView | None = None, events: Any = None) -> None:
        self.cfg = cfg
        self.signer = cfg.signing_identity()
        self.consortium = Consortium.load(cfg.crypto_dir)
        self._gateway = None
        if ledger is None:
            from fedchain.netconfig import load_network

            ledger, self._gateway = FLLedger.connect(load_network(cfg.network_dir), self.signer)
        self.ledger = ledger
        self.store = ShareStore(cfg.data_dir)
        self.state = NodeState(cfg.data_dir / "state.sqlite")
        self.checkpoint = FileCheckpoint(cfg.data_dir / "events.checkpoint.json")
        try:
            watermark = LedgerWatermark(cfg.data_dir / "ledger.watermark.json")
        except LedgerRollback as exc:
            raise ConfigError(str(exc)) from None
        self.guard = LedgerGuard(watermark, self.ledger)
        settings = IntakeSettings(node_id=cfg.node_id, node_index=cfg.node_index, m=cfg.m, t=cfg.runner.threshold,
                                  l=cfg.l, f=cfg.f, max_message_bytes=cfg.max_message_bytes)
        self.intake = ShareIntake(settings, self.store, self.ledger, self.consortium.msp_manager(), self.signer,
                                  ledger_refusal=lambda: self.guard.failure)
        self.server = None
        self.worker: RoundWorker | None = None
        self.fatal: str | None = None
        self._stop = threading.Event()

    def start_intake(self) -> str:
        self.server, port = serve(self.intake, self.cfg.listen, self.cfg.tls_cert.read_bytes(),
                                  self.cfg.tls_key.read_bytes())
        host = self.cfg.listen.rpartition(":")[0]
        return f"{host}:{port}"

    def start_rounds(self) -> None:
        """Wait until the ledger knows this node (consortium initialized), then follow rounds."""
        while not self._stop.is_set():
            try:
                node_id = check_membership(self.ledger, self.cfg, self.signer)
                break
            except LedgerError as exc:
                log.info("waiting for the consortium on the ledger: %s", exc)
                self._stop.wait(self.cfg.poll_s)
            except ConfigError as exc:  # the consortium record is typed: only a mismatch is left to refuse
                log.error("this node does not match the consortium on the ledger: %s", exc)
                self.fatal = str(exc)
                return
        else:
            return
        ctx = RoundContext(node_id=node_id, node_index=self.cfg.node_index, m=self.cfg.m,
                           t=self.cfg.runner.threshold, l=self.cfg.l, f=self.cfg.f, data_dir=self.cfg.data_dir,
                           reference_dir=self.cfg.reference_dir)
        processor = RoundProcessor(ctx, self.ledger, self.store, self.state, self.cfg.runner, self.signer,
                                   self.cfg.peers, guard=self.guard)
        self.worker = RoundWorker(processor, self.ledger, poll_s=self.cfg.poll_s)
        self.worker.start()
        self.worker.follow_events(lambda: self.ledger.events(self.checkpoint), self.checkpoint)
        log.info("MPC node %s (index %d of %d) follows rounds", node_id, self.cfg.node_index, self.cfg.m)

    def stop(self) -> None:
        self._stop.set()
        if self.worker:
            self.worker.stop()
        if self.server:
            self.server.stop(grace=2).wait()
        self.state.close()
        if self._gateway is not None:
            self._gateway.close()


def setup_logging(cfg: NodeConfig, level: str) -> None:
    handler: logging.Handler = logging.FileHandler(cfg.log_file) if cfg.log_file else logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s mpc{cfg.node_index} %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)


def run(cfg: NodeConfig, log_level: str = "INFO") -> int:
    """Run the node until SIGTERM/SIGINT (or a fatal mismatch with the ledger); the process's exit code."""
    setup_logging(cfg, log_level)
    try:
        service = NodeService(cfg)
        address = service.start_intake()
    except (ConfigError, OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    print(f"READY {address}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    rounds = threading.Thread(target=service.start_rounds, name="start", daemon=True)
    rounds.start()
    while not stop.is_set() and service.fatal is None:
        stop.wait(0.5)
    log.info("stopping")
    service.stop()
    time.sleep(0.1)
    return 1 if service.fatal else 0
