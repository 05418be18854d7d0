"""The measuring half of benchmarks/gpu_check.sh: training images/s on a lent GPU, written to a file.

    PYTHONPATH=. python benchmarks/gpu_bench.py --out gpu_check_results          # on a GPU, about 5 minutes
    PYTHONPATH=. python benchmarks/gpu_bench.py --dry --out /tmp/x               # CPU, tiny sizes, seconds

Measured, each on CIFAR-shaped (3×32×32) synthetic images held on the device:

- `matrix`: training images/s of SmallCNN (built by cnnspec from specs/small_cnn.yaml) and
  torchvision's ResNet-18 (10 classes), in fp32, AMP fp16 (with a GradScaler) and AMP bf16,
  each with and without channels_last and torch.compile (24 figures);
- `hand_loop` against `cnnspec_train`: a plain hand-written PyTorch loop (SmallCNN, SGD,
  CrossEntropy, the usual plain PyTorch style, fp32) and `cnnspec.train(specs/small_cnn.yaml)` on the
  same synthetic data and device, and their ratio;
- `speed_spec`: specs/cifar10_speed.yaml trained on synthetic data, epochs/s.

Every measurement runs a fixed time (`--seconds`) after its warm-up steps, and the whole run has a
budget (`--budget`): a measurement that would start after it is recorded as skipped, so the
script always ends in time and says what it left out. The figures are rewritten to
OUT/gpu_check.json and OUT/gpu_check.txt after every measurement, so a run cut short keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SMALL_CNN = ROOT / "specs" / "small_cnn.yaml"
SPEED_SPEC = ROOT / "specs" / "cifar10_speed.yaml"
PRECISIONS = ("fp32", "fp16", "bf16")


class HandSmallCNN(nn.Module):
    """SmallSmallCNN written by hand, as a plain PyTorch script writes its networks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc1 = nn.Linear(64 * 8 * 8, 128)
        self.drop = nn.Dropout(0.2)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc2(self.drop(F.relu(self.fc1(torch.flatten(x, 1)))))


class Results:
    """The figures so far, written out after every measurement (a run cut short keeps them)."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = out
        self.data: dict[str, Any] = {**header, "matrix": {}, "skipped": []}
        out.mkdir(parents=True, exist_ok=True)

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.write()

    def write(self) -> None:
        (self.out / "gpu_check.json").write_text(json.dumps(self.data, indent=2) + "\n")
        (self.out / "gpu_check.txt").write_text(self.text())

    def text(self) -> str:
        d = self.data
        lines = [f"gpu_check on {d['device_name']} (torch {d['torch']}, dry: {d['dry']})"]
        if "pytest_gpu" in d:
            lines.append(f"pytest -m gpu: exit {d['pytest_gpu']['exit_code']}, {d['pytest_gpu']['summary']}")
        lines.append("training images/s (model, precision, channels_last, compile):")
        for name, rate in d["matrix"].items():
            lines.append(f"  {name:<40} {rate:>12,.0f}")
        for key in ("hand_loop_images_per_second", "cnnspec_train_images_per_second", "cnnspec_vs_hand_ratio"):
            if key in d:
                lines.append(f"{key}: {d[key]:,.3f}")
        if "speed_spec_epochs_per_second" in d:
            lines.append(f"specs/cifar10_speed.yaml epochs/s (synthetic data): {d['speed_spec_epochs_per_second']:.3f}")
        for item in d["skipped"]:
            lines.append(f"skipped: {item}")
        return "\n".join(lines) + "\n"


class Budget:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step: Callable[[int], None], device: torch.device, warmup: int, seconds: float, min_steps: int) -> float:
    """Steps per second of `step`, run for `seconds` (and at least `min_steps`) after `warmup` steps."""
    for i in range(warmup):
        step(i)
    _sync(device)
    done, start = 0, time.perf_counter()
    while done < min_steps or time.perf_counter() - start < seconds:
        step(done)
        done += 1
        if done % 10 == 0 or done <= min_steps:
            _sync(device)
    _sync(device)
    return done / (time.perf_counter() - start)


def synthetic(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 3, 32, 32, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def make_model(name: str) -> nn.Module:
    if name == "smallcnn":
        import cnnspec
        from cnnspec.spec.load import load

        return cnnspec.build(load(SMALL_CNN))
    import torchvision

    return torchvision.models.resnet18(num_classes=10)


def train_rate(
    model_name: str, precision: str, channels_last: bool, compiled: bool, args: argparse.Namespace, device: torch.device
) -> float:
    """Training images/s of one configuration: forward, loss, backward and an SGD step per batch."""
    torch.manual_seed(0)
    model = make_model(model_name).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    # The dry run compiles with the "eager" backend: the same torch.compile path, without inductor's minutes on a CPU.
    backend = "eager" if args.dry else "inductor"
    forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model, backend=backend) if compiled else model  # type: ignore[assignment]
    x_all, y_all = synthetic(args.images, device)
    x_all = x_all.contiguous(memory_format=fmt)
    batches = max(1, args.images // args.batch_size)

    def step(i: int) -> None:
        k = (i % batches) * args.batch_size
        x, y = x_all[k : k + args.batch_size], y_all[k : k + args.batch_size]
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return args.batch_size * time_steps(step, device, args.warmup, args.seconds, args.min_steps)


def hand_loop_rate(args: argparse.Namespace, device: torch.device, images: int, epochs: int) -> float:
    """The plain loop: SmallCNN, SGD, CrossEntropy, batch 128 over data on the device; images/s after epoch 1."""
    torch.manual_seed(0)
    x_all, y_all = synthetic(images, device)
    model = HandSmallCNN().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    criterion = nn.CrossEntropyLoss()
    rates = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(images, device=device)
        _sync(device)
        start = time.perf_counter()
        for k in range(0, images, 128):
            idx = order[k : k + 128]
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
        _sync(device)
        rates.append(images / (time.perf_counter() - start))
    later = rates[1:] or rates
    return sum(later) / len(later)


def cnnspec_train(spec: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """`cnnspec.train` on synthetic data; the run's per-epoch metrics."""
    import cnnspec

    with tempfile.TemporaryDirectory() as tmp:
        run = cnnspec.train(spec, out=Path(tmp) / "run", overrides=overrides, progress=False)
        return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def synthetic_overrides(images: int, epochs: int, device: torch.device) -> list[str]:
    return [
        "data.dataset.name=synthetic",
        f"data.dataset.num_samples={images}",
        "data.dataset.num_classes=10",
        "data.val_split=0",
        f"train.epochs={epochs}",
        f"train.device={device.type}",
    ]


