"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from fedchain.netctl.process import port_is_free
from hypothesis import settings

# CI replays a fixed set of examples (a submission must not fail on a new random draw);
# developers' runs keep exploring, and failures they find are pinned with @example.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _mpyc_without_pickle() -> Iterator[None]:
    """In-process (one-party) MPyC runs use the same pickle-free wire as the party processes, so a value
    the codec cannot carry fails here too (fedchain_mpc.safe_wire)."""
    import sys

    if "mpyc.runtime" in sys.modules:
        from fedchain_mpc.safe_wire import harden

        harden()
    yield


def find_free_port_base(span: int = 30) -> int:
    """A base port with `span` free ports after it (embedded networks use base+1 .. base+22)."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 45000, 50)
        if all(port_is_free("127.0.0.1", base + k) for k in range(span)):
            return base
    raise RuntimeError("no free range of ports on 127.0.0.1")


def random_npz(path: Path, n_train: int, n_val: int, n_test: int, n_classes: int, labels: str = "int64") -> Path:
    """A MedMNIST-format npz of random 28x28 grey images (seed 0), labels cycling 0..n_classes-1 as N x 1
    `labels` arrays: the --dataset / --root-data file a CLI test points a command at."""
    import numpy as np
    from fedchain.data.npz import save_npz

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        arrays[f"{split}_images"] = rng.integers(0, 255, size=(n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % n_classes).reshape(-1, 1).astype(labels)
    return save_npz(path, arrays)


def run_mpyc_parties(script: Path, env: dict[str, str], timeout: float, parties: int = 3) -> None:
    """Run `script` as `parties` MPyC parties on free 127.0.0.1 ports (-P list, -I i); every party must
    exit 0 (its stderr tail is the assertion message); none is left running."""
    import subprocess
    import sys

    from fedchain.netctl.process import free_ports

    args = [a for port in free_ports(parties) for a in ("-P", f"127.0.0.1:{port}")]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", **env)
    procs = [subprocess.Popen([sys.executable, str(script), *args, "-I", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(parties)]
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture()
def free_port_base() -> int:
    return find_free_port_base()


@contextlib.contextmanager
def running_network(root: Path, *, with_mpc: bool, ready_timeout: float = 120.0) -> Iterator:
    """An embedded network (EmbeddedNetwork) on free ports in `root`, stopped on exit."""
    from fedchain.netctl.embedded import EmbeddedNetwork, EmbeddedSettings

    net = EmbeddedNetwork(root, EmbeddedSettings(base_port=find_free_port_base(), with_mpc=with_mpc))
    net.up(ready_timeout=ready_timeout)
    try:
        yield net
    finally:
        net.down()
