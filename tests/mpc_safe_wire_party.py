"""One MPyC party of tests/mpc_safe_wire_test.py (not collected by pytest).

FC_MODE=run: harden(), then every MPyC path that used pickle (transfer of our kinds, input/output/
reshare of share arrays) plus the scalar paths, with pickle itself trapped in this process (any call
is recorded); writes FC_OUT/<pid>.json with what it saw.
FC_MODE=attack: party 0 does NOT harden and sends a pickle whose unpickling runs `touch FC_OUT/pwned`
to parties 1 and 2 (which harden and must refuse it).
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
from mpyc.runtime import mpc

OUT = Path(os.environ["FC_OUT"])
PICKLE_CALLS: list[str] = []


def _trap_pickle() -> None:
    for name in ("dumps", "loads", "dump", "load"):
        orig = getattr(pickle, name)

        def trapped(*args, _orig=orig, _name=name, **kwargs):
            PICKLE_CALLS.append(_name)
            return _orig(*args, **kwargs)

        setattr(pickle, name, trapped)


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {OUT / 'pwned'}",))


async def run() -> None:
    import mpyc.runtime
    from fedchain_mpc import safe_wire

    await mpc.start()
    secint = mpc.SecInt(48, p=mpc.SecFxp(32, 16).field.modulus)
    got: dict = {"pid": mpc.pid, "shim": mpyc.runtime.pickle is safe_wire.SHIM}
    # transfer: our kinds (bytes like verify._open_aggregate, int lists like checks/consistency)
    mine = [b"\x00\xff" * (mpc.pid + 1), [mpc.pid, -(1 << 90) + mpc.pid, None, True], ("s", 2 ** 70)]
    allv = await mpc.transfer(mine)
    got["transfer_ok"] = allv == [[b"\x00\xff" * (j + 1), [j, -(1 << 90) + j, None, True], ("s", 2 ** 70)]
                                  for j in range(3)]
    part = await mpc.transfer(bytes([mpc.pid]) * 5, senders=[0, 1])
    got["transfer_senders_ok"] = part == [b"\x00" * 5, b"\x01" * 5]
    # numpy paths: input (_distribute), multiplication (_reshare), output of arrays; scalar paths too
    v = np.arange(-20, 20, dtype=np.int64) * (mpc.pid + 1)
    xs = mpc.input(secint.array(v))  # every party inputs its own array
    total = xs[0] + xs[1] + xs[2]
    prod = xs[0] * xs[1]
    got["sum"] = [int(a) for a in await mpc.output(total)]
    got["prod"] = [int(a) for a in await mpc.output(prod)]
    s = mpc.input(secint(7 + mpc.pid))
    got["scalar"] = int(await mpc.output(s[0] * s[1] + s[2]))
    await mpc.shutdown()
    got["pickle_calls"] = PICKLE_CALLS
    (OUT / f"{mpc.pid}.json").write_text(json.dumps(got))


async def attack() -> None:
    await mpc.start()
    if mpc.pid == 0:
        await mpc.transfer(Evil(), senders=[0], receivers=[1, 2])
        await asyncio.sleep(1.0)  # let the transport flush, then leave (the others are gone)
        os._exit(0)
    await mpc.transfer(None, senders=[0], receivers=[1, 2])
    (OUT / f"accepted{mpc.pid}").write_text("the pickle was accepted")


if __name__ == "__main__":
    mode = os.environ["FC_MODE"]
    if mode == "run" or mpc.pid != 0:
        from fedchain_mpc.safe_wire import harden

        harden()
    if mode == "run":
        _trap_pickle()
        mpc.run(run())
    else:
        mpc.run(attack())
    sys.exit(0)
