"""`python -m fedchain.simulation`: the command is fedchain.cli.simulate (the CLI layer may import the MPC
nodes' plaintext reference, this package may not: DESIGN.md §1). `main` and `plaintext_verdicts` stay
importable from here for bench/ scripts and tests that use them."""

import sys

from fedchain.cli.simulate import main, plaintext_verdicts

__all__ = ["main", "plaintext_verdicts"]

if __name__ == "__main__":
    sys.exit(main())
