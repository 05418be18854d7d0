"""How fast is the static path? `cnnspec validate` against `import torch`, and against spec size.

    python benchmarks/validate_speed.py [--runs 7] [--sizes 10,100,1000,10000]

Prints
  1. the median wall time of `cnnspec validate specs/resnet18.yaml` (a fresh process each
     run), of `python -c "import torch"`, and their ratio (goal: ≤ 0.15);
  2. for generated specs of 10 … 10,000 layers written out one by one: the median wall
     time of `cnnspec validate FILE`, the in-process time of load + check, and the time
     per layer (goal: linear growth, 10,000 layers under 2 s);
  3. for each spec in specs/zoo/: the median wall and CPU time of `cnnspec validate FILE`,
     its expanded layer count, and both as a ratio against specs/resnet18.yaml (goal: ≤ 2).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cnnspec_command() -> list[str]:
    """The console script pip installed beside this interpreter (what users run), else `python -m cnnspec`.

    Not a version manager's shim found on PATH first (pyenv's is a bash script that costs a
    process start of its own): that would time the shim, not cnnspec.
    """
    script = Path(sys.executable).parent / "cnnspec"
    if script.is_file():
        return [str(script)]
    found = shutil.which("cnnspec")
    return [found] if found else [sys.executable, "-m", "cnnspec"]


# As on a user's machine, modules run from cached bytecode: the untimed first run writes the
# caches even where PYTHONDONTWRITEBYTECODE is set for development (as on our machines).
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str], runs: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of `cmd` over `runs` fresh processes.

    One untimed run first warms the file cache. CPU time is reported too because wall time
    on a shared machine also counts the time other processes held the cores.
    """
    subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False, env=ENV)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False, env=ENV)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.decode()}")
    return statistics.median(walls), statistics.median(cpus)


def generated_spec(layers: int) -> str:
    """A valid spec of exactly `layers` layers, written one per line (no repeat sugar)."""
    lines = [
        f"name: generated-{layers}",
        "model:",
        "  input: {channels: 3, height: 32, width: 32}",
        "  layers:",
    ]
    body = layers - 3  # the head: global_avgpool, flatten is not needed, linear
    for i in range(body):
        if i % 2 == 0:
            lines.append(f"    - conv2d: {{id: c{i}, out_channels: 8, kernel_size: 3, padding: 1}}")
        else:
            lines.append("    - relu")
    lines += [
        "    - global_avgpool",
        "    - dropout: {p: 0.1}",
        "    - linear: {out_features: 10}",
    ]
    return "\n".join(lines) + "\n"


def in_process(path: Path, runs: int) -> float:
    """Median time of load + check in this (already warm) process."""
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import load

    times = []
    for _ in range(runs):
        start = time.perf_counter()
        check(load(path))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement; the median is reported")
    parser.add_argument("--sizes", default="10,100,1000,10000", help="layer counts of the generated specs")
    parser.add_argument("--zoo", default="specs/zoo/*.yaml", help="the zoo specs to time ('' for none)")
    args = parser.parse_args()
    cli = cnnspec_command()

    validate, validate_cpu = timed([*cli, "validate", "specs/resnet18.yaml"], args.runs)
    torch, torch_cpu = timed([sys.executable, "-c", "import torch"], args.runs)
    ratio, cpu_ratio = validate / torch, validate_cpu / torch_cpu
    verdict = "met" if ratio <= 0.15 else "NOT met"
    print(f"medians of {args.runs} runs                  wall        CPU")
    print(f"cnnspec validate specs/resnet18.yaml   {validate:7.3f} s  {validate_cpu:7.3f} s")
    print(f'python -c "import torch"               {torch:7.3f} s  {torch_cpu:7.3f} s')
    print(f"ratio                                  {ratio:7.3f}    {cpu_ratio:7.3f}    (goal ≤ 0.15 wall: {verdict})")
    print()
    print(f"{'layers':>8} {'validate (CLI)':>15} {'CPU':>9} {'load+check':>12} {'per layer':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        worst = 0.0
        for n in (int(s) for s in args.sizes.split(",")):
            path = Path(tmp) / f"gen_{n}.yaml"
            path.write_text(generated_spec(n), encoding="utf-8")
            cli_time, cli_cpu = timed([*cli, "validate", str(path)], max(3, args.runs // 2))
            inner = in_process(path, max(3, args.runs // 2))
            worst = max(worst, cli_time) if n >= 10_000 else worst
            print(f"{n:>8} {cli_time:>13.3f} s {cli_cpu:>7.3f} s {inner:>10.4f} s {inner / n * 1e6:>9.1f} µs")
    if worst:
        print(f"\n10,000 layers: {worst:.2f} s (goal < 2 s: {'met' if worst < 2 else 'NOT met'})")
    if args.zoo:
        zoo(cli, validate, validate_cpu, sorted(ROOT.glob(args.zoo)), args.runs)


def zoo(cli: list[str], base: float, base_cpu: float, specs: list[Path], runs: int) -> None:
    """Each zoo spec's `cnnspec validate` time against resnet18's (the goal: at most twice)."""
    from cnnspec.checker.checker import check
    from cnnspec.spec.load import load

    print(f"\n{'zoo spec':<24} {'layers':>6} {'validate':>10} {'CPU':>9} {'÷ resnet18':>11} {'CPU ÷':>7}")
    worst = 0.0
    for path in specs:
        layers = len(check(load(path)).nodes)
        wall, cpu = timed([*cli, "validate", str(path.relative_to(ROOT))], runs)
        worst = max(worst, cpu / base_cpu)  # CPU: wall time on a shared machine counts the others' time too
        print(f"{path.stem:<24} {layers:>6} {wall:>8.3f} s {cpu:>7.3f} s {wall / base:>11.2f} {cpu / base_cpu:>7.2f}")
    if specs:
        print(f"\nslowest zoo spec: {worst:.2f}× resnet18's CPU time (goal ≤ 2: {'met' if worst <= 2 else 'NOT met'})")


if __name__ == "__main__":
    main()
