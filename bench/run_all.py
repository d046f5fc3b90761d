"""`make bench`: run every benchmark and print its figures (not a test: no pass/fail on speed).

Each bench/bench_*.py is run as its own process (they start their own networks / MPC
parties) with a JSON result written under bench/results/.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    benches = sorted(HERE.glob("bench_*.py"))
    if len(sys.argv) > 1:
        benches = [b for b in benches if any(arg in b.name for arg in sys.argv[1:])]
    failed = []
    for bench in benches:
        print(f"\n=== {bench.stem} ===", flush=True)
        started = time.monotonic()
        out = results / f"{bench.stem}.json"
        code = subprocess.call([sys.executable, str(bench), "--json", str(out)])
        print(f"--- {bench.stem}: exit {code}, {time.monotonic() - started:.1f} s, results in {out}")
        if code:
            failed.append(bench.stem)
    if failed:
        print(f"\nbenchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
