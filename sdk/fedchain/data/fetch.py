"""Download a real MedMNIST npz by URL and check its MD5.

The `medmnist` package (optional extra `fedchain[medmnist]`) is only used as the catalogue
of URLs and MD5s: its own dataset classes pull torchvision, which we neither need nor have.
Without the extra, pass `url` and `md5` explicitly (from medmnist.com / Zenodo).
"""

from __future__ import annotations

import hashlib
import importlib
import urllib.error
import urllib.request
from pathlib import Path

from .npz import DatasetError, load_npz


class FetchError(RuntimeError):
    """The dataset could not be fetched; the message says what to do."""


def catalogue_entry(name: str) -> tuple[str, str]:
    """(url, md5) of a MedMNIST dataset from the optional `medmnist` package's INFO table."""
    try:
        info = importlib.import_module("medmnist.info")
    except ImportError as exc:
        raise FetchError(
            "the optional `medmnist` package is not installed, so fedchain does not know the URL and MD5 of "
            f"{name!r}. Install the extra (`pip install 'fedchain[medmnist]'`) where PyPI is reachable, or pass "
            "--url and --md5 explicitly (see https://medmnist.com), or use `fedchain data synth` offline."
        ) from exc
    table = getattr(info, "INFO", {})
    flag = name.lower()
    if flag not in table:
        raise FetchError(f"unknown MedMNIST dataset {name!r}; known: {', '.join(sorted(table))}")
    entry = table[flag]
    return str(entry["url"]), str(entry["MD5"])


def fetch(name: str, out_dir: str | Path, *, url: str | None = None, md5: str | None = None,
          timeout: float = 30.0) -> Path:
    """Download NAME.npz into out_dir (atomic, MD5-checked, validated); reuse a good existing copy."""
    if url is None or md5 is None:
        url, md5 = catalogue_entry(name)
    if not url.startswith("https://"):
        raise FetchError(f"refusing non-HTTPS URL {url!r}")
    out = Path(out_dir) / f"{name.lower()}.npz"
    if out.is_file() and _md5(out) == md5.lower():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as fh:  # noqa: S310 (https only)
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"could not download {url}: {exc}. Is the internet reachable from this machine? "
                         "Offline, use `fedchain data synth`.") from exc
    if digest.hexdigest() != md5.lower():
        tmp.unlink(missing_ok=True)
        raise FetchError(f"MD5 mismatch for {url}: expected {md5}, got {digest.hexdigest()}; file discarded")
    try:
        load_npz(tmp)
    except DatasetError as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"downloaded file is not a usable MedMNIST npz: {exc}") from exc
    tmp.replace(out)
    return out


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
