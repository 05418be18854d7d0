"""Two processes under torchrun (gloo, CPU) train specs/digits.yaml like one process does.

One chain of real runs (each step needs the previous one's run directory):

1. a one-process reference run, batch 128;
2. `python -m torch.distributed.run --nproc_per_node=2 -m cnnspec train` with batch 64 per
   process, i.e. the same GLOBAL batch of 128 and the same 10 steps per epoch (data.batch_size
   is per process, as in DDP): an audit hook in each worker lists what it writes; rank 1 must
   write nothing, and the run directory must hold the same files as the one-process run's;
   test accuracy within 1 point of the reference;
3. its checkpoint resumed in ONE process with more epochs (2 → 1);
4. `cnnspec train --resume … --nproc 2` with more epochs again (1 → 2, and --nproc end to end);
5. `cnnspec.export` of the run (weights without DDP's `module.` prefix, parity gate passed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
import torch

import cnnspec
from cnnspec.run import RunPaths
from cnnspec.train.checkpoint import load_state, read_weights

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "digits.yaml"
EPOCHS = 8
AUDIT = Path(__file__).with_name("_audit.py")
TRAIN = (sys.executable, "-m", "cnnspec", "train", str(SPEC))


def _env(tmp_path: Path, watch: Path) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    shutil.copy(AUDIT, site / "sitecustomize.py")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=os.pathsep.join([str(site), str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        CNNSPEC_AUDIT_ROOT=str(watch),
    )
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _writes(stdout: str) -> dict[str, list[tuple[str, str]]]:
    """rank → [(event, path)] from the audit lines; every rank that ran reports `done`."""
    found: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for line in stdout.splitlines():
        if line.startswith("CNNSPEC_AUDIT "):
            _, rank, event, path = line.split(" ", 3)
            found[rank].append((event, path))
    return found


def _listing(run: Path) -> set[str]:
    return {str(p.relative_to(run)) for p in run.rglob("*")}


def _result(run: Path) -> dict:
    return json.loads((run / "result.json").read_text())


@pytest.mark.slow
def test_two_processes_train_like_one_write_on_rank_0_and_resume_anywhere(tmp_path: Path) -> None:
    work = tmp_path / "work"  # the workers' current folder; everything they write must land under it
    work.mkdir()
    env = _env(tmp_path, work)

    # 1. one process, batch 128
    single = cnnspec.train(SPEC, out=work / "single", overrides=[f"train.epochs={EPOCHS}"], progress=False)

    # 2. two processes under torchrun, 64 per process = the same global batch
    ddp = work / "ddp"
    proc = _run(
        [
            *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "cnnspec"),
            *("train", str(SPEC), "--out", str(ddp), "--quiet"),
            *("--set", f"train.epochs={EPOCHS}", "--set", "data.batch_size=64"),
        ],
        cwd=work,
        env=env,
    )
    writes = _writes(proc.stdout)
    assert set(writes) == {"0", "1"}, proc.stdout[-2000:]  # both workers ran the hook to the end
    assert writes["1"] == [("done", "-")], f"rank 1 wrote: {writes['1']}"
    rank0 = {path for event, path in writes["0"] if event != "done"}
    assert str(ddp / "checkpoints" / "last.state.pt") in rank0
    assert all(Path(p).is_relative_to(ddp) for p in rank0), sorted(rank0)
    assert _listing(ddp) == _listing(single)
    assert proc.stdout.count("test accuracy") == 1  # rank 0 alone reports

    result, reference = _result(ddp), _result(single)
    assert result["processes"] == 2 and reference["processes"] == 1
    assert result["epochs"] == EPOCHS
    assert abs(result["test_accuracy"] - reference["test_accuracy"]) <= 0.01, (result, reference)
    metrics = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == EPOCHS
    # Reduced over both ranks: each epoch counts 10 global steps of 128 images, not rank 0's 640.
    assert [round(m["images_per_second"] * m["seconds"]) for m in metrics] == [1280] * EPOCHS

    paths = RunPaths(ddp)
    state = load_state(paths.state)
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2
    assert state["step"] == EPOCHS * 10  # 1,293 images // (64 × 2)
    assert not torch.equal(state["rng_ranks"][0]["cpu"], state["rng_ranks"][1]["cpu"])  # own streams
    weights = read_weights(paths.weights("best"))
    assert set(weights) == set(read_weights(RunPaths(single).weights("best")))  # no `module.` prefix

    # 3. resume in one process, two more epochs
    one = work / "one"
    shutil.copytree(ddp, one)
    cnnspec.train(resume=one, overrides=[f"train.epochs={EPOCHS + 2}"], progress=False)
    resumed = _result(one)
    assert resumed["epochs"] == EPOCHS + 2 and resumed["processes"] == 1
    # The step count is restated in one process's steps (1,293 // 64 = 20 per epoch) for the schedule.
    assert load_state(RunPaths(one).state)["step"] == (EPOCHS + 2) * 20
    assert resumed["test_accuracy"] >= reference["test_accuracy"] - 0.02

    # 4. and back to two processes with --nproc (the launcher runs torchrun itself)
    proc = _run(
        [
            *(sys.executable, "-m", "cnnspec", "train", "--resume", str(one), "--nproc", "2", "--quiet"),
            *("--set", f"train.epochs={EPOCHS + 3}"),
        ],
        cwd=work,
        env=env,
    )
    assert proc.stdout.count("test accuracy") == 1, proc.stdout
    writes = _writes(proc.stdout)
    assert writes["1"] == [("done", "-")], f"rank 1 wrote: {writes['1']}"
    again = _result(one)
    assert again["epochs"] == EPOCHS + 3 and again["processes"] == 2
    state = load_state(RunPaths(one).state)
    assert state["world_size"] == 2 and state["step"] == (EPOCHS + 3) * 10

    # 5. export takes the DDP-written weights as they are
    model = cnnspec.export(ddp)
    assert model.is_file() and model.stat().st_size > 0


@pytest.mark.slow
def test_nproc_reports_a_user_error_once_and_writes_nothing(tmp_path: Path) -> None:
    """Rank 0 refuses SyncBatchNorm on CPUs before touching the run directory; rank 1 stays quiet."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [*TRAIN, "--out", str(out), "--nproc", "2", "--set", "train.sync_batchnorm=true", "--set", "train.device=cpu"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("error: train.sync_batchnorm needs GPUs") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "ChildFailedError" not in proc.stderr
    assert not out.exists()