def read_pytest(log: Path | None, exit_code: int | None) -> dict[str, Any] | None:
    if log is None:
        return None
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.exists() else []
    summary = next(
        (
            ln
            for ln in reversed(lines)
            if " in " in ln
            and ("passed" in ln or "skipped" in ln or "error" in ln or "failed" in ln or "deselected" in ln)
        ),
        "no summary line",
    )
    return {"exit_code": exit_code, "summary": summary.strip("= ")}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--dry", action="store_true", help="tiny sizes on the CPU, seconds (the test suite runs this)")
    p.add_argument("--out", type=Path, default=Path("gpu_check_results"), help="folder for gpu_check.json/.txt")
    p.add_argument("--seconds", type=float, default=2.0, help="timed seconds per matrix measurement")
    p.add_argument("--budget", type=float, default=200.0, help="seconds for all measurements together")
    p.add_argument("--pytest-log", type=Path, help="output of `pytest -m gpu`, summarised into the results")
    p.add_argument("--pytest-exit", type=int, help="its exit code")
    args = p.parse_args(argv)
    if args.dry:  # one step each after one warm-up: shows every path runs, measures nothing useful
        args.images, args.batch_size, args.warmup, args.min_steps, args.seconds = 8, 4, 1, 1, 0.0
    else:
        args.images, args.batch_size, args.warmup, args.min_steps = 8192, 512, 5, 10
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    device = torch.device("cpu" if args.dry or not torch.cuda.is_available() else "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()})"
    )
    results = Results(
        args.out, {"device_name": name, "torch": torch.__version__, "dry": args.dry, "batch_size": args.batch_size}
    )
    pytest_gpu = read_pytest(args.pytest_log, args.pytest_exit)
    if pytest_gpu is not None:
        results.put("pytest_gpu", pytest_gpu)
    budget = Budget(args.budget)

    def skip(what: str) -> None:
        results.data["skipped"].append(f"{what} (over the {args.budget:.0f} s budget)")
        results.write()

    # The plain loop and cnnspec first: the ratio is the figure the issue asks for most.
    images, epochs = (64, 2) if args.dry else (20_000, 3)
    hand = hand_loop_rate(args, device, images, epochs)
    metrics = cnnspec_train(
        SMALL_CNN, [*synthetic_overrides(images, epochs, device), "train.amp=off", "data.batch_size=128"]
    )
    later = [m["images_per_second"] for m in metrics[1:]] or [metrics[0]["images_per_second"]]
    ours = sum(later) / len(later)
    results.put("hand_loop_images_per_second", hand)
    results.put("cnnspec_train_images_per_second", ours)
    results.put("cnnspec_vs_hand_ratio", ours / hand)

    if SPEED_SPEC.exists():
        n, e = (64, 1) if args.dry else (50_000, 3)
        over = synthetic_overrides(n, e, device) + (["data.batch_size=16", "train.amp=off"] if args.dry else [])
        metrics = cnnspec_train(SPEED_SPEC, over)
        timed = metrics[1:] or metrics
        results.put("speed_spec_epochs_per_second", len(timed) / sum(m["seconds"] for m in timed))
        results.put("speed_spec_images", n)
    else:
        results.data["skipped"].append("specs/cifar10_speed.yaml (not in this tree)")

    # Uncompiled before compiled: a compile costs tens of seconds, so the budget runs out on those first.
    for compiled in (False, True):
        for model_name in ("smallcnn", "resnet18"):
            for precision in PRECISIONS:
                for channels_last in (False, True):
                    layout = "channels_last" if channels_last else "nchw"
                    key = f"{model_name} {precision} {layout} {'compile' if compiled else 'eager'}"
                    # CPU autocast in fp16 is very slow: the dry run takes that path with SmallCNN alone.
                    if precision == "fp16" and device.type == "cpu" and model_name != "smallcnn":
                        continue
                    if budget.left() <= 0:
                        skip(key)
                        continue
                    results.data["matrix"][key] = train_rate(
                        model_name, precision, channels_last, compiled, args, device
                    )
                    results.write()
    results.put("seconds_left_in_budget", budget.left())
    sys.stdout.write(results.text())
    return results.data


if __name__ == "__main__":
    main()
