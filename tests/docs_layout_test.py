"""The architecture page and the README's Layout name modules that exist.

Why: a map that names a renamed or deleted module sends a newcomer to a file that is not there. Every
dotted name under our packages (`fedchain.…`, `fedchain_mpc.…`, `fedchain_cc.…`, `fedchain_devnet.…`)
must import (and its attribute exist), and every backticked file or folder name must be a tracked path
or the end of one.
"""

from __future__ import annotations

import importlib
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = {
    "docs/architecture.md": None,
    "README.md": "## Layout",
}
DOTTED = re.compile(r"`((?:fedchain|fedchain_mpc|fedchain_cc|fedchain_devnet)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)`")
PATHLIKE = re.compile(r"`([A-Za-z0-9_./-]+(?:\.py|/))`")


def _text(page: str, section: str | None) -> str:
    text = (ROOT / page).read_text()
    if section is None:
        return text
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    return text[start:] if end == -1 else text[start:end]


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.split()


def resolves(dotted: str) -> bool:
    """Import the longest module prefix, then walk the attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def path_exists(name: str, tracked: list[str]) -> bool:
    """`name` is a tracked file, a folder of tracked files, or the end of one ('fl/', 'contract.py')."""
    name = name.lstrip("./")
    if name.endswith("/"):
        return any(f"/{name}" in f"/{path}" for path in tracked)
    return any(path == name or path.endswith(f"/{name}") for path in tracked)


@pytest.mark.parametrize("page, section", PAGES.items())
def test_named_modules_and_paths_exist(page: str, section: str | None) -> None:
    text = _text(page, section)
    tracked = _tracked()
    dotted = sorted(set(DOTTED.findall(text)))
    paths = sorted(set(PATHLIKE.findall(text)))
    assert paths, f"{page}: found no paths to check (the pattern no longer matches the page)"
    missing = [d for d in dotted if not resolves(d)] + [p for p in paths if not path_exists(p, tracked)]
    assert not missing, f"{page} names what does not exist: {missing}"


def test_the_checker_catches_a_missing_name() -> None:
    tracked = _tracked()
    assert resolves("fedchain.records.Round") and not resolves("fedchain.records.NoSuchRecord")
    assert not resolves("fedchain_mpc.runner")
    assert path_exists("fl/", tracked) and path_exists("party_launcher.py", tracked)
    assert not path_exists("wire/", tracked) and not path_exists("runner.py", tracked)
