"""fedchain bench wan: argument checks, the error without namespaces (exit 2), and (slow, root only) a small
run across three namespace hosts whose counted rounds agree with the latency it cost; mpcops.count_median_fail
is zero exactly where count_median_test says the row passes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fedchain.netctl import netns

CAN, WHY = netns.can_create_namespaces()


def test_bench_wan_cli_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from fedchain.cli.main import main

    assert main(["bench", "wan", "--rtt", "0,x"]) == 2
    assert "bench wan" in capsys.readouterr().out
    assert main(["bench", "wan", "--rtt", "-5"]) == 2
    assert main(["bench", "wan", "--clients", "2"]) == 2
    assert main(["bench", "wan", "--rate", "fast"]) == 2


def test_bench_wan_without_namespaces_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from fedchain.cli.main import main

    monkeypatch.setattr(netns, "can_create_namespaces", lambda: (False, "network namespaces need root"))
    assert main(["bench", "wan"]) == 2
    assert "cannot create network namespaces: network namespaces need root" in capsys.readouterr().out


@pytest.mark.parametrize("upper", [False, True])
def test_count_median_fail_is_zero_exactly_where_the_row_passes(upper: bool) -> None:
    from fedchain_mpc import mpcops
    from mpyc.runtime import mpc

    rng = np.random.default_rng(7 + upper)
    n = 9
    v = rng.integers(0, 40, n) * 1000  # ties included
    rows = np.array([0, 2, 3, 5, 6, 8])
    secint = mpc.SecInt(48)

    async def body() -> tuple[list, list]:
        await mpc.start()
        try:
            x = secint.array(v)
            bits = await mpc.output(await mpcops.count_median_test(x, 40, 64, 1 << 30, rows, rows, upper, offset=3))
            fail = await mpc.output(await mpcops.count_median_fail(x, 40, 64, 1 << 30, rows, rows, upper, offset=3))
            prod = await mpcops.count_median_fail(x, 40, 64, 1 << 30, rows, rows, upper, offset=3, as_product=True)
            opened = await mpcops.open_stage(secint, [[prod.map(lambda f: f @ _pick(rows, n))]], n, rows)
            return [int(b) for b in bits], [int(f) for f in fail] + [bool(o) for o in opened[0][rows]]
        finally:
            await mpc.shutdown()

    bits, got = mpc.run(body())
    fail, opened = got[:rows.size], got[rows.size:]
    assert [f == 0 for f in fail] == [b == 1 for b in bits]
    assert opened == [b == 1 for b in bits]  # open_stage of the Product: passed iff the rule passed


def _pick(rows: np.ndarray, n: int) -> np.ndarray:
    pick = np.zeros((rows.size, n), dtype=np.int64)
    pick[np.arange(rows.size), rows] = 1
    return pick


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.skipif(not CAN, reason=WHY)
def test_bench_wan_small_run_counts_rounds_that_match_the_latency(tmp_path: Path) -> None:
    from fedchain.cli.main import main

    out = tmp_path / "wan.json"
    assert main(["bench", "wan", "--rtt", "0,60", "--clients", "4", "--dim", "500", "--no-upload",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    fast, slow = report["results"]
    assert fast["accept_equals_plaintext"] and slow["accept_equals_plaintext"] and slow["nodes_agree"]
    counted = slow["phases"]["mpc_checks"]["rounds"] + slow["phases"]["aggregate"]["rounds"]
    implied = slow["phases"]["mpc_checks"]["implied_rounds"] + slow["phases"]["aggregate"]["implied_rounds"]
    assert 30 <= counted <= 120
    assert 0.6 * counted <= implied <= 1.6 * counted, (counted, implied)  # the rounds are what the delay cost
    assert slow["phases"]["attest"]["wall_s"] >= 0.06  # a ledger transaction needs round trips too
    assert not [ns for ns in netns.list_namespaces() if ns.startswith("fcwan-")]  # everything removed
