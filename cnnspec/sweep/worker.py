"""`python -m cnnspec.sweep.worker PLAN_JSON INDEX`: one local worker process of `cnnspec sweep --workers N`.

It inherits the sweep folder's lock from its coordinator (held until the last worker ends) and the
spec's text as the coordinator read it (an edit of the file mid-sweep changes nothing)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnnspec.errors import CnnspecError
from cnnspec.interrupts import catch_ctrl_c
from cnnspec.sweep.study import SweepPlan, run_worker, storage_errors


def main() -> int:
    catch_ctrl_c()  # a Ctrl-C inside an import (torch's) is held, not raised there
    raw, index = json.loads(sys.argv[1]), int(sys.argv[2])
    plan = SweepPlan(Path(raw["spec"]), raw["text"], Path(raw["out"]), raw["storage"], int(raw["trials"]))
    say = lambda text: print(f"[worker {index}] {text}", flush=True)  # noqa: E731
    try:
        with storage_errors(plan):
            run_worker(plan, index, say=say)
    except CnnspecError as exc:
        print(f"[worker {index}] " + exc.format(), file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
