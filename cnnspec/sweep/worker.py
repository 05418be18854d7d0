"""`python -m cnnspec.sweep.worker PLAN_JSON INDEX`: one local worker process of `cnnspec sweep --workers N`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnnspec.errors import CnnspecError
from cnnspec.sweep.study import SweepPlan, run_worker


def main() -> int:
    raw, index = json.loads(sys.argv[1]), int(sys.argv[2])
    plan = SweepPlan(Path(raw["spec"]), Path(raw["out"]), raw["storage"], int(raw["trials"]))
    try:
        run_worker(plan, index, say=lambda text: print(f"[worker {index}] {text}", flush=True))
    except CnnspecError as exc:
        print(exc.format(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
