"""Chaincode-as-a-service package for the peer's ccaas external builder, and its package id.

The package is a tar.gz with metadata.json {"type":"ccaas","label"} and code.tar.gz holding
connection.json (where the peer dials the chaincode server). Fabric 2.5 names an installed
package `<label>:<sha256 of the package file>`, so the bytes must be reproducible: fixed
mtimes, owners and order, and gzip without a timestamp. Same inputs -> same package id on
every org and every restart, which is what lets `up` compute the id before installing.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

from fedchain.canonical import sha256_hex

_LABEL_RE = re.compile(r"^[A-Za-z0-9]+([.+\-_][A-Za-z0-9]+)*$")  # Fabric's ValidateLabel


def connection_json(
    address: str,
    *,
    dial_timeout: str = "10s",
    tls_root_cert_pem: bytes | None = None,
    client_auth: bool = False,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
) -> dict[str, Any]:
    """connection.json as the ccaas builder and the peer read it (PEM contents, not paths)."""
    conn: dict[str, Any] = {"address": address, "dial_timeout": dial_timeout, "tls_required": False}
    if tls_root_cert_pem is not None:
        conn["tls_required"] = True
        conn["client_auth_required"] = client_auth
        conn["root_cert"] = tls_root_cert_pem.decode()
        if client_auth:
            if client_cert_pem is None or client_key_pem is None:
                raise ValueError("client_auth needs client_cert_pem and client_key_pem")
            conn["client_cert"] = client_cert_pem.decode()
            conn["client_key"] = client_key_pem.decode()
    return conn


def _tar_gz(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(files[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_package(label: str, connection: dict[str, Any]) -> bytes:
    """The package bytes (deterministic for the same label and connection)."""
    if not _LABEL_RE.match(label):
        raise ValueError(f"chaincode label {label!r} is not valid for Fabric (letters, digits, . + - _)")
    code = _tar_gz({"connection.json": json.dumps(connection, sort_keys=True, indent=2).encode()})
    metadata = json.dumps({"type": "ccaas", "label": label}, sort_keys=True).encode()
    return _tar_gz({"metadata.json": metadata, "code.tar.gz": code})


def package_id(label: str, package: bytes) -> str:
    """What `peer lifecycle chaincode calculatepackageid` prints for this package."""
    return f"{label}:{sha256_hex(package)}"


def write_package(folder: Path, label: str, connection: dict[str, Any]) -> tuple[Path, str]:
    """Write D/fabric/chaincode/<label>.tar.gz; returns (path, package id).

    An existing package with the same label and connection is kept byte for byte: its id is
    what the peers installed and the orgs approved, even if another zlib would compress differently.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.tar.gz"
    if path.is_file():
        try:
            old = read_package(path)
        except (OSError, tarfile.TarError, KeyError, ValueError, AttributeError):
            old = None
        if old and old["metadata"] == {"type": "ccaas", "label": label} and old["connection"] == connection:
            return path, package_id(label, path.read_bytes())
    data = build_package(label, connection)
    path.write_bytes(data)
    return path, package_id(label, data)


def read_package(path: Path) -> dict[str, Any]:
    """metadata and connection of a package (for checks and tests)."""
    with tarfile.open(path, "r:gz") as outer:
        names = outer.getnames()
        meta = json.loads(outer.extractfile("metadata.json").read())  # type: ignore[union-attr]
        code = outer.extractfile("code.tar.gz").read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(code), mode="r:gz") as inner:
        inner_names = inner.getnames()
        conn = json.loads(inner.extractfile("connection.json").read())  # type: ignore[union-attr]
    return {"names": names, "metadata": meta, "code_names": inner_names, "connection": conn}
