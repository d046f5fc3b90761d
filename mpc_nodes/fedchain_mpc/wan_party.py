"""One MPC party of the WAN benchmark: fedchain_mpc.mpc_program with the round counter installed.

Launch exactly like mpc_program (same -P list, -I i, FEDCHAIN_MPC_JOB); every party of the run must
use this entry (the counter adds a trailer to MPyC's payloads). Besides mpc_program's output JSON it
writes <output_path>.rounds.json: {"phase_rounds": {phase: rounds}, "phase_bytes": {phase: bytes},
"messages_sent": k,
"trailer_bytes": b} (public cost figures only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main() -> int:
    import os

    from fedchain_mpc import rounds
    from fedchain_mpc.job import JOB_ENV, MPCJob

    rounds.install()
    from fedchain_mpc import mpc_program, verify

    captured: dict[str, Any] = {}
    orig = verify.verify_and_aggregate

    async def counted(*args: Any, **kwargs: Any) -> Any:
        res = await orig(*args, **kwargs)
        captured["phase_rounds"] = dict(res.phase_rounds)
        captured["phase_bytes"] = dict(res.phase_bytes)
        captured["messages_sent"] = rounds.STATE.messages_sent
        captured["trailer_bytes"] = rounds.STATE.trailer_bytes
        return res

    verify.verify_and_aggregate = counted  # run_job imports it from the module at call time
    code = mpc_program.main()
    if code == 0:
        out = Path(MPCJob.load(os.environ[JOB_ENV]).output_path)
        out.with_name(out.name + ".rounds.json").write_text(json.dumps(captured))
    return code


if __name__ == "__main__":
    sys.exit(main())
