"""Ledger-integrity costs: `audit verify` per 1,000 transactions and the devnet's start-up state check.

Two measurements, each in its own process (both report wall and CPU seconds):
- the offline audit (chain, policies, timestamps, FL rules, world-state rebuild) of a synthetic
  signed chain of 50 hospitals x 80 rounds (`python -m fedchain.audit.bench`);
- the devnet's start-up verification (hash chain, replay of every write set, comparison with the
  state DB) for 100 and 1,000 blocks with a 4 MiB model every 50 blocks
  (`python -m fedchain_devnet.startbench`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(argv: list[str], out: Path) -> dict:
    code = subprocess.call([sys.executable, "-m", *argv, "--json", str(out)])
    if code or not out.exists():
        return {"error": f"{' '.join(argv)} exited {code}"}
    return json.loads(out.read_text())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, metavar="PATH")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audit = _run(["fedchain.audit.bench", "--hospitals", "50", "--rounds", "80"], Path(tmp) / "audit.json")
        start = _run(["fedchain_devnet.startbench", "--blocks", "100", "1000"], Path(tmp) / "start.json")
    result = {"audit_verify_offline": audit, "devnet_start_check": start}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if "error" not in audit and "error" not in start else 1


if __name__ == "__main__":
    sys.exit(main())
