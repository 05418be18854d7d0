"""Training throughput: a plain PyTorch loop (the baseline) against `cnnspec train`, on the same data.

    python benchmarks/train_throughput.py                 # ~2 minutes on a 2-core CPU
    python benchmarks/train_throughput.py --repeat 3      # medians of 3 back-to-back pairs (steadier on busy cores)
    python benchmarks/train_throughput.py --images 50000 --epochs 3 --data-batches 0   # a CIFAR-10-sized epoch

Both sides train SmallCNN (specs/small_cnn.yaml is the same network) with SGD
(lr 0.1, momentum 0.9, weight decay 5e-4), batch 128, random crop (padding 4) and
horizontal flip, on CIFAR-shaped (3×32×32) synthetic images made by cnnspec's own
`synthetic` dataset, so no download is needed and both read identical pixels.

- baseline: torchvision PIL transforms (RandomCrop, RandomHorizontalFlip, ToTensor) in a
  DataLoader with num_workers=2, the usual hand-written PyTorch pipeline;
- cnnspec: `cnnspec.train(specs/small_cnn.yaml)`, data held as one uint8 tensor on the
  device and augmented per batch.

Reported: training images/s of each (the epochs after the first, which warms up) and
their ratio; the data path alone (batches produced and augmented, no model) and its
ratio. On a GPU it also trains cnnspec with AMP (fp16) against fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

import cnnspec
from cnnspec.layers.base import pair
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.training.augment import BatchAugment
from cnnspec.training.datasets import make_synthetic
from cnnspec.training.loop import epoch_order
from cnnspec.training.sources import TensorSource

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "small_cnn.yaml"
SEED = 0  # specs/small_cnn.yaml's train.seed: cnnspec's synthetic set is made from it


# --- the baseline: SmallCNN and its data pipeline, hand-written in plain PyTorch -----------


class SmallCNN(nn.Module):
    def __init__(self, in_ch: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 32, kernel_size=3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 8 * 8, 128),
            nn.ReLU(inplace=True),
            nn.Dropout(0.2),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = self.pool(F.relu(self.bn2(self.conv2(x))))
        return self.head(x)


class ArrayImages(Dataset):
    """What torchvision's CIFAR10 does per item: a PIL image from an HWC uint8 array, then the transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: object):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])  # type: ignore[operator]


def baseline_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, workers: int, cuda: bool
) -> DataLoader:
    from torchvision import transforms

    train_tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
    )
    hwc = images.permute(0, 2, 3, 1).contiguous().numpy()
    ds = ArrayImages(hwc, labels.numpy(), train_tf)
    return DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=cuda)


