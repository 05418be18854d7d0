"""Which CPU settings train fastest: torch threads, channels_last, torch.compile, and inference-mode evaluation.

    python benchmarks/cpu_defaults.py                  # 3 rounds, ~5–10 minutes on 2 loaded cores
    python benchmarks/cpu_defaults.py --rounds 5 --json figures.json
    python benchmarks/cpu_defaults.py --no-compile     # leave torch.compile out (its first epoch compiles)
    python benchmarks/cpu_defaults.py --dry            # tiny: every path once
    python benchmarks/cpu_defaults.py --omp            # OMP_WAIT_POLICY unset / PASSIVE / 1 thread, whole processes

Two specs: SmallCNN (`specs/small_cnn.yaml`, 3×32×32) on 2,048 synthetic images and the digits spec
(`specs/digits.yaml`, 1×8×8, 1,437 training images), each trained in this process by `cnnspec.train`
for 3 epochs without validation. Training images/s is the mean of the epochs after the first (the first
warms up, and under compile compiles). Each round runs every configuration once, in a rotated order, so
a burst of load from other processes falls on different configurations; medians over the rounds and
their ratio to the baseline (cnnspec's defaults: torch's thread count, no channels_last, no compile) are
printed. Evaluation: the trained model's test pass (`evaluate_model`'s body) under `torch.no_grad` against
the same pass under `torch.inference_mode` (what cnnspec uses), images/s over 5 passes, the best of two.
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
        "channels_last": (threads, ["train.channels_last=true"]),
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


# --omp: whole `cnnspec train` processes, the OpenMP environment set per run. The command's app is
# started directly, so that the command's own OMP_WAIT_POLICY default does not apply to the "unset" runs.
OMP_CONFIGS = {
    "unset": {},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def omp_rates(rounds: int, epochs: int, out: Path) -> dict[str, dict[str, object]]:
    """Training images/s (epochs after the first) of each spec under each OpenMP setting, alternating."""
    import subprocess
    import sys

    env_base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env_base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    figures: dict[str, dict[str, object]] = {}
    names = list(OMP_CONFIGS)
    for model, (spec, base) in SPECS.items():
        rates: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                run = out / "omp" / model
                sets = [a for o in [*base, f"train.epochs={epochs}"] for a in ("--set", o)]
                app = "from cnnspec.commands.app import app; app()"
                subprocess.run(
                    [sys.executable, "-c", app, "train", str(spec), "--out", str(run), "--quiet", *sets],
                    env={**env_base, **OMP_CONFIGS[name]},
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
        print(f"\n{model}: median images/s over {rounds} rounds (ratio to unset)")
        for name, v in rates.items():
            print(f"  {name:28s} {statistics.median(v):>10,.0f}  ×{statistics.median(v) / base_rate:.2f}")
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
    args = parser.parse_args()
    if args.dry:
        args.rounds, args.epochs = 1, 2
    if args.omp:
        with tempfile.TemporaryDirectory(prefix="cnnspec-cpu-omp-") as tmp:
            omp = omp_rates(args.rounds, args.epochs, Path(tmp))
        if args.json is not None:
            args.json.write_text(json.dumps(omp, indent=2))
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
