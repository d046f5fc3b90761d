"""Start/stop a devnet process and wait for its READY line (tests, benchmark, `fedchain network`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path


class DevnetStartError(RuntimeError):
    """The devnet exited or stayed silent before READY; carries the tail of its log."""


class DevnetProcess:
    def __init__(self, config_path: str | os.PathLike, *, log_path: str | os.PathLike | None = None,
                 env: dict[str, str] | None = None, python: str = sys.executable) -> None:
        self.config_path = Path(config_path)
        self.log_path = Path(log_path) if log_path else self.config_path.with_suffix(".log")
        self.env = env
        self.python = python
        self.proc: subprocess.Popen | None = None
        self.endpoint: str | None = None

    def start(self, timeout: float = 60.0) -> str:
        """Launch and return the gateway endpoint once READY."""
        log = open(self.log_path, "ab")
        env = dict(os.environ, **(self.env or {}))
        self.proc = subprocess.Popen(
            [self.python, "-m", "fedchain_devnet", "--config", str(self.config_path)],
            stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True)
        log.close()
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        text = line[0].decode().strip() if line else ""
        if not text.startswith("READY "):
            self.kill()
            raise DevnetStartError(f"devnet did not become ready (exit {self.proc.returncode}); log tail:\n"
                                   + self.log_tail())
        self.endpoint = text.split(" ", 1)[1]
        threading.Thread(target=self._drain, daemon=True).start()
        return self.endpoint

    def _drain(self) -> None:
        for _ in self.proc.stdout:
            pass

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait (clean shutdown: accepted transactions are ordered first)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash the ledger must survive."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> DevnetProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
