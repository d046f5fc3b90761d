"""Agreement with the plaintext pipeline over 100 random trials (crafted field elements included),
three MPyC parties as processes (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fedchain_mpc.bench import free_ports

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_three_party_accept_bits_equal_plaintext_over_100_trials(tmp_path: Path) -> None:
    ports = free_ports(3)
    args = [a for port in ports for a in ("-P", f"127.0.0.1:{port}")]
    out = tmp_path / "summary.json"
    env = dict(os.environ, FC_TRIALS="100", FC_OUT=str(out), OPENBLAS_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, str(HERE / "mpc_core_party.py"), *args, "-I", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(3)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=500)
            assert p.returncode == 0, err.decode()[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    s = json.loads(out.read_text())
    assert s["mismatches"] == 0, s
    assert s["compared"] >= 85 and s["rejected"] >= 30 and s["crafted"] >= 10, s
    assert s["max_abs_error"] <= 1e-5, s
