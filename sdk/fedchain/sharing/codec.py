"""Fixed-point encoding, Shamir splitting over MPyC's SecFxp field, and the share file format.

Why this shape:
- The prime is the one `mpyc.runtime.mpc.SecFxp(l, f).field` uses, so node j can wrap the
  rows it receives directly as its MPyC share (evaluation point j+1, MPyC's convention).
- p < 2^80 at l=32, f=16, so a field element is stored as hi (uint16, bits 64..79) and
  lo (uint64): 10 bytes per coordinate, vectorized with numpy, no Python loop per element.
- The share file is a tiny self-describing binary format (magic, version, JSON header,
  raw little-endian arrays): no pickle, strict validation, and identical bytes for identical
  content (the SHA-256 of the bytes is what the hospital commits on the ledger).
"""

from __future__ import annotations

import functools
import json
import os
import struct
from dataclasses import asdict, dataclass

import numpy as np

from ..canonical import canonical_json
from ..mpyc_import import import_quietly

# imported here, once, under the import lock: a lazy import from concurrent gRPC handler threads let one
# thread see a partially initialized mpyc.finfields (seen in an MPC node's intake)
finfields = import_quietly("mpyc.finfields")

MAGIC = b"FCSH"
VERSION = 1
SEC_PARAM = 30  # MPyC's default -K; enters the field size
MAX_DIM = 1 << 26
_HEADER_KEYS = ("round_id", "hospital_id", "node_index", "dim", "l", "f", "t", "m", "version")


class ShareFormatError(ValueError):
    """Share bytes or a share's metadata are malformed or do not match what was expected."""


@functools.cache
def field_modulus(l: int = 32, f: int = 16) -> int:  # noqa: E741 - MPyC's name
    """The prime MPyC's SecFxp(l, f) uses (with the default security parameter 30)."""
    return int(finfields.find_prime_root(l + f + SEC_PARAM + 2, n=2)[0])


@dataclass(frozen=True)
class FixedPoint:
    """Fixed-point parameters: l bits in total, f fractional bits; |x| < 2^(l-f-1)."""

    l: int = 32  # noqa: E741
    f: int = 16

    def __post_init__(self) -> None:
        if not (8 <= self.l <= 48 and 1 <= self.f < self.l):
            raise ValueError("fixed point needs 8 <= l <= 48 and 1 <= f < l")

    @property
    def modulus(self) -> int:
        return field_modulus(self.l, self.f)

    @property
    def bound(self) -> float:
        """Largest magnitude that encodes (exclusive)."""
        return float(2 ** (self.l - self.f - 1))


@dataclass(frozen=True)
class FieldArray:
    """A vector of field elements v = hi * 2^64 + lo, 0 <= v < p."""

    hi: np.ndarray  # uint64 (values < 2^16 for p < 2^80)
    lo: np.ndarray  # uint64

    def __len__(self) -> int:
        return int(self.lo.shape[0])


def to_ints(a: FieldArray) -> np.ndarray:
    """Object array of Python ints (only where big-integer arithmetic is unavoidable)."""
    return (a.hi.astype(object) << 64) | a.lo.astype(object)


def from_ints(v: np.ndarray) -> FieldArray:
    """Inverse of to_ints; v must hold ints in [0, p)."""
    v = np.asarray(v, dtype=object)
    lo = (v & ((1 << 64) - 1)).astype(np.uint64)
    hi = (v >> 64).astype(np.uint64)
    return FieldArray(hi=hi, lo=lo)


