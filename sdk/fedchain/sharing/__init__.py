"""Hospital-side sharing codec: fixed-point encoding, Shamir t-of-m splitting in exactly the
prime field MPyC's SecFxp(l, f) uses, and a compact, versioned, pickle-free share format whose
SHA-256 is the ledger commitment.

Typical use (hospital)::

    fp = FixedPoint()                       # l=32, f=16: |x| < 32768, resolution 2^-16
    enc = encode(delta, fp)                 # field elements as (hi, lo) uint64 arrays
    shares = split(enc, t=1, m=3, fp=fp)    # share j goes to MPC node j (evaluation point j+1)
    blob = share_bytes(shares[j], ShareHeader(str(round_id), hospital_id, j, ...))  # header.round_number: int
    commitment = sha256_hex(blob)           # goes into SubmitUpdate
"""

from fedchain.canonical import sha256_hex  # the ledger commitment of a share: the one SHA-256 of the SDK
from fedchain.sharing.codec import (
    FieldArray,
    FixedPoint,
    ShareFormatError,
    ShareHeader,
    decode,
    encode,
    field_modulus,
    from_ints,
    parse_share,
    recombine,
    share_bytes,
    split,
    to_ints,
)

__all__ = [
    "FieldArray",
    "FixedPoint",
    "ShareFormatError",
    "ShareHeader",
    "decode",
    "encode",
    "field_modulus",
    "from_ints",
    "parse_share",
    "recombine",
    "sha256_hex",
    "share_bytes",
    "split",
    "to_ints",
]
