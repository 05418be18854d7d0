"""Which CPU settings train fastest: torch threads, channels_last, torch.compile, and inference-mode evaluation.

    python benchmarks/cpu_defaults.py                  # 3 rounds, ~5–10 minutes on 2 loaded cores
    python benchmarks/cpu_defaults.py --rounds 5 --json figures.json
    python benchmarks/cpu_defaults.py --no-compile     # leave torch.compile out (its first epoch compiles)
    python benchmarks/cpu_defaults.py --dry            # tiny: every path once
    python benchmarks/cpu_defaults.py --omp            # OMP_WAIT_POLICY unset / PASSIVE / 1 thread, whole processes
    python benchmarks/cpu_defaults.py --tuning         # `cnnspec train` against it without each of its CPU defaults

Two specs: SmallCNN (`specs/small_cnn.yaml`, 3×32×32) on 2,048 synthetic images and the digits spec
(`specs/digits.yaml`, 1×8×8, 1,437 training images), each trained in this process by `cnnspec.train`
for 3 epochs without validation. Training images/s is the mean of the epochs after the first (the first
warms up, and under compile compiles). Each round runs every configuration once, in a rotated order, so
a burst of load from other processes falls on different configurations; medians over the rounds and
their ratio to the baseline (cnnspec's defaults: torch's thread count, channels_last, no compile) are
printed. In this process the command's own settings (cnnspec/cpu_tuning.py: how threads wait, the
allocator) do not apply; `--tuning` measures them, in whole `cnnspec train` processes. Evaluation:
the trained model's test pass (`evaluate_model`'s body) under `torch.no_grad` against the same pass
under `torch.inference_mode` (what cnnspec uses), images/s over 5 passes, the best of two.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

# What the cnnspec command sets before torch loads (cnnspec/cli.py); OMP_WAIT_POLICY=ACTIVE measures torch's own.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # after the OpenMP setting, which is read when torch loads

import cnnspec
from cnnspec.training.evaluation import evaluate_model
from cnnspec.training.precision import Precision
from cnnspec.training.sources import TensorSource

ROOT = Path(__file__).resolve().parent.parent
SPECS = {
    "small_cnn": (
        ROOT / "specs" / "small_cnn.yaml",
        ["data.dataset={name: synthetic, num_samples: 2048, num_classes: 10}", "data.val_split=0"],
    ),
    "digits": (ROOT / "specs" / "digits.yaml", ["data.val_split=0"]),
}


def configurations(threads: int, compile: bool) -> dict[str, tuple[int, list[str]]]:
    """name -> (torch threads, extra overrides)."""
    found = {
        f"baseline ({threads} threads)": (threads, []),
        "1 thread": (1, []),
        "channels_last off": (threads, ["train.channels_last=false"]),
    }
    if compile:
        found["compile"] = (threads, ["train.compile=true"])
    return found


def train_rate(spec: Path, overrides: list[str], threads: int, epochs: int, out: Path) -> tuple[float, Path]:
    """Training images/s of the epochs after the first, and the run."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        run = cnnspec.train(spec, out=out, overrides=[*overrides, f"train.epochs={epochs}"], progress=False)
    finally:
        torch.set_num_threads(before)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rates = [r["images_per_second"] for r in records[1:]] or [records[0]["images_per_second"]]
    return statistics.mean(rates), run


def eval_rates(run: Path, passes: int) -> dict[str, float]:
    """The test split's evaluation, images/s under no_grad (cnnspec's) and under inference_mode."""
    from cnnspec.rundir.reader import load_trained, open_run
    from cnnspec.training.augment import BatchAugment
    from cnnspec.training.datasets import load_data

    opened = open_run(run)
    model = load_trained(opened, "last").model.eval()
    data = load_data(opened.spec, need_train=False)
    assert isinstance(data.test, TensorSource)
    spec = opened.spec
    assert spec.data is not None
    normalize = BatchAugment(
        [],
        channels=spec.model.input.channels,
        mean=opened.info.mean,
        std=opened.info.std,
        num_classes=10,
        device=torch.device("cpu"),
    ).normalize
    precision = Precision(torch.device("cpu"), "off")
    rates: dict[str, float] = {}
    plain = evaluate_model.__wrapped__  # type: ignore[attr-defined]  # cnnspec's pass, without its own mode
    for name in ("no_grad", "inference_mode", "no_grad ", "inference_mode "):  # alternating, twice each
        mode = torch.inference_mode if name.strip() == "inference_mode" else torch.no_grad
        start = time.perf_counter()
        for _ in range(passes):
            with mode():
                plain(model, data.test, normalize, batch_size=256, precision=precision)
        rates.setdefault(name.strip(), 0.0)
        rates[name.strip()] = max(rates[name.strip()], passes * len(data.test) / (time.perf_counter() - start))
    return rates