def encode(x: np.ndarray, fp: FixedPoint = FixedPoint()) -> FieldArray:
    """round(x * 2^f) mod p for a 1-D float vector; rejects non-finite or out-of-range values."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"encode expects a 1-D vector, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("encode: update contains NaN or infinity")
    big = np.abs(x) >= fp.bound
    if np.any(big):
        i = int(np.argmax(big))
        raise ValueError(f"encode: |x[{i}]| = {abs(x[i]):g} is outside the fixed-point range "
                         f"(< {fp.bound:g} for l={fp.l}, f={fp.f})")
    q = np.rint(x * float(1 << fp.f)).astype(np.int64)
    p = fp.modulus
    neg = q < 0
    # v = q for q >= 0, p - |q| for q < 0, computed in (hi, lo) without Python ints.
    p_hi, p_lo = np.uint64(p >> 64), np.uint64(p & ((1 << 64) - 1))
    mag = np.abs(q).astype(np.uint64)
    lo = np.where(neg, p_lo - mag, mag.astype(np.uint64))
    borrow = (neg & (mag > p_lo)).astype(np.uint64)
    hi = np.where(neg, p_hi - borrow, np.uint64(0))
    return FieldArray(hi=hi.astype(np.uint64), lo=lo.astype(np.uint64))


def decode(a: FieldArray, fp: FixedPoint = FixedPoint()) -> np.ndarray:
    """Field elements back to floats (signed representatives / 2^f)."""
    p = fp.modulus
    v = to_ints(a)
    v = np.where(v > p // 2, v - p, v)
    return v.astype(np.float64) / float(1 << fp.f)


def _random_field(n: int, p: int, rng: np.random.Generator | None) -> np.ndarray:
    """n uniform field elements as Python ints (128 random bits reduced mod p: bias < 2^-48)."""
    if rng is None:
        words = np.frombuffer(os.urandom(16 * n), dtype="<u8").reshape(n, 2)
    else:
        words = rng.integers(0, 1 << 64, size=(n, 2), dtype=np.uint64)
    return ((words[:, 0].astype(object) << 64) | words[:, 1].astype(object)) % p


def split(encoded: FieldArray, t: int, m: int, fp: FixedPoint = FixedPoint(),
          rng: np.random.Generator | None = None) -> list[FieldArray]:
    """Shamir shares of degree t: share j (0-based) is the polynomial at x = j + 1.

    rng=None uses the OS CSPRNG (production); pass a Generator only in tests.
    """
    if not (0 <= t and 2 * t < m):
        raise ValueError(f"need 0 <= t and 2t < m (MPyC's honest majority), got t={t}, m={m}")
    p = fp.modulus
    s = to_ints(encoded)
    coeffs = [_random_field(len(s), p, rng) for _ in range(t)]
    shares = []
    for j in range(m):
        x = j + 1
        acc = np.zeros(len(s), dtype=object)
        for c in reversed(coeffs):  # Horner: ((c_t x + c_{t-1}) x + ...) x + s
            acc = (acc + c) * x % p
        shares.append(from_ints((acc + s) % p))
    return shares


def recombine(shares: dict[int, FieldArray], fp: FixedPoint = FixedPoint()) -> FieldArray:
    """Lagrange interpolation at 0 from {node_index: share} (any t+1 of them)."""
    p = fp.modulus
    xs = [j + 1 for j in shares]
    acc = np.zeros(len(next(iter(shares.values()))), dtype=object)
    for j, sh in shares.items():
        xj = j + 1
        num, den = 1, 1
        for xk in xs:
            if xk != xj:
                num = num * xk % p
                den = den * (xk - xj) % p
        acc = (acc + to_ints(sh) * (num * pow(den, -1, p) % p)) % p
    return from_ints(acc)


@dataclass(frozen=True)
class ShareHeader:
    """Metadata bound into the share bytes (and hence into the ledger hash).

    `round_id` is kept as the format serializes it: a string (the hospitals write the ledger's integer
    round id in decimal, `ShareHeader(str(round_id), ...)`; the format itself allows any string). In
    memory a round id is an int: read it with `round_number`, the one place that string becomes one.
    """

    round_id: str
    hospital_id: str
    node_index: int
    dim: int
    l: int = 32  # noqa: E741
    f: int = 16
    t: int = 1
    m: int = 3
    version: int = VERSION

    @property
    def round_number(self) -> int:
        """The header's round id as the ledger's integer round id (ShareFormatError if it is not one)."""
        text = self.round_id
        if not (text.isascii() and text.isdigit()) or text != str(int(text)):
            raise ShareFormatError(f"share header round_id {text!r} is not a decimal round number")
        return int(text)


def share_bytes(share: FieldArray, header: ShareHeader) -> bytes:
    """MAGIC | u8 version | u32 header length | JSON header | hi as uint16 LE | lo as uint64 LE."""
    if len(share) != header.dim:
        raise ShareFormatError(f"share has {len(share)} elements, header says dim={header.dim}")
    if np.any(share.hi >> np.uint64(16)):
        raise ShareFormatError("field element exceeds 80 bits")
    hj = canonical_json(asdict(header))  # same bytes as ever: sorted keys, compact, ASCII
    return b"".join([MAGIC, struct.pack("<BI", VERSION, len(hj)), hj,
                     share.hi.astype("<u2").tobytes(), share.lo.astype("<u8").tobytes()])


def _check_header(h: object) -> ShareHeader:
    if not isinstance(h, dict) or set(h) != set(_HEADER_KEYS):
        raise ShareFormatError(f"share header must have exactly the keys {sorted(_HEADER_KEYS)}")
    for k in ("node_index", "dim", "l", "f", "t", "m", "version"):
        if type(h[k]) is not int:
            raise ShareFormatError(f"share header field {k!r} must be an integer")
    for k in ("round_id", "hospital_id"):
        if not isinstance(h[k], str) or not h[k] or len(h[k]) > 256:
            raise ShareFormatError(f"share header field {k!r} must be a non-empty string (<= 256 chars)")
    hdr = ShareHeader(**h)
    if hdr.version != VERSION:
        raise ShareFormatError(f"unsupported share version {hdr.version}")
    if not (0 < hdr.dim <= MAX_DIM):
        raise ShareFormatError(f"dim {hdr.dim} out of range")
    if not (0 <= hdr.t and 2 * hdr.t < hdr.m <= 64 and 0 <= hdr.node_index < hdr.m):
        raise ShareFormatError("inconsistent t, m, node_index (need 2t < m <= 64, node_index < m)")
    try:
        FixedPoint(hdr.l, hdr.f)
    except ValueError as e:
        raise ShareFormatError(str(e)) from None
    return hdr


def parse_share(data: bytes, expected: dict | None = None) -> tuple[ShareHeader, FieldArray]:
    """Strictly parse share bytes; `expected` maps header fields to required values.

    An int `expected["round_id"]` is the ledger's round id: compared with `round_number`, so a header whose
    round id is not that number in canonical decimal is refused."""
    if len(data) < 9 or data[:4] != MAGIC:
        raise ShareFormatError("not a fedchain share (bad magic)")
    version, hlen = struct.unpack_from("<BI", data, 4)
    if version != VERSION:
        raise ShareFormatError(f"unsupported share version {version}")
    if hlen > 4096 or 9 + hlen > len(data):
        raise ShareFormatError("share header length out of range")
    try:
        h = json.loads(data[9:9 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ShareFormatError(f"share header is not JSON: {e}") from None
    hdr = _check_header(h)
    for k, v in (expected or {}).items():
        got = hdr.round_number if k == "round_id" and isinstance(v, int) else getattr(hdr, k, None)
        if got != v:
            raise ShareFormatError(f"share header {k}={getattr(hdr, k, None)!r}, expected {v!r}")
    body = data[9 + hlen:]
    if len(body) != 10 * hdr.dim:
        raise ShareFormatError(f"share body is {len(body)} bytes, expected {10 * hdr.dim}")
    hi = np.frombuffer(body, dtype="<u2", count=hdr.dim).astype(np.uint64)
    lo = np.frombuffer(body, dtype="<u8", offset=2 * hdr.dim).astype(np.uint64)
    p = field_modulus(hdr.l, hdr.f)
    p_hi, p_lo = np.uint64(p >> 64), np.uint64(p & ((1 << 64) - 1))
    if np.any((hi > p_hi) | ((hi == p_hi) & (lo >= p_lo))):
        raise ShareFormatError("share contains an element >= p")
    return hdr, FieldArray(hi=hi, lo=lo)

