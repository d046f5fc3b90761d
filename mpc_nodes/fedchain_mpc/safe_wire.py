"""A pickle-free wire format for what MPyC parties send each other, and `harden()` to install it.

Why: MPyC 0.11 serializes with pickle: `Runtime.transfer` (used by its own `shutdown()` barrier and
by our `verify._open_aggregate` and `checks/consistency.py`) and the numpy paths of `input`
(`_distribute`), `output` and `_reshare` (share arrays). The parties belong to different
organizations, so unpickling what a peer sent would let a malicious or compromised node run code on
the others. `harden()` replaces the name `pickle` inside `mpyc.runtime` with a shim whose
`dumps`/`loads` are this codec, so every one of those paths uses it; the values, the messages and
the rounds stay exactly as before (only their byte encoding changes).

Every party of a run must call `harden()` before `mpc.start()` (the format differs from pickle; a
party that still speaks pickle makes the others fail at its first message, nothing is unpickled).
`verify_and_aggregate` refuses to run a multi-party session without it.

The codec: a 4-byte magic, then one tagged value, nothing after it. Kinds (exactly what MPyC and our
code pass; checked with a real run): None, bool, int (any size, signed), bytes, str, list and tuple
of these, numpy arrays of a fixed-width integer dtype, and numpy object arrays of Python ints (MPyC's
share arrays: `np_random_split` rows and field arrays' `.value`, all reduced field elements; encoded
as fixed-width little-endian two's complement, the width chosen per array, and decoded with numpy
64-bit limbs). Decoding never imports or calls anything named by the data; every count and size is
checked against the bytes that remain before anything is allocated; an unknown tag, a truncated or
oversized message, or trailing bytes raise `WireError` (the run fails; nothing is guessed). Anything
else (floats, dicts, field elements, other objects) is refused when encoding, with the type in the
message.
"""

from __future__ import annotations

import functools
import itertools
import operator
import struct
from typing import Any

import numpy as np

MAGIC = b"FCW1"
MAX_DEPTH = 32  # nesting of lists/tuples
MAX_NDIM = 32
MAX_INT_BYTES = 1024  # one integer (scalar or array element): 8192 bits, far above any MPyC field we use

# tags
_NONE, _FALSE, _TRUE = b"N", b"F", b"T"
_INT64, _BIGINT = b"i", b"I"
_BYTES, _STR = b"b", b"s"
_LIST, _TUPLE = b"l", b"t"
_NDARRAY, _OBJARRAY = b"n", b"o"

# integer dtypes of plain numpy arrays, by code (little-endian on the wire)
_DTYPES = ("<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1")
_DTYPE_CODE = {np.dtype(d): i for i, d in enumerate(_DTYPES)}  # looked up in little-endian order

_Q = struct.Struct("<Q")
_q = struct.Struct("<q")
_I = struct.Struct("<I")
_ARR = struct.Struct("<HB")  # object array: element width in bytes, signed flag


class WireError(ValueError):
    """A message (or a value to send) outside the codec's kinds, or malformed: the run must fail."""


# ------------------------------------------------------------------------------------------ encode
def dumps(obj: Any) -> bytes:
    """Encode `obj` (see the module docstring for the kinds); WireError for anything else."""
    out: list[bytes] = [MAGIC]
    _enc(obj, out, 0)
    return b"".join(out)


