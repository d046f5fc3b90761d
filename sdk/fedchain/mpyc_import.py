"""Import MPyC without letting it read our command line.

`import mpyc` parses sys.argv (mpyc/__init__.py: parse_known_args), so a fedchain command's own
options leaked into it: `--out` is an ambiguous prefix of MPyC's --output-file/--output-windows and
made `fedchain data synth --out F` exit with MPyC's usage; others (e.g. --base-port) silently set
MPyC options. Every SDK module that needs MPyC (the sharing codec's field) imports it through here.
The MPC parties run as their own processes (fedchain_mpc.mpc_program) with their own command lines.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

_LOCK = threading.Lock()


def import_quietly(name: str = "mpyc") -> ModuleType:
    """Import `name` (mpyc or one of its submodules) with an empty command line. Call it at module
    level: sys.argv is process-wide, and a module another thread is still importing is incomplete."""
    with _LOCK:
        saved = sys.argv
        sys.argv = saved[:1]
        try:
            return importlib.import_module(name)
        finally:
            sys.argv = saved
