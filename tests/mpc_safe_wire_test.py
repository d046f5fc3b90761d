"""fedchain_mpc.safe_wire: the pickle-free codec MPyC parties use between each other.

Round trips of every kind (hypothesis); a pickle that would run `touch` is refused and runs nothing;
truncated / oversized / unknown / trailing input is refused with WireError and nothing else;
harden() replaces pickle in mpyc.runtime (and MPyC uses pickle nowhere else); a real 3-party run
works with it and never calls pickle; a party that still speaks pickle cannot make the others
unpickle.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_mpyc_parties
from fedchain_mpc import safe_wire as sw
from fedchain_mpc.safe_wire import WireError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
P80 = (1 << 80) - 65  # the field of SecFxp(32, 16)

scalars = (st.none() | st.booleans() | st.integers() | st.integers(-(1 << 700), 1 << 700)
           | st.binary(max_size=64) | st.text(max_size=32))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=6) | st.tuples(kids, kids)
                      | st.lists(kids, max_size=4).map(tuple), max_leaves=30)
shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3).map(tuple)
OBJ_INTS = [st.integers(0, P80 - 1), st.integers(-(1 << 64), 1 << 64), st.integers(-(1 << 300), 1 << 300),
            st.integers(0, 255), st.integers(-(1 << 63), (1 << 63) - 1)]
INT_DTYPES = ["<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "|b1", ">i8", "=u4"]


def same(a, b) -> bool:
    """Equal value and exactly the same types, recursively (ndarrays: dtype, shape, element types)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.shape != b.shape:
            return False
        if a.dtype == object:
            return b.dtype == object and all(type(x) is int and x == y for x, y in zip(b.flat, a.flat, strict=True))
        return b.dtype == a.dtype.newbyteorder("=") and np.array_equal(a, b) and b.flags.writeable
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@st.composite
def object_arrays(draw):
    shape = draw(shapes)
    n = int(np.prod(shape, dtype=np.int64))
    elems = draw(st.sampled_from(OBJ_INTS + [st.one_of(*OBJ_INTS)]))  # mostly one range per array, like shares
    ints = draw(st.lists(elems, min_size=n, max_size=n))
    a = np.empty(n, dtype=object)
    a[:] = ints
    return a.reshape(shape)


@st.composite
def int_arrays(draw):
    dt = np.dtype(draw(st.sampled_from(INT_DTYPES)))
    shape = draw(shapes)
    n = int(np.prod(shape, dtype=np.int64))
    raw = draw(st.binary(min_size=n * dt.itemsize, max_size=n * dt.itemsize))
    a = np.frombuffer(raw, dtype=dt).copy()
    if dt.kind == "b":
        a = a.view(np.uint8) % 2 == 1
    return a.reshape(shape)


@settings(max_examples=300, deadline=None)
@given(values)
def test_round_trip_python_values(v) -> None:
    assert same(v, sw.loads(sw.dumps(v)))


@settings(max_examples=200, deadline=None)
@given(st.one_of(object_arrays(), int_arrays()))
def test_round_trip_arrays(a: np.ndarray) -> None:
    got = sw.loads(sw.dumps(a))
    assert same(a, got)
    got_in_list = sw.loads(sw.dumps([a, (a, None)]))
    assert same(a, got_in_list[0]) and same(a, got_in_list[1][0])


def test_round_trip_share_arrays_like_mpyc() -> None:
    """What np_random_split / output / _reshare hand to pickle: 1-d object arrays of field values."""
    from mpyc import thresha
    from mpyc.runtime import mpc

    fld = mpc.SecFxp(32, 16).field
    rows = thresha.np_random_split(fld, fld.array(np.arange(-500, 500)).value, 1, 3)
    for row in rows:
        assert same(row, sw.loads(sw.dumps(row)))
        assert len(sw.dumps(row)) <= len(pickle.dumps(row))
    val = fld.array(np.arange(-5, 5)).value
    assert same(val, sw.loads(sw.dumps(val)))
    back = fld.array(sw.loads(sw.dumps(val.reshape(-1))), check=False)
    assert np.array_equal((back - fld.array(val)).value, np.zeros(10, dtype=object))


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    payload = pickle.dumps(Evil())
    with pytest.raises(WireError, match="a pickle: the peer did not install"):
        sw.SHIM.loads(payload)
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):  # protocol 0/1 do not start with 0x80
        with pytest.raises(WireError, match="not a safe_wire message"):
            sw.loads(pickle.dumps(Evil(), protocol=proto))
    # behind our magic: the pickle opcodes are just unknown tags
    with pytest.raises(WireError):
        sw.loads(sw.MAGIC + payload)
    assert sw.loads(sw.dumps(payload)) == payload  # carried as bytes, never interpreted
    assert not marker.exists()


