"""One MPyC party of tests/mpc_core_przs_test.py (not collected by pytest): shares of two random
secrets u, w, this party's local product share, and that share after mpcops._rerandomize, written to
FC_OUT/<pid>.json so the test can interpolate every polynomial (it sees all parties' files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fedchain_mpc import mpcops
from mpyc.runtime import mpc


async def main() -> None:
    await mpc.start()
    secint = mpc.SecInt(48)
    fld = secint.field
    n = 8
    u = mpc._np_randoms(fld, n)  # random sharings: their linear coefficients are random too
    w = mpc._np_randoms(fld, n)
    if not isinstance(u, fld.array):
        u, w = await u, await w
    prod = u * w  # this party's share of u w on a degree-2t polynomial (coefficient alpha_u alpha_w at x^2)
    rer, degree = await mpcops._rerandomize(fld, prod, n)
    out = {"pid": mpc.pid, "degree": degree, "u": [int(v) for v in u.value], "w": [int(v) for v in w.value],
           "prod": [int(v) for v in prod.value], "rer": [int(v) for v in rer.value]}
    Path(os.environ["FC_OUT"], f"{mpc.pid}.json").write_text(json.dumps(out))
    await mpc.shutdown()


if __name__ == "__main__":
    from fedchain_mpc.safe_wire import harden

    harden()  # every party: no pickle on the wire
    mpc.run(main())