@pytest.mark.slow
def test_ctrl_c_under_nproc_saves_and_the_resumed_run_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    """SIGINT to `cnnspec train --nproc 2`: torchrun passes it on, the ranks agree on the step to stop
    at, rank 0 saves (mid-epoch, every rank's RNG state), everyone exits (a rank left waiting in a
    collective would hang this test). Resumed with 2 processes, the run ends with the same weights,
    bit for bit, as one that was not interrupted (CPU, one thread per process)."""
    config = ["--nproc", "2", "--quiet", "--set", "train.epochs=4", "--set", "data.batch_size=16"]  # 40 steps/epoch
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = tmp_path / "reference"
    subprocess.run([*TRAIN, "--out", str(reference), *config], cwd=tmp_path, env=env, check=True, timeout=240)

    out = tmp_path / "run"
    log = (tmp_path / "stdout").open("w"), (tmp_path / "stderr").open("w")
    proc = subprocess.Popen([*TRAIN, "--out", str(out), *config], cwd=tmp_path, env=env, stdout=log[0], stderr=log[1])
    try:
        metrics = out / "metrics.jsonl"
        for _ in range(1200):
            if proc.poll() is not None or (metrics.is_file() and metrics.read_text().count("\n") >= 1):
                break
            time.sleep(0.1)
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
        for f in log:
            f.close()
    stderr = (tmp_path / "stderr").read_text()
    assert code == 130, stderr
    assert stderr.count(f"continue with: cnnspec train --resume {out}") == 1, stderr
    state = load_state(RunPaths(out).state)
    assert state["world_size"] == 2 and 1 <= state["epoch"] < 4

    subprocess.run([*TRAIN[:4], "--resume", str(out), *config[:3]], cwd=tmp_path, env=env, check=True, timeout=240)
    for which in ("last", "best"):
        got, want = (read_weights(RunPaths(r).weights(which)) for r in (out, reference))
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in got), which
    timing = {"seconds", "images_per_second"}
    runs = [[json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()] for r in (out, reference)]
    assert [{k: v for k, v in m.items() if k not in timing} for m in runs[0]] == [
        {k: v for k, v in m.items() if k not in timing} for m in runs[1]
    ]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs (NCCL): this machine has fewer")
def test_two_gpus_with_nccl_and_sync_batchnorm(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            *TRAIN,
            "--out",
            str(out),
            "--nproc",
            "2",
            "--quiet",
            *("--set", "train.epochs=4", "--set", "data.batch_size=64"),
            *("--set", "train.sync_batchnorm=true"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = _result(out)
    assert result["processes"] == 2 and result["device"].startswith("cuda")
    assert result["test_accuracy"] > 0.9
    assert set(read_weights(RunPaths(out).weights("best"))) == set(cnnspec.build(cnnspec.load(SPEC)).state_dict())


@pytest.mark.slow
def test_image_folder_trains_in_two_processes(tmp_path: Path) -> None:
    """A streaming dataset: each rank decodes its DistributedSampler shard in its own DataLoader worker."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, per_class in (("train", 20), ("test", 4)):
        for c in range(3):
            folder = tmp_path / "images" / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = (torch.rand(8, 8, generator=gen) * 80 + 80 * c).to(torch.uint8).numpy()
                Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    spec = tmp_path / "folder.yaml"
    spec.write_text(
        "name: folder\n"
        "model:\n  input: {channels: 1, height: 8, width: 8}\n"
        "  layers: [{conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}, batchnorm2d, relu, flatten,\n"
        "           {linear: {out_features: 3}}]\n"
        f"data: {{dataset: {{name: image_folder, root: {tmp_path / 'images'}}}, batch_size: 8, val_split: 0.2,\n"
        "       resize: 8, num_workers: 1}\n"
        "optimizer: {name: sgd, lr: 0.05}\n"
        "train: {epochs: 2, seed: 0}\n"
    )
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "cnnspec", "train", str(spec), "--out", str(out), "--nproc", "2", "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 48 training images, 8 per process and step: 3 steps of 16, every image once per epoch.
    assert [round(m["images_per_second"] * m["seconds"]) for m in metrics] == [48, 48]
    assert all(m["val_accuracy"] is not None for m in metrics)
    result = _result(out)
    assert result["processes"] == 2 and result["test_accuracy"] is not None
