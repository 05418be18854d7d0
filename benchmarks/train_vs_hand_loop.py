"""`cnnspec train` on a real image folder against the plain PyTorch loop a user would write for it.

    python benchmarks/train_vs_hand_loop.py                # 3 back-to-back pairs, ~2–4 minutes on 2 cores
    python benchmarks/train_vs_hand_loop.py --pairs 5 --json figures.json
    python benchmarks/train_vs_hand_loop.py --seeds 8      # the test accuracies' spread over 8 seeds, each side
    python benchmarks/train_vs_hand_loop.py --dry          # tiny (2 epochs, 1 pair): shows every path runs

The folder: scikit-learn's 8×8 digits (1,797 images, 10 classes), each written as a PNG upscaled to
28×28 (Pillow's bilinear resize), ROOT/train/CLASS/*.png and ROOT/test/CLASS/*.png with the fixed
stratified 80/20 split cnnspec's `digits` dataset uses (1,437 / 360).

Both sides, each a whole process (`python -m cnnspec train SPEC` against `python THIS --hand ...`),
start-up, decoding and the test evaluation included, train the same network (conv 32 → BN → ReLU →
pool → conv 64 → BN → ReLU → pool → linear 128 → ReLU → dropout 0.2 → linear 10) with AdamW (lr 5e-3,
weight decay 1e-4), batch 128 (the last partial batch dropped), a cosine schedule per step after one
epoch of linear warm-up, random crop 28 with padding 2 per image, normalisation by the training set's
mean and std, no validation split, and the same number of epochs. The hand loop decodes every PNG once
into a uint8 tensor and crops whole batches, as a user who cares about speed writes it; cnnspec runs
with its defaults (data.cache auto: the folder is held in memory, and from the second run on read from
the disk cache, which this script keeps in its work folder).

Reported: each pair's wall seconds (the order alternates: cnnspec first in odd pairs), the median ratio
cnnspec ÷ hand (goal ≤ 1.0), and both test accuracies (median over the pairs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = 28
BATCH = 128
LR = 5e-3
WEIGHT_DECAY = 1e-4
PADDING = 2
# The test accuracies agree when they differ by at most the spread of the test accuracy over seeds:
# max − min over seeds 0–7 of both sides (`--seeds 8`, 15 epochs, 2026-12-04, with cnnspec's CPU defaults
# of that day; docs/benchmarks.md).
ACCURACY_SPREAD = 0.0083  # 3 of 360 test images: 0.9917–1.0000 on both sides

SPEC = """\
name: digits-folder
model:
  input: {{channels: 1, height: {size}, width: {size}}}
  layers:
    - conv2d: {{out_channels: 32, kernel_size: 3, padding: 1}}
    - batchnorm2d
    - relu
    - maxpool2d: {{kernel_size: 2}}
    - conv2d: {{out_channels: 64, kernel_size: 3, padding: 1}}
    - batchnorm2d
    - relu
    - maxpool2d: {{kernel_size: 2}}
    - flatten
    - linear: {{out_features: 128}}
    - relu
    - dropout: {{p: 0.2}}
    - linear: {{out_features: 10}}
data:
  dataset: {{name: image_folder, root: '{root}'}}
  batch_size: {batch}
  val_split: 0
  augment:
    - random_crop: {{size: {size}, padding: {padding}}}
optimizer: {{name: adamw, lr: {lr}, weight_decay: {wd}}}
schedule: {{name: cosine, warmup_epochs: 1}}
train: {{epochs: {epochs}, seed: {seed}}}
"""


# --- the image folder ----------------------------------------------------------------------------


def make_folder(root: Path) -> tuple[int, int]:
    """scikit-learn's digits as 28×28 PNGs in ROOT/{train,test}/CLASS/; (train, test) counts."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # (N, 8, 8), 0–16 → 0–255
    index = np.arange(len(images))
    # cnnspec's digits split (cnnspec/training/datasets.py: DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED).
    train, test = train_test_split(index, test_size=0.2, random_state=0, stratify=digits.target)
    for split, chosen in (("train", train), ("test", test)):
        for i in chosen:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            big = Image.fromarray(images[i]).resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            big.save(folder / f"{i:04d}.png")
    return len(train), len(test)


