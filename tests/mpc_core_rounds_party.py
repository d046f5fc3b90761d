"""One MPyC party of tests/mpc_core_rounds_test.py (not collected by pytest): known programs under the
round counter (fedchain_mpc.rounds), their measured depths written to FC_OUT/<pid>.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from fedchain_mpc import rounds

rounds.install()

from mpyc.runtime import mpc  # noqa: E402  (the counter patches MPyC's exchanger before the runtime starts)

K = 5


async def main() -> None:
    await mpc.start()
    secint = mpc.SecInt(32)
    x = secint.array(np.array([1, 2, 3, 4]))
    got: dict[str, int] = {}
    start = rounds.depth()
    for _ in range(K):  # K openings, each after the previous one came back
        x = x + secint.array(await mpc.output(x))
    got["sequential"] = rounds.depth() - start
    start = rounds.depth()
    await mpc.gather(*[mpc.output(x + i) for i in range(K)])  # K openings at once
    got["concurrent"] = rounds.depth() - start
    start = rounds.depth()
    y = x
    for _ in range(3):  # 3 multiplications (1 resharing each), then one opening
        y = y * x
    await mpc.output(y)
    got["mul3_open"] = rounds.depth() - start
    got["messages_sent"] = rounds.STATE.messages_sent
    Path(os.environ["FC_OUT"], f"{mpc.pid}.json").write_text(json.dumps(got))
    await mpc.shutdown()


if __name__ == "__main__":
    from fedchain_mpc.safe_wire import harden

    harden()  # every party: no pickle on the wire
    mpc.run(main())
