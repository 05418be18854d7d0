"""Inference throughput: onnxruntime vs torch eager for SmallCNN and ResNet-18.

    python benchmarks/inference.py                      # CPU here; on a GPU machine: CUDA provider vs torch on CUDA
    python benchmarks/inference.py --device cpu --batch 1,64 --seconds 2 --markdown

Each model is an untrained run (cnnspec.rundir.untrained.init_run: speed does not depend on
the weight values), exported through the full gate, then timed by cnnspec's `bench`
(same input for both engines, same thread count on a CPU). On a machine where torch
sees a GPU and onnxruntime's CUDA provider works, `--device auto` compares the CUDA
provider with torch eager on CUDA (both timed host array in, host logits out).
The goal on a CPU is onnxruntime ≥ 1.3× torch eager at batch 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import torch

from cnnspec.deploy.bench import BenchResult, bench
from cnnspec.deploy.exporter import export_run
from cnnspec.rundir.untrained import init_run

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"SmallCNN": ROOT / "specs" / "small_cnn.yaml", "ResNet-18": ROOT / "specs" / "resnet18.yaml"}
GOAL_BATCH_1 = 1.3


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str) -> str:
    if device == "cuda":
        return f"GPU: {torch.cuda.get_device_name(0)}"
    n = torch.get_num_threads()
    return f"CPU: {cpu_name()}, {n} thread{'s' if n != 1 else ''}"


def run_one(name: str, spec: Path, batches: list[int], device: str, seconds: float, folder: Path) -> BenchResult:
    run = init_run(spec, folder / name)
    report = export_run(run)
    print(f"{name}: exported {report.bytes / 1e6:.1f} MB, gate max|Δ| {max(p.max_abs_diff for p in report.parity):.1e}")
    return bench(run, batches, device=device, min_seconds=seconds)  # type: ignore[arg-type]


def print_table(results: dict[str, BenchResult], markdown: bool) -> None:
    header = [
        "model",
        "batch",
        "torch eager img/s",
        "onnxruntime img/s",
        "torch median ms",
        "ORT median ms",
        "ORT ÷ torch",
    ]
    rows = [
        [
            name,
            str(r.batch),
            f"{r.torch.images_per_second(r.batch):,.0f}",
            f"{r.onnx.images_per_second(r.batch):,.0f}",
            f"{r.torch.median_ms:.2f}",
            f"{r.onnx.median_ms:.2f}",
            f"{r.ratio:.2f}×",
        ]
        for name, result in results.items()
        for r in result.rows
    ]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", default="1,64", help="comma-separated batch sizes (default 1,64)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per engine and batch size")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {', '.join(MODELS)}")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both engines (default: torch's)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs/benchmarks.md)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)  # bench gives onnxruntime the same count
    names = [n.strip() for n in args.models.split(",")]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(MODELS)}")
    results: dict[str, BenchResult] = {}
    with tempfile.TemporaryDirectory(prefix="cnnspec-inference-") as folder:
        for name in names:
            results[name] = run_one(name, MODELS[name], batches, args.device, args.seconds, Path(folder))
    first = next(iter(results.values()))
    where = machine(first.device)
    if first.device == "cpu" and torch.cuda.is_available():
        where += " (torch sees a GPU but the comparison ran on the CPU)"
    elif first.device == "cpu":
        where += " (no GPU here: the CUDA-provider comparison runs where torch sees one)"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"\n{where}; onnxruntime provider: {first.provider}; torch {torch.__version__}; load average {load}")
    for note in {n for r in results.values() for n in r.notes if "temporary" not in n}:
        print(f"note: {note}")
    print_table(results, args.markdown)
    if first.device == "cpu" and 1 in batches:
        for name, result in results.items():
            ratio = next(r.ratio for r in result.rows if r.batch == 1)
            verdict = "meets" if ratio >= GOAL_BATCH_1 else "misses"
            print(f"{name}: onnxruntime is {ratio:.2f}× torch eager at batch 1 ({verdict} the {GOAL_BATCH_1}× goal)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
