"""Fabric nodes as background services (ready when their port accepts), and one-shot admin commands."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fedchain.netctl.process import NetworkError, Service


class CommandError(NetworkError):
    """An admin command (configtxgen, osnadmin, peer ...) failed; carries its output."""


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class PortService(Service):
    """Fabric binaries print no READY line: ready means every listed port accepts connections."""

    ready_ports: Sequence[int] = ()
    ready_host: str = "127.0.0.1"

    def _ready(self, offset: int) -> bool:
        return all(port_accepts(self.ready_host, p) for p in self.ready_ports)


def run_command(argv: Sequence[str], env: Mapping[str, str], log_file: Path, *, timeout: float = 120.0,
                what: str = "", cwd: Path | None = None) -> str:
    """Run one admin command, append its output to the setup log, raise CommandError on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        proc = subprocess.run(list(argv), env=dict(env), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, cwd=cwd)
    except FileNotFoundError as exc:
        raise CommandError(f"{what or argv[0]}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{what or argv[0]} did not finish within {timeout:.0f} s") from exc
    output = (proc.stdout or "") + (proc.stderr or "")
    with open(log_file, "a") as log:
        log.write(f"$ {' '.join(argv)}  # {what} ({time.monotonic() - started:.1f} s, exit {proc.returncode})\n")
        log.write(output if output.endswith("\n") or not output else output + "\n")
    if proc.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-15:])
        raise CommandError(f"{what or argv[0]} failed (exit {proc.returncode}); see {log_file}:\n{tail}")
    return output


def _channel_metric(host: str, operations_port: int, name: str, channel: str, timeout: float) -> float | None:
    """One per-channel Prometheus metric of a node's operations endpoint; None if unreadable, 0 if absent."""
    import urllib.request

    label = f'channel="{channel}"'
    try:
        with urllib.request.urlopen(f"http://{host}:{operations_port}/metrics", timeout=timeout) as resp:
            text = resp.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in text.splitlines():
        if f"{name}{{" in line and label in line and not line.startswith("#"):
            try:
                return float(line.split()[-1])
            except ValueError:
                return None
    return 0.0


def raft_leader_elected(host: str, operations_port: int, channel: str, timeout: float = 2.0) -> bool:
    """Whether the (single) orderer leads `channel`'s Raft cluster: before that it refuses every
    broadcast ("no Raft leader"), which a restart hits for a few seconds after the process is up."""
    return (_channel_metric(host, operations_port, "consensus_etcdraft_is_leader", channel, timeout) or 0) >= 1


def gossip_peers_known(host: str, operations_port: int, channel: str, timeout: float = 2.0) -> int | None:
    """Other peers this peer knows on `channel` (Prometheus metric of the operations endpoint); None if unreadable.

    The gateway endorses with other orgs' peers only once gossip (seeded by the anchor peers in the
    channel config) has found them, so `up` waits for this before it reports the network ready.
    """
    value = _channel_metric(host, operations_port, "gossip_membership_total_peers_known", channel, timeout)
    return None if value is None else int(value)