def test_every_truncation_and_trailing_bytes_are_refused() -> None:
    msg = sw.dumps([None, True, 5, -(1 << 100), b"xyz", "é", (1, [2]), np.arange(3),
                    np.array([P80 - 1, 3, 0], dtype=object), np.array([-1, 1 << 70], dtype=object)])
    sw.loads(msg)
    for cut in range(len(msg)):
        with pytest.raises(WireError):
            sw.loads(msg[:cut])
    with pytest.raises(WireError, match="trailing"):
        sw.loads(msg + b"\x00")
    with pytest.raises(WireError, match="trailing"):
        sw.loads(sw.dumps(1) + sw.dumps(2)[len(sw.MAGIC):])


def _u64(n: int) -> bytes:
    return struct.pack("<Q", n)


@pytest.mark.parametrize("body, why", [
    (b"Z", "unknown tag"),
    (b"\x80", "unknown tag"),
    (b"b" + _u64(1 << 62) + b"ab", "exceeds the message"),
    (b"s" + _u64(3) + b"\xff\xfe\xfd", "UTF-8"),
    (b"l" + _u64(1 << 40) + b"N", "exceeds the message"),
    (b"I" + struct.pack("<I", 5000) + b"\x01" * 5000, "integer of 5000 bytes"),
    (b"I" + struct.pack("<I", 0), "integer of 0 bytes"),
    (b"n\x09\x01" + _u64(1), "unknown array dtype"),
    (b"n\x03\x01" + _u64(1 << 61) + b"\x00" * 8, "truncated"),
    (b"n\x08\x01" + _u64(2) + b"\x01\x02", "boolean array"),
    (b"o\x21" + _u64(1) * 33, "33 dimensions"),
    (b"o\x02" + _u64(1 << 32) + _u64(1 << 32) + struct.pack("<HB", 1, 0) + b"\x00", "truncated"),
    (b"o\x01" + _u64(1) + struct.pack("<HB", 0, 0), "width 0"),
    (b"o\x01" + _u64(1) + struct.pack("<HB", 2000, 0) + b"\x00" * 2000, "width 2000"),
    (b"o\x01" + _u64(1) + struct.pack("<HB", 1, 2) + b"\x00", "signed flag 2"),
    (b"l" + _u64(1) + b"l" + _u64(1), "exceeds the message"),
    (b"o\x02" + _u64(0) + _u64(1 << 63) + struct.pack("<HB", 1, 0), "array shape"),
    (b"n\x03\x03" + _u64(0) + _u64(1 << 61) + _u64(1 << 61), "array shape"),
    (b"l" + _u64(1), "exceeds the message"),
    (b"i" + b"\x00" * 7, "truncated"),
])
def test_malformed_messages_are_refused(body: bytes, why: str) -> None:
    with pytest.raises(WireError, match=why):
        sw.loads(sw.MAGIC + body)


def test_nesting_is_bounded() -> None:
    deep: list = []
    for _ in range(sw.MAX_DEPTH + 1):
        deep = [deep]
    with pytest.raises(WireError, match="nested"):
        sw.dumps(deep)
    with pytest.raises(WireError, match="nested"):
        sw.loads(sw.MAGIC + (b"l" + _u64(1)) * (sw.MAX_DEPTH + 1) + b"N")