def _enc(obj: Any, out: list[bytes], depth: int) -> None:
    t = type(obj)
    if obj is None:
        out.append(_NONE)
    elif t is bool:
        out.append(_TRUE if obj else _FALSE)
    elif t is int:
        if -(1 << 63) <= obj < (1 << 63):
            out.append(_INT64 + _q.pack(obj))
        else:
            n = (obj.bit_length() + 8) // 8  # two's complement with a sign bit
            if n > MAX_INT_BYTES:
                raise WireError(f"integer of {obj.bit_length()} bits is too large for the wire")
            out.append(_BIGINT + _I.pack(n) + obj.to_bytes(n, "little", signed=True))
    elif t is bytes or t is bytearray or t is memoryview:
        data = bytes(obj)
        out.append(_BYTES + _Q.pack(len(data)))
        out.append(data)
    elif t is str:
        try:
            data = obj.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise WireError(f"string is not valid UTF-8: {exc}") from None
        out.append(_STR + _Q.pack(len(data)))
        out.append(data)
    elif t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise WireError(f"lists nested deeper than {MAX_DEPTH}")
        out.append((_LIST if t is list else _TUPLE) + _Q.pack(len(obj)))
        for item in obj:
            _enc(item, out, depth + 1)
    elif t is np.ndarray:
        _enc_array(obj, out)
    else:
        raise WireError(f"cannot send a {t.__module__}.{t.__qualname__} between MPC parties "
                        "(safe_wire carries None, bool, int, bytes, str, lists/tuples, integer numpy arrays)")


def _shape(a: np.ndarray) -> bytes:
    if a.ndim > MAX_NDIM:
        raise WireError(f"array with {a.ndim} dimensions")
    return bytes([a.ndim]) + b"".join(_Q.pack(s) for s in a.shape)


def _enc_array(a: np.ndarray, out: list[bytes]) -> None:
    if a.dtype == object:
        out.append(_OBJARRAY + _shape(a))
        _enc_int_values(a.reshape(-1).tolist(), out)
        return
    code = _DTYPE_CODE.get(a.dtype.newbyteorder("<"))
    if code is None:
        raise WireError(f"cannot send a numpy array of dtype {a.dtype} (integer dtypes and objects only)")
    out.append(_NDARRAY + bytes([code]) + _shape(a))
    out.append(np.ascontiguousarray(a, dtype=np.dtype(_DTYPES[code])).tobytes())


def _enc_int_values(vals: list, out: list[bytes]) -> None:
    """Python ints as fixed-width little-endian (two's complement if any is negative)."""
    try:
        out.append(_int_block(vals))
    except (TypeError, AttributeError):  # something not an int: accept exactly integer-like objects
        try:
            vals = list(map(operator.index, vals))
        except TypeError as exc:
            raise WireError(f"object array holds something that is not an integer: {exc}") from None
        out.append(_int_block(vals))


