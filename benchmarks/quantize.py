"""INT8 ÷ fp32 throughput of `cnnspec quantize` for SmallCNN and ResNet-18 on this CPU.

    python benchmarks/quantize.py                        # batch 1 and 64, 2 s a timing
    python benchmarks/quantize.py --seconds 0.2 --threads 1 --models SmallCNN   # quick

Each model is an untrained run (cnnspec.rundir.untrained.init_run: speed does not depend on the
weight values) of its spec on CIFAR-shaped synthetic images (3×32×32, 10 classes; no download),
exported through the gate and quantized by `quantize_run` (static QDQ, uint8 activations,
per-channel int8 weights, MinMax calibration on 64 training images). Accuracy figures of
untrained weights mean nothing here and are not printed (tests/export/test_export_quantize.py
checks accuracy on a trained run). The goal: INT8 ≥ 1.5× fp32 throughput for ResNet-18 at batch 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from cnnspec.deploy.exporter import export_run
from cnnspec.deploy.quantize import QuantizeReport, cpu_info, quantize_run
from cnnspec.rundir.untrained import init_run
from cnnspec.spec.overrides import load_with_overrides

ROOT = Path(__file__).resolve().parent.parent
MODELS = {"SmallCNN": ROOT / "specs" / "small_cnn.yaml", "ResNet-18": ROOT / "specs" / "resnet18.yaml"}
CIFAR_SHAPED = [
    "model.input.height=32",
    "model.input.width=32",
    "data.dataset.name=synthetic",
    "data.dataset.num_samples=320",
    "data.augment=[]",
]
GOAL = 1.5


def run_one(name: str, batches: list[int], seconds: float, folder: Path) -> QuantizeReport:
    spec = load_with_overrides(MODELS[name], CIFAR_SHAPED)
    if name == "ResNet-18":
        spec = load_with_overrides(MODELS[name], [*CIFAR_SHAPED, "model.layers.10.linear.out_features=10"])
    run = init_run(spec, folder / name)
    export_run(run)
    return quantize_run(run, calibration=64, max_drop=100.0, out=folder / f"{name}.int8.onnx", batches=batches,
                        seconds=seconds)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--batch", default="1,64", help="comma-separated batch sizes (default 1,64)")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timing per model and batch size")
    parser.add_argument("--models", default=",".join(MODELS), help=f"subset of {', '.join(MODELS)}")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both models (default: torch's)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batch.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)  # quantize_run gives both sessions torch's count
    names = [n.strip() for n in args.models.split(",")]
    if any(n not in MODELS for n in names):
        parser.error(f"choose models from {list(MODELS)}")
    cpu = cpu_info()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"CPU: {cpu.name}; int8 instructions: {', '.join(cpu.flags) or 'none'}; {torch.get_num_threads()} threads;"
          f" load average {load}")  # fmt: skip
    results: dict[str, QuantizeReport] = {}
    with tempfile.TemporaryDirectory(prefix="cnnspec-quantize-bench-") as folder:
        for name in names:
            results[name] = run_one(name, batches, args.seconds, Path(folder))
    print("| model | batch | fp32 img/s | INT8 img/s | fp32 median ms | INT8 median ms | INT8 ÷ fp32 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, report in results.items():
        for r in report.speed:
            print(f"| {name} | {r.batch} | {r.fp32.images_per_second(r.batch):,.0f} |"
                  f" {r.int8.images_per_second(r.batch):,.0f} | {r.fp32.median_ms:.3f} | {r.int8.median_ms:.3f} |"
                  f" {r.speedup:.2f}× |")  # fmt: skip
    for name, report in results.items():
        print(f"{name}: {report.macs / 1e6:.1f} M MACs an image; file {report.fp32_bytes / 1e6:.1f} MB →"
              f" {report.int8_bytes / 1e6:.1f} MB; quantized ops {', '.join(report.settings['ops'])}")  # fmt: skip
        for line in report.verdict:
            print(f"  {line}")
    if "ResNet-18" in results and 1 in batches:
        speedup = next(r.speedup for r in results["ResNet-18"].speed if r.batch == 1)
        print(f"ResNet-18 at batch 1: INT8 is {speedup:.2f}× fp32 ({'meets' if speedup >= GOAL else 'misses'} the"
              f" {GOAL}× goal)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