def test_not_bytes_or_wrong_magic() -> None:
    with pytest.raises(WireError, match="must be bytes"):
        sw.loads("FCW1N")
    with pytest.raises(WireError, match="not a safe_wire message"):
        sw.loads(b"")
    assert sw.loads(bytearray(sw.dumps([1]))) == [1]
    assert sw.loads(memoryview(sw.dumps(b"q"))) == b"q"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_messages_raise_wire_error_or_decode(data) -> None:
    """Any byte flips / insertions in a valid message: a value or WireError, never another exception."""
    msg = bytearray(sw.dumps([1, b"ab", "c", (None, 2 ** 90), np.array([3, P80 - 1], dtype=object),
                              np.arange(4, dtype=np.int32)]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(len(sw.MAGIC), len(msg) - 1))
        if data.draw(st.booleans()):
            msg[i] = data.draw(st.integers(0, 255))
        else:
            msg[i:i] = data.draw(st.binary(min_size=1, max_size=9))
    try:
        sw.loads(bytes(msg))
    except WireError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_raise_wire_error_or_decode(body: bytes) -> None:
    try:
        sw.loads(sw.MAGIC + body)
    except WireError:
        pass


class _Thing:
    pass


@pytest.mark.parametrize("value", [1.5, {"a": 1}, {1}, _Thing(), np.float64(1.0), np.int64(3), np.arange(3.0),
                                   np.array([1, 2.5], dtype=object), np.array([1, "x"], dtype=object),
                                   np.array([1 << 9000], dtype=object), 1 << 9000, "\udc80", [1, [2, {}]]])
def test_values_outside_the_kinds_are_refused_when_sending(value) -> None:
    with pytest.raises(WireError):
        sw.dumps(value)


def test_field_elements_are_refused_when_sending() -> None:
    """MPyC hands pickle plain ints / object arrays (field .value), never field objects: keep it so."""
    from mpyc.runtime import mpc

    fld = mpc.SecFxp(32, 16).field
    with pytest.raises(WireError, match="cannot send"):
        sw.dumps(fld(3))
    with pytest.raises(WireError, match="cannot send"):
        sw.dumps(fld.array([1, 2]))


def test_integer_like_objects_in_object_arrays_are_sent_as_ints() -> None:
    a = np.array([np.int64(5), True, 2 ** 70], dtype=object)
    assert same(np.array([5, 1, 2 ** 70], dtype=object), sw.loads(sw.dumps(a)))


def test_harden_replaces_pickle_in_mpyc_runtime_only() -> None:
    import mpyc.runtime as rt

    sw.harden()
    sw.harden()  # idempotent
    assert rt.pickle is sw.SHIM and sw.installed()
    assert sw.SHIM.loads(sw.SHIM.dumps([1, b"x"])) == [1, b"x"]
    with pytest.raises(AttributeError, match="pickle.Unpickler"):
        sw.SHIM.Unpickler  # noqa: B018
    with pytest.raises(TypeError):
        sw.SHIM.dumps(1, protocol=5)
    assert sw.pickle_users(rt) == sw.PICKLE_USERS


def test_mpyc_uses_pickle_nowhere_but_runtime() -> None:
    """Source check of the installed MPyC: only runtime.py imports pickle (in the 4 functions harden
    covers), and no module imports another deserializer."""
    import mpyc

    risky = {"pickle", "_pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle", "joblib", "jsonpickle"}
    users = {}
    for path in Path(mpyc.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            for name in names:
                if name in risky:
                    users.setdefault(path.name, set()).add(name)
    assert users == {"runtime.py": {"pickle"}}


def test_require_hardened_refuses_multi_party_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    class Fake:
        parties = (0, 1, 2)

    monkeypatch.setattr(sw, "installed", lambda: False)
    with pytest.raises(RuntimeError, match="unpickle"):
        sw.require_hardened(Fake)
    Fake.parties = (0,)
    sw.require_hardened(Fake)  # one party: nothing crosses a boundary


def test_three_parties_with_the_codec(tmp_path: Path) -> None:
    run_mpyc_parties(HERE / "mpc_safe_wire_party.py", {"FC_OUT": str(tmp_path), "FC_MODE": "run"}, timeout=60)
    v = np.arange(-20, 20)
    for pid in range(3):
        got = json.loads((tmp_path / f"{pid}.json").read_text())
        assert got["shim"] is True
        assert got["transfer_ok"] and got["transfer_senders_ok"]
        assert got["sum"] == [int(a) for a in 6 * v]
        assert got["prod"] == [int(a) for a in 2 * v * v]
        assert got["scalar"] == 7 * 8 + 9
        assert got["pickle_calls"] == []


def test_a_party_speaking_pickle_cannot_run_code_on_the_others(tmp_path: Path) -> None:
    from fedchain.netctl.process import free_ports

    args = [a for port in free_ports(3) for a in ("-P", f"127.0.0.1:{port}")]
    env = dict(os.environ, FC_OUT=str(tmp_path), FC_MODE="attack")
    procs = [subprocess.Popen([sys.executable, str(HERE / "mpc_safe_wire_party.py"), *args, "-I", str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for i in range(3)]  # MPyC logs to stdout
    errs = []
    try:
        for proc in procs:
            err, _ = proc.communicate(timeout=60)
            errs.append((proc.returncode, err.decode(errors="replace")))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert errs[0][0] == 0, errs[0][1][-2000:]
    for code, err in errs[1:]:
        assert code != 0
        assert "WireError: not a safe_wire message (a pickle: the peer did not install" in err, err[-3000:]
    assert not (tmp_path / "pwned").exists()
    assert not list(tmp_path.glob("accepted*"))
