"""Background services with pid files and logs, readiness by a "READY" line.

Each service (devnet, chaincode server, MPC node) prints one line starting with READY
on stdout once it listens. We send its output to D/logs/NAME.log, remember its pid in
D/run/NAME.pid, and poll the log for READY, so `network up` can return while the
services keep running after the command exits.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class NetworkError(RuntimeError):
    """A network could not be started, inspected or stopped; the message is one clear line for the CLI."""


class ServiceError(NetworkError):
    """A service failed to start or stop; the message points at its log."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def address_is_local(host: str) -> bool:
    """Whether a listener can bind `host` here (an address of this host, or a name resolving to one)."""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as sock:
            try:
                sock.bind(addr)
                return True
            except OSError as exc:
                if exc.errno != errno.EADDRNOTAVAIL:
                    return True  # bindable address, just refused for another reason
    return False


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


def free_ports(k: int, host: str = "127.0.0.1") -> list[int]:
    """k distinct ports the OS reports free right now (all bound at once, so never the same twice)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(k)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as dead
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A dead process not yet reaped by its parent (e.g. init after `kill -9`); Linux /proc, else False."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].startswith(("Z", "X"))


@dataclass
class Service:
    """One background process of a network. `ports` are the listeners it binds when it starts,
    so a restart can check exactly those (and no others) are free first."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    log_dir: Path
    env: Mapping[str, str] | None = None
    ports: Sequence[int] = ()
    host: str = "127.0.0.1"
    # False: `env` is the whole environment (Fabric nodes: a stray CORE_*/ORDERER_* in the caller's shell,
    # e.g. from the peer CLI recipe, would silently override their configuration)
    inherit_env: bool = True

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and pid_alive(pid)

    def state(self) -> str:
        """running; exited (its pid file is left: it crashed or was killed, `up` restarts it); or stopped."""
        if self.running():
            return "running"
        return "exited" if self.pid_file.exists() else "stopped"

    def describe(self) -> dict[str, Any]:
        state = self.state()
        return {"running": state == "running", "state": state, "pid": self.pid(), "log": str(self.log_file)}

    def start(self, ready_timeout: float = 60.0) -> int:
        if self.running():
            raise ServiceError(f"{self.name} is already running (pid {self.pid()})")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        base = dict(os.environ) if self.inherit_env else {}
        env = {**base, **(self.env or {}), "PYTHONUNBUFFERED": "1"}
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        start_offset = log.tell()
        proc = subprocess.Popen(
            list(self.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True, close_fds=True,
        )
        log.close()
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with code {proc.returncode} during start-up; "
                    f"last lines of {self.log_file}:\n{self.tail(start_offset)}"
                )
            if self._ready(start_offset):
                return proc.pid
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"{self.name} was not ready after {ready_timeout:.0f} s; see {self.log_file}:\n"
                           f"{self.tail(start_offset)}")

    def _ready(self, offset: int) -> bool:
        with open(self.log_file, "rb") as fh:
            fh.seek(offset)
            return any(line.startswith(b"READY") for line in fh)

    def tail(self, offset: int = 0, lines: int = 20) -> str:
        try:
            with open(self.log_file, "rb") as fh:
                fh.seek(offset)
                text = fh.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM the service's process group, SIGKILL after timeout. True if it was running."""
        pid = self.pid()
        if pid is None:
            return False
        was_running = pid_alive(pid)
        if was_running:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and pid_alive(pid):
                    time.sleep(0.05)
                if not pid_alive(pid):
                    break
        self.pid_file.unlink(missing_ok=True)
        return was_running


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]