# --- the hand-written loop (plain PyTorch, no cnnspec) -------------------------------------------


def hand_loop(root: Path, epochs: int, seed: int, out: Path) -> None:
    """What a user writes: decode the folder once into uint8 tensors, then train and test on them."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torch import nn

    torch.manual_seed(seed)

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
        pixels, labels = [], []
        for label, name in enumerate(classes):
            for file in sorted((root / split / name).iterdir()):
                with Image.open(file) as image:
                    pixels.append(np.asarray(image.convert("L"), dtype=np.uint8))
                labels.append(label)
        return torch.from_numpy(np.stack(pixels)).unsqueeze(1), torch.tensor(labels)  # (N, 1, H, W) uint8

    x_train, y_train = load("train")
    x_test, y_test = load("test")
    scaled = x_train.float() / 255
    mean, std = scaled.mean().item(), scaled.std(unbiased=False).item()

    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (SIZE // 4) ** 2, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    steps = len(y_train) // BATCH
    total, warm = steps * epochs, steps

    def crop(x: torch.Tensor) -> torch.Tensor:  # a random 28×28 window of the batch padded by 2, per image
        n = x.shape[0]
        padded = F.pad(x, (PADDING,) * 4)
        top = torch.randint(0, 2 * PADDING + 1, (n,))
        left = torch.randint(0, 2 * PADDING + 1, (n,))
        rows = (top[:, None] + torch.arange(SIZE))[:, None, :, None]
        cols = (left[:, None] + torch.arange(SIZE))[:, None, None, :]
        return padded[torch.arange(n)[:, None, None, None], torch.arange(x.shape[1])[None, :, None, None], rows, cols]

    step = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(y_train))
        for b in range(steps):
            idx = order[b * BATCH : (b + 1) * BATCH]
            x = (crop(x_train[idx]).float() / 255 - mean) / std
            if step < warm:  # linear warm-up over the first epoch, then cosine to 0
                factor = (step + 1) / warm
            else:
                factor = 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))
            for group in optimizer.param_groups:
                group["lr"] = LR * factor
            loss = F.cross_entropy(model(x), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
    model.eval()
    correct = 0
    with torch.no_grad():
        for b in range(0, len(y_test), 2 * BATCH):
            x = (x_test[b : b + 2 * BATCH].float() / 255 - mean) / std
            correct += int((model(x).argmax(1) == y_test[b : b + 2 * BATCH]).sum())
    out.write_text(json.dumps({"test_accuracy": correct / len(y_test)}))


# --- the comparison --------------------------------------------------------------------------------


def _env(threads: int | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def run_cnnspec(work: Path, data: Path, epochs: int, seed: int, name: str, env: dict[str, str]) -> dict[str, object]:
    spec = work / f"{name}.yaml"
    spec.write_text(
        SPEC.format(
            size=SIZE, root=data, batch=BATCH, padding=PADDING, lr=LR, wd=WEIGHT_DECAY, epochs=epochs, seed=seed
        )
    )
    run = work / "runs" / name
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cnnspec", "train", str(spec), "--out", str(run)],
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"cnnspec train failed:\n{done.stdout}\n{done.stderr}")
    result = json.loads((run / "result.json").read_text())
    lines = (done.stdout + done.stderr).splitlines()
    cache = next((line for line in lines if line.startswith("data.cache: ")), "")
    threads = next((line for line in lines if line.startswith("cpu threads: ")), "")
    return {
        "seconds": seconds,
        "test_accuracy": result["test_accuracy"],
        "run": str(run),
        "cache": cache,
        "threads": threads,
    }


def run_hand(work: Path, data: Path, epochs: int, seed: int, name: str, env: dict[str, str]) -> dict[str, object]:
    out = work / f"{name}.json"
    start = time.perf_counter()
    cmd = [sys.executable, __file__, "--hand", str(data), "--epochs", str(epochs), "--seed", str(seed)]
    done = subprocess.run([*cmd, "--hand-out", str(out)], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the hand loop failed:\n{done.stdout}\n{done.stderr}")
    return {"seconds": seconds, "test_accuracy": json.loads(out.read_text())["test_accuracy"], "result": str(out)}


def compare(args: argparse.Namespace, work: Path) -> dict[str, object]:
    data = work / "digits28"
    if not data.is_dir():
        make_folder(data)
    env = _env(args.threads)
    env.setdefault("CNNSPEC_CACHE_DIR", str(work / "cache"))
    pairs = []
    for i in range(args.pairs):
        sides = {}
        order = ("cnnspec", "hand") if i % 2 == 0 else ("hand", "cnnspec")
        for side in order:
            run = run_cnnspec if side == "cnnspec" else run_hand
            sides[side] = run(work, data, args.epochs, args.seed, f"{side}_{i + 1}", env)
        pair = {**sides, "ratio": float(sides["cnnspec"]["seconds"]) / float(sides["hand"]["seconds"])}  # type: ignore[arg-type]
        pairs.append(pair)
        print(
            f"pair {i + 1} ({order[0]} first): cnnspec {sides['cnnspec']['seconds']:.1f} s "
            f"(acc {sides['cnnspec']['test_accuracy']:.4f}), hand {sides['hand']['seconds']:.1f} s "
            f"(acc {sides['hand']['test_accuracy']:.4f}), ratio {pair['ratio']:.2f}; {sides['cnnspec']['threads']}",
            flush=True,
        )
    figures = {
        "pairs": pairs,
        "median_ratio": statistics.median(float(p["ratio"]) for p in pairs),  # type: ignore[arg-type]
        "cnnspec_test_accuracy": statistics.median(float(p["cnnspec"]["test_accuracy"]) for p in pairs),  # type: ignore[index]
        "hand_test_accuracy": statistics.median(float(p["hand"]["test_accuracy"]) for p in pairs),  # type: ignore[index]
        "epochs": args.epochs,
        "seed": args.seed,
    }
    gap = abs(float(figures["cnnspec_test_accuracy"]) - float(figures["hand_test_accuracy"]))  # type: ignore[arg-type]
    figures["accuracies_agree"] = gap <= ACCURACY_SPREAD
    print(
        f"median ratio cnnspec ÷ hand: {figures['median_ratio']:.2f} (goal ≤ 1.0); test accuracy: cnnspec "
        f"{figures['cnnspec_test_accuracy']:.4f}, hand {figures['hand_test_accuracy']:.4f} ("
        f"{'within' if figures['accuracies_agree'] else 'outside'} the seeds' spread of {ACCURACY_SPREAD:.4f})"
    )
    return figures


def spread(args: argparse.Namespace, work: Path) -> dict[str, object]:
    """Each side's test accuracy for seeds 0..N-1: what 'within the seeds' spread' is measured against."""
    data = work / "digits28"
    if not data.is_dir():
        make_folder(data)
    env = _env(args.threads)
    env.setdefault("CNNSPEC_CACHE_DIR", str(work / "cache"))
    found: dict[str, list[float]] = {"cnnspec": [], "hand": []}
    for seed in range(args.seeds):
        for side, run in (("cnnspec", run_cnnspec), ("hand", run_hand)):
            found[side].append(float(run(work, data, args.epochs, seed, f"{side}_seed{seed}", env)["test_accuracy"]))  # type: ignore[arg-type]
    for side, values in found.items():
        print(f"{side}: test accuracy over seeds 0–{args.seeds - 1}: {min(values):.4f}–{max(values):.4f} {values}")
    both = found["cnnspec"] + found["hand"]
    print(f"spread (max − min over both sides): {max(both) - min(both):.4f}")
    return {"seeds": found, "spread": max(both) - min(both), "epochs": args.epochs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="back-to-back pairs (order alternating)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=0, help="measure the accuracy spread over this many seeds")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both sides")
    parser.add_argument("--work", type=Path, default=None, help="keep the folder, the runs and the cache here")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--dry", action="store_true", help="tiny: 2 epochs, 1 pair")
    parser.add_argument("--hand", type=Path, default=None, help=argparse.SUPPRESS)  # the hand loop's own process
    parser.add_argument("--hand-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.hand is not None:
        hand_loop(args.hand, args.epochs, args.seed, args.hand_out)
        return
    if args.dry:
        args.epochs, args.pairs = 2, 1
        args.seeds = min(args.seeds, 2)
    with tempfile.TemporaryDirectory(prefix="cnnspec-vs-hand-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        figures = spread(args, work) if args.seeds else compare(args, work)
        if args.json is not None:
            args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
