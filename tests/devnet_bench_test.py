"""The benchmark harness end to end on a small load (the full run is `python -m fedchain_devnet.bench`)."""

from __future__ import annotations

import pytest
from fedchain_devnet.bench import run

pytestmark = pytest.mark.slow


def test_small_benchmark_commits_everything(tmp_path):
    result = run(tx=120, in_flight=12, orgs=3, policy="MAJORITY", batch_timeout_ms=50, max_count=100, workdir=tmp_path)
    assert result["valid"] == 120 and result["failed"] == 0
    assert result["throughput_tx_s"] > 0 and 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert 1 <= result["blocks"] <= 120