# Whole `cnnspec train` processes: (Python code that runs the command, its environment, extra overrides).
# --omp starts the command's app directly, so that none of the command's own CPU settings
# (cnnspec/cpu_tuning.py) applies: the OpenMP environment is the run's alone.
APP = "from cnnspec.commands.app import app; app()"
MAIN = "from cnnspec.cli import main; main()"
OMP_CONFIGS: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "unset": (APP, {}, []),
    "OMP_WAIT_POLICY=PASSIVE": (APP, {"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "OMP_NUM_THREADS=1": (APP, {"OMP_NUM_THREADS": "1"}, []),
}
# --tuning: the command as it is, and the command without each of its CPU defaults.
UNTUNED_MEMORY = "from cnnspec import cpu_tuning; cpu_tuning.keep_freed_memory = lambda: False; " + MAIN
TUNING_CONFIGS: dict[str, tuple[str, dict[str, str], list[str]]] = {
    "cnnspec train": (MAIN, {}, []),
    "without keeping freed memory": (UNTUNED_MEMORY, {}, []),
    "OMP_WAIT_POLICY=PASSIVE": (MAIN, {"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "train.channels_last=false": (MAIN, {}, ["train.channels_last=false"]),
}


def process_rates(
    configs: dict[str, tuple[str, dict[str, str], list[str]]], rounds: int, epochs: int, out: Path
) -> dict[str, dict[str, object]]:
    """Training images/s (epochs after the first) of each spec in whole processes, one per setting, alternating."""
    import subprocess
    import sys

    env_base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env_base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    figures: dict[str, dict[str, object]] = {}
    names = list(configs)
    for model, (spec, base) in SPECS.items():
        rates: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                code, env, extra = configs[name]
                run = out / "process" / model
                sets = [a for o in [*base, *extra, f"train.epochs={epochs}"] for a in ("--set", o)]
                subprocess.run(
                    [sys.executable, "-c", code, "train", str(spec), "--out", str(run), "--quiet", *sets],
                    env={**env_base, **env},
                    check=True,
                    capture_output=True,
                )
                records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
                rates[name].append(statistics.mean(rec["images_per_second"] for rec in records[1:]))
                print(f"{model} round {r + 1} {name}: {rates[name][-1]:,.0f} img/s", flush=True)
        base_rate = statistics.median(rates[names[0]])
        figures[model] = {
            name: {"median": statistics.median(v), "ratio": statistics.median(v) / base_rate, "runs": v}
            for name, v in rates.items()
        }
        print(f"\n{model}: median images/s over {rounds} rounds (ratio to {names[0]})")
        for name, v in rates.items():
            print(f"  {name:30s} {statistics.median(v):>10,.0f}  ×{statistics.median(v) / base_rate:.2f}")
        print()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--dry", action="store_true", help="one round, 2 epochs")
    parser.add_argument("--omp", action="store_true", help="compare OpenMP settings over whole processes instead")
    parser.add_argument(
        "--tuning", action="store_true", help="the command against the command without each CPU default"
    )
    args = parser.parse_args()
    if args.dry:
        args.rounds, args.epochs = 1, 2
    if args.omp or args.tuning:
        with tempfile.TemporaryDirectory(prefix="cnnspec-cpu-process-") as tmp:
            found = process_rates(OMP_CONFIGS if args.omp else TUNING_CONFIGS, args.rounds, args.epochs, Path(tmp))
        if args.json is not None:
            args.json.write_text(json.dumps(found, indent=2))
        return
    threads = torch.get_num_threads()
    configs = configurations(threads, not args.no_compile)
    names = list(configs)
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="cnnspec-cpu-defaults-") as tmp:
        for model, (spec, base) in SPECS.items():
            rates: dict[str, list[float]] = {name: [] for name in names}
            evals: dict[str, list[float]] = {"no_grad": [], "inference_mode": []}
            for r in range(args.rounds):
                order = names[r % len(names) :] + names[: r % len(names)]
                for name in order:
                    n_threads, extra = configs[name]
                    start = time.perf_counter()
                    rate, run = train_rate(spec, [*base, *extra], n_threads, args.epochs, Path(tmp) / model / name)
                    rates[name].append(rate)
                    print(f"{model} round {r + 1} {name}: {rate:,.0f} img/s ({time.perf_counter() - start:.0f} s)")
                    if name == names[0]:
                        for mode, value in eval_rates(run, 5).items():
                            evals[mode].append(value)
            base_rate = statistics.median(rates[names[0]])
            table = {
                name: {"median": statistics.median(v), "ratio": statistics.median(v) / base_rate, "runs": v}
                for name, v in rates.items()
            }
            no_grad = statistics.median(evals["no_grad"])
            table["eval inference_mode"] = {
                "median": statistics.median(evals["inference_mode"]),
                "ratio": statistics.median(evals["inference_mode"]) / no_grad,
                "runs": evals["inference_mode"],
            }
            table["eval no_grad"] = {"median": no_grad, "ratio": 1.0, "runs": evals["no_grad"]}
            figures[model] = table
            print(f"\n{model}: median images/s over {args.rounds} rounds (ratio to the baseline)")
            for name, row in table.items():
                print(f"  {name:28s} {row['median']:>10,.0f}  ×{row['ratio']:.2f}")
            print()
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