def baseline_training(
    images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> float:
    """The baseline training loop; returns images/s over the epochs after the first."""
    torch.manual_seed(SEED)
    train_dl = baseline_loader(images, labels, args.batch_size, args.workers, device.type == "cuda")
    model = SmallCNN(3, 10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=100)
    criterion = nn.CrossEntropyLoss()
    rates = []
    for _ in range(args.epochs):
        model.train()
        seen, start = 0, time.perf_counter()
        for x, y in train_dl:
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            opt.step()
            seen += x.size(0)
        _sync(device)
        rates.append(seen / (time.perf_counter() - start))
        sched.step()
    return _steady(rates)


def cnnspec_training(args: argparse.Namespace, amp: str = "off", device: str = "auto") -> float:
    """`cnnspec train specs/small_cnn.yaml` on the same synthetic images; images/s after the first epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        run = cnnspec.train(
            SPEC,
            out=Path(tmp) / "run",
            overrides=[*_overrides(args), f"train.epochs={args.epochs}", f"train.amp={amp}", f"train.device={device}"],
            progress=False,
        )
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return _steady([m["images_per_second"] for m in metrics])


def _overrides(args: argparse.Namespace) -> list[str]:
    return [
        "data.dataset.name=synthetic",
        f"data.dataset.num_samples={args.images}",
        "data.dataset.num_classes=10",
        "data.val_split=0",
        f"data.batch_size={args.batch_size}",
    ]


# --- the data path alone ------------------------------------------------------------------


def baseline_data_path(
    images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> float:
    loader = baseline_loader(images, labels, args.batch_size, args.workers, device.type == "cuda")
    seen, start = 0, time.perf_counter()
    for _ in range(2):  # the first pass includes starting the workers, as every baseline epoch does
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            seen += x.size(0)
            if args.data_batches and seen >= args.data_batches * args.batch_size:
                break
    _sync(device)
    return seen / (time.perf_counter() - start)


def cnnspec_data_path(
    images: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace, device: torch.device
) -> float:
    spec = load_with_overrides(SPEC, _overrides(args))
    assert spec.data is not None
    source = TensorSource(images, labels).to(device)
    augment = BatchAugment(
        [i.op for i in spec.data.augment], channels=3, mean=None, std=None, num_classes=10, device=device
    )
    crop = pair(spec.data.augment[0].op.size)  # type: ignore[attr-defined]
    assert crop == (32, 32)
    seen, start = 0, time.perf_counter()
    for epoch in (1, 2):
        for x, y in source.batches(epoch_order(len(source), SEED, epoch), args.batch_size, device):
            x, y = augment(x, y)
            seen += x.shape[0]
            if args.data_batches and seen >= args.data_batches * args.batch_size:
                break
    _sync(device)
    return seen / (time.perf_counter() - start)


# --- helpers ------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _steady(rates: list[float]) -> float:
    later = rates[1:] or rates
    return sum(later) / len(later)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=4096, help="synthetic 3×32×32 training images (CIFAR-10: 50000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per side; the first is a warm-up")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="the baseline DataLoader's num_workers")
    parser.add_argument(
        "--data-batches", type=int, default=40, help="batches timed for the data path alone (0: 2 epochs)"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch intra-op threads for both sides (0: torch's default)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="measure both sides this many times; report medians")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    images, labels = make_synthetic((3, 32, 32), args.images, 10, SEED)  # what cnnspec's synthetic dataset holds

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    if hasattr(os, "getloadavg"):  # other processes on the same cores change CPU figures a lot
        where += f" (load average before: {os.getloadavg()[0]:.1f})"
    print(f"SmallCNN, {args.images} synthetic 3×32×32 images, batch {args.batch_size}, {args.epochs} epochs; {where}")
    # Each repeat measures the baseline and cnnspec back to back; the reported figure is the median over
    # repeats, so a burst of load from other processes skews one pair, not the result.
    runs: dict[str, list[float]] = {k: [] for k in ("baseline_train", "cnnspec_train", "baseline_data", "cnnspec_data")}
    for _ in range(args.repeat):
        runs["baseline_train"].append(baseline_training(images, labels, args, device))
        runs["cnnspec_train"].append(cnnspec_training(args, device=device.type))
        runs["baseline_data"].append(baseline_data_path(images, labels, args, device))
        runs["cnnspec_data"].append(cnnspec_data_path(images, labels, args, device))
    figures: dict[str, float] = {f"{k}_images_per_second": statistics.median(v) for k, v in runs.items()}
    figures["train_ratio"] = statistics.median(
        c / s for s, c in zip(runs["baseline_train"], runs["cnnspec_train"], strict=True)
    )
    figures["data_ratio"] = statistics.median(
        c / s for s, c in zip(runs["baseline_data"], runs["cnnspec_data"], strict=True)
    )
    if device.type == "cuda":
        figures["cnnspec_fp32_images_per_second"] = figures["cnnspec_train_images_per_second"]
        figures["cnnspec_fp16_images_per_second"] = cnnspec_training(args, amp="fp16", device="cuda")
        figures["amp_ratio"] = figures["cnnspec_fp16_images_per_second"] / figures["cnnspec_fp32_images_per_second"]

    rows = [
        ("training, baseline loop (PIL + DataLoader, 2 workers)", figures["baseline_train_images_per_second"], None),
        ("training, cnnspec train", figures["cnnspec_train_images_per_second"], figures["train_ratio"]),
        ("data path, baseline DataLoader", figures["baseline_data_images_per_second"], None),
        ("data path, cnnspec batches + augment", figures["cnnspec_data_images_per_second"], figures["data_ratio"]),
    ]
    if device.type == "cuda":
        rows.append(("training, cnnspec fp16 AMP", figures["cnnspec_fp16_images_per_second"], figures["amp_ratio"]))
    for name, rate, ratio in rows:
        print(f"  {name:<52} {rate:>10,.0f} images/s" + (f"   ×{ratio:.2f}" if ratio is not None else ""))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
