"""Regenerate network/fabric/compose/docker-compose.yaml (the committed example) from the generator.

Run after changing fedchain.fabricnet's node settings: tests/fabric_compose_test.py checks the
example still matches what `fedchain network compose` writes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from fedchain.fabricnet.compose import write_compose

HEADER = """# EXAMPLE of what `fedchain network compose --network D` generates (default ports, 3 orgs).
# Generate your own: it writes D/compose/docker-compose.yaml next to D/crypto (the consortium's MSP
# folders, mounted read-only as ../crypto), configtx.yaml, the ccaas packages, chaincode-orgN.env, the MPC
# nodes' node.json and network.json (compose/mpc/), and setup.sh.
# Step by step: network/fabric/README.md, "Docker Compose (one or several hosts)".
# Regenerate: .venv/bin/python network/fabric/scripts/regen_compose_example.py
"""


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "compose" / "docker-compose.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        doc = yaml.safe_load(write_compose(Path(tmp) / "net").read_text())
    for name in ("chaincode.org1", "mpc0"):  # the services that build an image
        doc["services"][name]["build"]["context"] = "../../.."  # the repository root, seen from here
    out.write_text(HEADER + yaml.safe_dump(doc, sort_keys=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
