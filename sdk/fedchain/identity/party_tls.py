"""TLS certificates for the MPyC parties of the MPC nodes (party-to-party links of a round's run).

Why here and not in the node package: the network launcher (`fedchain.netctl.mpc`) issues them when it
writes each node's configuration, and it uses only this package's CA and certificate code; the node
reads the files named in node.json (`fedchain_mpc.config`) and its launcher copies them where MPyC looks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fedchain.identity import certs
from fedchain.identity.consortium import Consortium
from fedchain.identity.crypto import private_key_to_pem
from fedchain.identity.msp import write_private


@dataclass(frozen=True)
class PartyTLS:
    """One MPyC party's TLS files."""

    cert: Path
    key: Path
    ca: Path  # all orgs' TLS CA certificates, concatenated


def issue_party_tls(consortium: Consortium, msp_id: str, index: int, folder: str | os.PathLike) -> PartyTLS:
    """A TLS pair for MPyC party `index` (SAN 'MPyC party <index>', MPyC's fixed host name), from the org's TLS CA."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    org = consortium.org(msp_id)
    key, cert = certs.issue_certificate(org.tls_ca_key, org.tls_ca_cert, f"mpyc-party-{index}", tls=True,
                                        hosts=(f"MPyC party {index}", "localhost", "127.0.0.1"))
    out = PartyTLS(folder / f"party_{index}.crt", folder / f"party_{index}.key", folder / "mpyc_ca.crt")
    out.cert.write_bytes(certs.cert_to_pem(cert))
    write_private(out.key, private_key_to_pem(key))
    out.ca.write_bytes(b"".join(consortium.tls_root_pems()))
    return out
