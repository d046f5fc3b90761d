"""Opening a product of two sharings reveals only its value (mpcops._rerandomize), three parties.

A degree-2t sharing made of local products u(x) w(x) has alpha_u alpha_w as its x^2 coefficient
(t = 1); a party that sees all shares of it (trunc_batch opens them) learns that coefficient, which
ties small secret factors to its own shares. After adding a pseudorandom sharing of zero the
opened polynomial still has the product as its value but an unrelated x^2 coefficient."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_mpyc_parties

HERE = Path(__file__).resolve().parent


def _coefficients(ys: list[int], p: int) -> list[int]:
    """Coefficients (c0, c1, c2) of the degree-2 polynomial through (1, y1), (2, y2), (3, y3) mod p."""
    y1, y2, y3 = ys
    c2 = (y3 - 2 * y2 + y1) * pow(2, -1, p) % p
    c1 = (y2 - y1 - 3 * c2) % p
    c0 = (y1 - c1 - c2) % p
    return [c0, c1, c2]


def test_rerandomized_product_hides_the_x2_coefficient(tmp_path: Path) -> None:
    run_mpyc_parties(HERE / "mpc_core_przs_party.py", {"FC_OUT": str(tmp_path)}, timeout=120)
    parts = [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(3)]
    assert all(x["degree"] == 2 for x in parts)
    from mpyc.runtime import mpc

    p = mpc.SecInt(48).field.modulus
    for k in range(len(parts[0]["u"])):
        cu = _coefficients([x["u"][k] for x in parts], p)
        cw = _coefficients([x["w"][k] for x in parts], p)
        assert cu[2] == cw[2] == 0  # degree-1 sharings
        raw = _coefficients([x["prod"][k] for x in parts], p)
        assert raw[0] == cu[0] * cw[0] % p and raw[2] == cu[1] * cw[1] % p  # what an opening would show
        rer = _coefficients([x["rer"][k] for x in parts], p)
        assert rer[0] == cu[0] * cw[0] % p  # the value is unchanged
        assert rer[2] != cu[1] * cw[1] % p and rer[1] != raw[1]  # the rest no longer tells the factors
