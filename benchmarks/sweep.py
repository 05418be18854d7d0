"""A sweep with pruning against the same trials run to the end, on digits.

    python benchmarks/sweep.py                 # 12 trials of 2 epochs, twice; ~1–3 minutes on 2 CPU cores
    python benchmarks/sweep.py --keep bench    # keep the two sweep folders and the re-training
    python benchmarks/sweep.py --dry           # 4 trials of 1 epoch (what the test runs)

The space is specs/digits_sweep.yaml's: optimizer.lr (log-uniform), vars.width (0.5, 0.75, 1.0) and
conv2's kernel_size (3, 5, 11); 11 is bigger than the 10×10 padded feature map, so every trial that
draws it is impossible.

1. **pruned**: the sweep with `pruner: median` (and the static check, which rejects the impossible
   trials untrained);
2. **to the end**: a second study with `pruner: none`, given the same trials in the same order
   (Optuna's `enqueue_trial` with the first study's parameters), so both sweeps train the same
   candidates and only the pruner differs. The impossible ones are rejected here too: nothing can
   train them.

Printed: each sweep's wall time and the ratio pruned ÷ to the end; the static check's time per
rejected trial, from what the study recorded (the `check_ms` each trial stores, and the trial's own
start-to-end time in the storage, which adds Optuna's writes), against the goal of 50 ms; the best
trial; and whether SWEEP/best.yaml validates and trains again to the best trial's val_accuracy
(same data, seed and thread count, so the same figure is expected; a difference of one validation
image is allowed for float summation order, and the difference is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "digits_sweep.yaml"
GOAL_MS = 50.0


def _spec_text(epochs: int, trials: int, pruner: str) -> str:
    text = SPEC.read_text()
    for old, new in (
        ("train: {epochs: 3, seed: 0}", f"train: {{epochs: {epochs}, seed: 0}}"),
        ("  trials: 12\n", f"  trials: {trials}\n"),
        ("  pruner: median\n", f"  pruner: {pruner}\n"),
    ):
        if old not in text:
            raise SystemExit(f"{SPEC}: no `{old.strip()}` to change; update benchmarks/sweep.py")
        text = text.replace(old, new)
    return text


def _timed_sweep(spec: Path, out: Path, trials: int, *, resume: bool = False) -> float:
    from cnnspec.sweep.api import sweep

    start = time.perf_counter()
    sweep(spec, out, trials=trials, resume=resume, say=lambda _: None)
    return time.perf_counter() - start


def _study(out: Path, name: str) -> Any:
    import optuna

    return optuna.load_study(study_name=name, storage=f"sqlite:///{(out / 'study.db').resolve()}")


def _best_val_accuracy(run: Path) -> float:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return max(float(json.loads(line)["val_accuracy"]) for line in lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dry", action="store_true", help="4 trials of 1 epoch: checks the script, not the figures")
    parser.add_argument("--keep", type=Path, default=None, help="keep the sweep folders here")
    args = parser.parse_args(argv)
    trials, epochs = (4, 1) if args.dry else (args.trials, args.epochs)

    from optuna.trial import TrialState

    import cnnspec

    folder = args.keep or Path(tempfile.mkdtemp(prefix="cnnspec-sweep-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    pruned_spec, full_spec = folder / "pruned.yaml", folder / "to_the_end.yaml"
    pruned_spec.write_text(_spec_text(epochs, trials, "median"))
    full_spec.write_text(_spec_text(epochs, trials, "none"))
    name = cnnspec.load(pruned_spec).name

    # One untimed epoch first: torch's import, the data's first load and the builder's caches would
    # otherwise count against whichever sweep ran first.
    cnnspec.train(pruned_spec, folder / "warmup", overrides=["train.epochs=1"], progress=False)
    pruned_s = _timed_sweep(pruned_spec, folder / "pruned", trials)
    pruned = _study(folder / "pruned", name)
    order = sorted(pruned.get_trials(deepcopy=False), key=lambda t: t.number)

    # The same candidates in the same order: make the second study, enqueue them, then run it (resume).
    from cnnspec.sweep.study import SweepPlan, local_storage, open_study

    out = folder / "to_the_end"
    plan = SweepPlan(full_spec, full_spec.read_text(encoding="utf-8"), out, local_storage(out), trials)
    out.mkdir(parents=True, exist_ok=True)
    created, _ = open_study(plan, resume=False)
    for t in order:
        created.enqueue_trial(dict(t.params))
    full_s = _timed_sweep(full_spec, out, trials, resume=True)
    full = _study(out, name)

    rejected = [t for t in order if str(t.user_attrs.get("pruned", "")).startswith("static check")]
    check_ms = [float(t.user_attrs["check_ms"]) for t in rejected]
    trial_ms = [(t.datetime_complete - t.datetime_start).total_seconds() * 1000 for t in rejected]
    by_pruner = [t for t in order if str(t.user_attrs.get("pruned", "")).startswith("pruner")]
    same = [dict(a.params) for a in order] == [
        dict(b.params) for b in sorted(full.get_trials(deepcopy=False), key=lambda t: t.number)
    ]

    print(f"{trials} trials of {epochs} epoch(s) on digits; {len(rejected)} impossible, {len(by_pruner)} pruned")
    print(f"pruned:     {pruned_s:7.1f} s")
    print(f"to the end: {full_s:7.1f} s  (the same {trials} trials: {'yes' if same else 'NO'})")
    ratio = pruned_s / full_s
    print(f"ratio pruned ÷ to the end: {ratio:.2f}×")
    if rejected:
        print(
            f"static check per rejected trial: max {max(check_ms):.1f} ms, mean {sum(check_ms) / len(check_ms):.1f} ms"
            f" (trial start to end in the storage: max {max(trial_ms):.1f} ms); goal < {GOAL_MS:.0f} ms:"
            f" {'met' if max(check_ms) < GOAL_MS else 'NOT met'}"
        )

    figures: dict[str, Any] = {
        "trials": trials,
        "epochs": epochs,
        "pruned_seconds": pruned_s,
        "full_seconds": full_s,
        "ratio": ratio,
        "same_trials": same,
        "rejected": [t.number for t in rejected],
        "check_ms": check_ms,
        "trial_ms": trial_ms,
        "pruned_by_pruner": [t.number for t in by_pruner],
    }
    done = [t for t in order if t.state == TrialState.COMPLETE]
    if done:
        best = pruned.best_trial
        print(f"best trial: {best.number}, val_accuracy {best.value:.4f}, {best.params}")
        spec = cnnspec.load(folder / "pruned" / "best.yaml")
        cnnspec.check(spec)  # best.yaml validates
        run = cnnspec.train(spec, folder / "retrain", progress=False)
        again = _best_val_accuracy(run)
        val_images = _val_images(run)
        tolerance = 1 / val_images
        ok = abs(again - best.value) <= tolerance + 1e-12
        print(
            f"best.yaml validates; re-trained: val_accuracy {again:.4f} (difference {again - best.value:+.4f},"
            f" allowed ±{tolerance:.4f} = 1 of {val_images} validation images): {'same' if ok else 'DIFFERENT'}"
        )
        figures.update(best_trial=best.number, best_value=best.value, retrained=again, retrain_ok=ok)
    return figures


def _val_images(run: Path) -> int:
    """The validation split's size: the least count making every epoch's val_accuracy whole images."""
    values = [float(json.loads(line)["val_accuracy"]) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return next(n for n in range(1, 100_000) if all(abs(v * n - round(v * n)) < 1e-6 for v in values))


if __name__ == "__main__":
    main(sys.argv[1:])
