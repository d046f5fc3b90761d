"""Sharing codec: field = MPyC's, fixed-point range, Shamir shares, strict share format, share privacy."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from fedchain import sharing
from mpyc import thresha
from mpyc.runtime import mpc


def test_field_is_mpyc_secfxp_field() -> None:
    for l, f in ((32, 16), (48, 24), (24, 12)):  # noqa: E741
        assert sharing.field_modulus(l, f) == mpc.SecFxp(l, f).field.modulus


def test_encode_decode_precision_and_range() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 100, 5000)
    x[:4] = [-32767.99, 32767.99, 0.0, -1e-9]
    err = np.max(np.abs(sharing.decode(sharing.encode(x)) - x))
    assert err <= 2.0 ** -17 + 1e-12
    with pytest.raises(ValueError, match="outside the fixed-point range"):
        sharing.encode(np.array([1.0, 32768.0]))
    with pytest.raises(ValueError, match="NaN"):
        sharing.encode(np.array([np.nan]))
    with pytest.raises(ValueError, match="1-D"):
        sharing.encode(np.zeros((2, 2)))


def test_negative_encoding_is_p_minus_magnitude() -> None:
    p = sharing.field_modulus()
    v = sharing.to_ints(sharing.encode(np.array([-1.0, -2.0 ** -16, 3.5])))
    assert list(v) == [p - 2 ** 16, p - 1, int(3.5 * 2 ** 16)]


@pytest.mark.parametrize("t,m", [(1, 3), (2, 5), (0, 1)])
def test_split_recombines_from_any_t_plus_1(t: int, m: int) -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(0, 1, 300)
    enc = sharing.encode(x)
    shares = sharing.split(enc, t, m, rng=rng)
    for start in range(m - t):
        subset = {j: shares[j] for j in range(start, start + t + 1)}
        assert np.array_equal(sharing.to_ints(sharing.recombine(subset)), sharing.to_ints(enc))
    if t > 0:  # t shares alone do not determine the secret (with t=1, one share is not the secret)
        assert not np.array_equal(sharing.to_ints(shares[0]), sharing.to_ints(enc))


def test_shares_follow_mpyc_convention() -> None:
    """Share j at evaluation point j+1: MPyC's own recombination gives the secret."""
    fld = mpc.SecFxp(32, 16).field
    enc = sharing.encode(np.linspace(-3, 3, 50))
    shares = sharing.split(enc, 1, 3)
    points = [(j + 1, list(sharing.to_ints(shares[j]))) for j in (0, 2)]
    got = thresha.np_recombine(fld, points)
    assert [int(v) % fld.modulus for v in got] == list(sharing.to_ints(enc))


def _header(**kw: object) -> sharing.ShareHeader:
    base = dict(round_id="r1", hospital_id="h1", node_index=1, dim=64)
    base.update(kw)
    return sharing.ShareHeader(**base)  # type: ignore[arg-type]


def test_share_bytes_roundtrip_and_hash() -> None:
    sh = sharing.split(sharing.encode(np.arange(64) / 7.0), 1, 3)[1]
    data = sharing.share_bytes(sh, _header())
    assert len(data) < 10 * 64 + 200
    hdr, arr = sharing.parse_share(data, expected={"round_id": "r1", "node_index": 1})
    assert hdr == _header()
    assert np.array_equal(arr.hi, sh.hi) and np.array_equal(arr.lo, sh.lo)
    assert sharing.share_bytes(sh, _header()) == data  # deterministic bytes → stable ledger hash
    assert len(sharing.sha256_hex(data)) == 64


def _rebuild(header: dict, body: bytes) -> bytes:
    hj = json.dumps(header).encode()
    return b"FCSH" + struct.pack("<BI", 1, len(hj)) + hj + body


def test_parse_share_rejects_malformed() -> None:
    sh = sharing.split(sharing.encode(np.zeros(8)), 1, 3)[0]
    good = sharing.share_bytes(sh, _header(dim=8, node_index=0))
    hdr_ok = json.loads(good[9:9 + struct.unpack_from("<I", good, 5)[0]])
    body = good[9 + struct.unpack_from("<I", good, 5)[0]:]
    bad_cases = {
        "bad magic": b"XXXX" + good[4:],
        "truncated": good[:-1],
        "extra": good + b"\0",
        "version": good[:4] + b"\x02" + good[5:],
        "header json": good[:9] + b"[" + good[10:],
        "unknown key": _rebuild({**hdr_ok, "extra": 1}, body),
        "type": _rebuild({**hdr_ok, "dim": "8"}, body),
        "node >= m": _rebuild({**hdr_ok, "node_index": 3}, body),
        "empty id": _rebuild({**hdr_ok, "hospital_id": ""}, body),
    }
    accepted = []
    for name, data in bad_cases.items():
        try:
            sharing.parse_share(data)
        except sharing.ShareFormatError:
            continue  # refused, as it must be (any other exception fails the test)
        accepted.append(name)
    assert accepted == [], f"malformed shares accepted: {accepted}"
    p = sharing.field_modulus()
    over = sharing.from_ints(np.array([p] + [0] * 7, dtype=object))
    with pytest.raises(sharing.ShareFormatError, match=">= p"):
        sharing.parse_share(sharing.share_bytes(over, _header(dim=8, node_index=0)))
    with pytest.raises(sharing.ShareFormatError, match="hospital_id"):
        sharing.parse_share(good, expected={"hospital_id": "h2"})
    with pytest.raises(sharing.ShareFormatError, match="dim"):
        sharing.share_bytes(sh, _header(dim=9))


def test_single_share_is_statistically_uniform() -> None:
    """A node's share of a constant (all-zero or all-one) update looks uniform on [0, p)."""
    p = sharing.field_modulus()
    n = 20000
    for value in (0.0, 1.0):
        sh = sharing.split(sharing.encode(np.full(n, value)), 1, 3)[1]
        u = (sharing.to_ints(sh) / p).astype(np.float64)  # object division gives floats in [0, 1)
        counts = np.histogram(u, bins=20, range=(0.0, 1.0))[0]
        chi2 = float(np.sum((counts - n / 20) ** 2 / (n / 20)))
        assert chi2 < 50.0, chi2  # 19 dof: P(chi2 > 50) ~ 1e-4
        # the low 16 bits (where the encoded value lives) are uniform too
        low = (sh.lo & np.uint64(0xFFFF)).astype(np.float64) / 65536.0
        assert abs(low.mean() - 0.5) < 0.02


def test_field_array_helpers_roundtrip() -> None:
    p = sharing.field_modulus()
    v = np.array([0, 1, p - 1, 2 ** 64, 2 ** 64 - 1], dtype=object)
    fa = sharing.from_ints(v)
    assert isinstance(fa, sharing.FieldArray) and list(sharing.to_ints(fa)) == list(v)


def test_fixed_point_params_validated() -> None:
    with pytest.raises(ValueError):
        sharing.FixedPoint(64, 16)
    assert sharing.FixedPoint().bound == 32768.0