def _int_block(vals: list) -> bytes:
    if not vals:
        return _ARR.pack(1, 0)
    hi, lo = max(vals), min(vals)
    signed = lo < 0
    if signed:
        bits = max(hi.bit_length(), (~lo).bit_length()) + 1
    else:
        bits = hi.bit_length()
    w = max(1, (bits + 7) // 8)
    if w > MAX_INT_BYTES:
        raise WireError(f"array element of {bits} bits is too large for the wire")
    if signed:
        conv = functools.partial(int.to_bytes, length=w, byteorder="little", signed=True)
        body = b"".join(map(conv, vals))
    else:
        body = b"".join(map(int.to_bytes, vals, itertools.repeat(w), itertools.repeat("little")))
    return _ARR.pack(w, signed) + body


# ------------------------------------------------------------------------------------------ decode
def loads(data: Any) -> Any:
    """Decode one message from `dumps`; WireError if it is anything else (pickle included)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"a message must be bytes, not {type(data).__qualname__}")
    buf = memoryview(data).cast("B") if isinstance(data, memoryview) else memoryview(data)
    if bytes(buf[:len(MAGIC)]) != MAGIC:
        head = bytes(buf[:2])
        hint = " (a pickle: the peer did not install fedchain_mpc.safe_wire)" if head[:1] == b"\x80" else ""
        raise WireError(f"not a safe_wire message{hint}")
    r = _Reader(buf, len(MAGIC))
    value = r.value(0)
    if r.pos != len(buf):
        raise WireError(f"{len(buf) - r.pos} trailing bytes after the value")
    return value


class _Reader:
    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: memoryview, pos: int) -> None:
        self.buf, self.pos, self.end = buf, pos, len(buf)

    def take(self, n: int) -> memoryview:
        if n < 0 or n > self.end - self.pos:
            raise WireError(f"truncated message: need {n} bytes at offset {self.pos}, {self.end - self.pos} left")
        chunk = self.buf[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u64(self) -> int:
        return _Q.unpack(self.take(8))[0]

    def count(self, per_item: int) -> int:
        """A length/count field, bounded by the bytes left (every item takes >= per_item bytes)."""
        n = self.u64()
        if n * per_item > self.end - self.pos:
            raise WireError(f"length {n} at offset {self.pos - 8} exceeds the message")
        return n

    def shape(self) -> tuple[int, ...]:
        ndim = self.take(1)[0]
        if ndim > MAX_NDIM:
            raise WireError(f"array with {ndim} dimensions")
        return tuple(self.u64() for _ in range(ndim))

    def value(self, depth: int) -> Any:
        tag = bytes(self.take(1))
        if tag == _NONE:
            return None
        if tag == _FALSE:
            return False
        if tag == _TRUE:
            return True
        if tag == _INT64:
            return _q.unpack(self.take(8))[0]
        if tag == _BIGINT:
            n = _I.unpack(self.take(4))[0]
            if not 0 < n <= MAX_INT_BYTES:
                raise WireError(f"integer of {n} bytes")
            return int.from_bytes(self.take(n), "little", signed=True)
        if tag == _BYTES:
            return bytes(self.take(self.count(1)))
        if tag == _STR:
            try:
                return str(self.take(self.count(1)), "utf-8")
            except UnicodeDecodeError as exc:
                raise WireError(f"string is not valid UTF-8: {exc}") from None
        if tag == _LIST or tag == _TUPLE:
            if depth >= MAX_DEPTH:
                raise WireError(f"lists nested deeper than {MAX_DEPTH}")
            n = self.count(1)
            items = [self.value(depth + 1) for _ in range(n)]
            return items if tag == _LIST else tuple(items)
        if tag == _NDARRAY:
            code = self.take(1)[0]
            if code >= len(_DTYPES):
                raise WireError(f"unknown array dtype code {code}")
            dt = np.dtype(_DTYPES[code])
            shape = self.shape()
            n = _size(shape)
            raw = self.take(n * dt.itemsize)
            a = np.frombuffer(raw, dtype=dt, count=n).astype(dt.newbyteorder("="), copy=True)  # writable, native
            if dt.kind == "b" and np.any(a.view(np.uint8) > 1):
                raise WireError("boolean array with a byte other than 0 or 1")
            return _reshape(a, shape)
        if tag == _OBJARRAY:
            shape = self.shape()
            w, signed = _ARR.unpack(self.take(_ARR.size))
            if not 1 <= w <= MAX_INT_BYTES or signed > 1:
                raise WireError(f"object array with element width {w} / signed flag {signed}")
            n = _size(shape)
            raw = self.take(n * w)
            return _reshape(_ints_from_block(raw, n, w, bool(signed)), shape)
        raise WireError(f"unknown tag {tag!r} at offset {self.pos - 1}")


def _reshape(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    try:  # only an empty array can get here with absurd dimensions (the data bounds all others)
        return a.reshape(shape)
    except ValueError as exc:
        raise WireError(f"array shape {shape}: {exc}") from None


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _ints_from_block(raw: memoryview, n: int, w: int, signed: bool) -> np.ndarray:
    """n fixed-width little-endian integers → object array of Python ints, via 64-bit limbs."""
    if n == 0:
        return np.empty(0, dtype=object)
    u = np.frombuffer(raw, dtype=np.uint8, count=n * w).reshape(n, w)
    nl = (w + 7) // 8
    if w == 8 * nl:
        limbs = u.view("<u8")
    else:
        padded = np.zeros((n, 8 * nl), dtype=np.uint8)
        padded[:, :w] = u
        if signed:
            padded[:, w:] = np.where(u[:, w - 1:w] >= 0x80, np.uint8(0xFF), np.uint8(0))
        limbs = padded.view("<u8")
    top = limbs[:, nl - 1].view("<i8" if signed else "<u8").astype(object)
    for k in range(nl - 2, -1, -1):
        np.left_shift(top, 64, out=top)
        np.bitwise_or(top, limbs[:, k].astype(object), out=top)
    return top


# ------------------------------------------------------------------------------------------ install
class _PickleShim:
    """Stands in for the module `pickle` inside mpyc.runtime: only dumps/loads exist, both safe_wire."""

    __slots__ = ()
    __name__ = "fedchain_mpc.safe_wire (in place of pickle)"

    @staticmethod
    def dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        if args or kwargs:
            raise TypeError("safe_wire.dumps takes no pickle options")
        return dumps(obj)

    @staticmethod
    def loads(data: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            raise TypeError("safe_wire.loads takes no pickle options")
        return loads(data)

    def __getattr__(self, name: str) -> Any:  # anything else MPyC might ask pickle for: fail loudly
        raise AttributeError(f"mpyc.runtime asked for pickle.{name}, which safe_wire does not provide")


SHIM = _PickleShim()

# the functions of mpyc.runtime (MPyC 0.11) that use `pickle`: all go through the shim
PICKLE_USERS = frozenset({"transfer", "_distribute", "output", "_reshare"})
MPYC_VERSION = "0.11"


def installed() -> bool:
    """Whether this process's mpyc.runtime serializes with safe_wire (False if MPyC is not loaded)."""
    import sys

    rt = sys.modules.get("mpyc.runtime")
    return rt is not None and getattr(rt, "pickle", None) is SHIM


def harden() -> None:
    """Make mpyc.runtime use safe_wire instead of pickle (idempotent). Call before mpc.start()."""
    import mpyc
    import mpyc.runtime as rt

    if rt.pickle is SHIM:
        return
    if mpyc.__version__ != MPYC_VERSION:
        raise RuntimeError(f"safe_wire was checked against MPyC {MPYC_VERSION}, not {mpyc.__version__}: "
                           "review mpyc.runtime's use of pickle before running parties with it")
    users = pickle_users(rt)
    if users != PICKLE_USERS:
        raise RuntimeError(f"mpyc.runtime uses pickle in {sorted(users)}, expected {sorted(PICKLE_USERS)}")
    rt.pickle = SHIM


def require_hardened(mpc: Any) -> None:
    """Refuse a multi-party session whose runtime would still unpickle what peers send."""
    if len(mpc.parties) > 1 and not installed():
        raise RuntimeError("MPyC would unpickle what peers send: call fedchain_mpc.safe_wire.harden() "
                           "before mpc.start() in every party")


def pickle_users(rt: Any) -> set[str]:
    """Names of the code objects in module `rt` that reference `pickle` (or hold an alias of it)."""
    import pickle
    import types

    aliases = {id(pickle), id(pickle.loads), id(pickle.load), id(pickle.Unpickler), id(pickle.dumps)}
    for name, val in vars(rt).items():
        if id(val) in aliases and name != "pickle":
            raise RuntimeError(f"mpyc.runtime binds pickle under the name {name!r}")
    found: set[str] = set()
    seen: set[int] = set()

    def walk_code(code: types.CodeType) -> None:
        if id(code) in seen:
            return
        seen.add(id(code))
        if "pickle" in code.co_names:
            found.add(code.co_name)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                walk_code(c)

    def walk(obj: Any, depth: int) -> None:
        obj = getattr(obj, "__func__", obj)  # classmethod / staticmethod
        if isinstance(obj, property):
            for f in (obj.fget, obj.fset, obj.fdel):
                if f is not None:
                    walk(f, depth)
            return
        if isinstance(obj, types.FunctionType):
            while obj is not None:  # mpc_coro wrappers keep the coroutine in __wrapped__
                walk_code(obj.__code__)
                obj = getattr(obj, "__wrapped__", None)
            return
        if isinstance(obj, type) and obj.__module__ == rt.__name__ and depth < 3:
            for v in vars(obj).values():
                walk(v, depth + 1)

    for v in vars(rt).values():
        if getattr(v, "__module__", None) == rt.__name__:
            walk(v, 0)
    return found
