"""Two processes under torchrun (gloo, CPU) train specs/digits.yaml as one process does.

One chain of real runs, each a module-scoped fixture (a later stage reads an earlier one's run
directory, copied, so every stage's directory stays as it was written):

- `single`: a one-process reference run, batch 128, in this process;
- `ddp`: `python -m torch.distributed.run --nproc_per_node=2 _counting.py` (cnnspec.train from a
  torchrun worker script) with batch 64 per process, i.e. the same GLOBAL batch of 128 (data.batch_size
  is per process, as in DDP); an audit hook lists what each worker writes;
- `one`: a copy of `ddp`, resumed in ONE process with more epochs (2 → 1);
- `two`: a copy of `one`, resumed by `cnnspec train --resume … --nproc 2` (1 → 2, the CLI launcher).

The tests observe what DDP must keep exactly — optimizer steps and images per epoch (counted by a
callback on every rank, and by AdamW's own step count in the checkpoint), the state_dict keys, rank 0
alone writing — and an absolute test-accuracy floor for each run, set below the spread measured over
seeds (the accuracy of two stochastic runs is never compared with each other).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

import cnnspec
from cnnspec.rundir.paths import RunPaths
from cnnspec.rundir.weights import load_state, read_weights
from tests.distributed._counting import Counter, EpochCount, parse

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "specs" / "digits.yaml"
EPOCHS = 8
AUDIT = Path(__file__).with_name("_audit.py")
COUNTING = Path(__file__).with_name("_counting.py")
TRAIN = (sys.executable, "-m", "cnnspec", "train", str(SPEC))
TORCHRUN_2 = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")

# Hand arithmetic, not cnnspec's steps_per_epoch: scikit-learn's digits are 1,797 images; the fixed
# 80/20 split keeps 360 for the test and 1,437 for training, val_split 0.1 takes 144 of them: 1,293
# training images. 10 × 128 = 1,280 ≤ 1,293 < 1,408 = 11 × 128, and 20 × 64 = 1,280 ≤ 1,293 < 1,344 = 21 × 64.
STEPS_OF_128 = 10  # per epoch: one process of 128, or two of 64 (global batch 128)
STEPS_OF_64 = 20  # per epoch: one process of 64
IMAGES_PER_EPOCH = 1280  # the last partial batch is dropped
PARAMETER_TENSORS = 12  # specs/digits.yaml: weight and bias of conv1, bn1, conv2, bn2, the hidden linear, head

# Test-accuracy floors (360 test images: one image is 0.28 points), each below the minimum measured over
# 10 seeds (train.seed 0-9, everything else as in these runs) on this machine (2-core x86 CPU, one thread
# per process), and below the 97.78% that issue 11 measured for `single` on another machine (8 seeds).
# The runs in this file use seed 0 (this machine: 0.9917, 0.9889, 0.9917, 0.9917).
FLOORS = {
    "single": 0.96,  # 1 process × 128, 8 epochs: 10 seeds (0-9): 0.9833-0.9972 on this machine
    "ddp": 0.96,  # 2 processes × 64, 8 epochs: 10 seeds (0-9): 0.9889-0.9972 on this machine
    "one": 0.96,  # ddp + 2 epochs in 1 process × 64: 10 seeds (0-9): 0.9889-0.9972 on this machine
    "two": 0.96,  # one + 1 epoch in 2 processes × 64: 10 seeds (0-9): 0.9889-0.9972 on this machine
}


def _env(base: Path, watch: Path) -> dict[str, str]:
    site = base / "site"
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


def _adam_steps(run: Path) -> set[int]:
    """The step count torch's AdamW keeps for each parameter, read with plain torch.load."""
    state = torch.load(RunPaths(run).state, map_location="cpu", weights_only=True)
    steps = [int(s["step"]) for s in state["optimizer"]["state"].values()]
    assert len(steps) == PARAMETER_TENSORS
    return set(steps)


@dataclass(frozen=True)
class Stage:
    """One finished run of the chain, read right after it ended."""

    run: Path
    listing: set[str]
    result: dict[str, Any]
    metrics: list[dict[str, Any]]
    state: dict[str, Any]
    counts: dict[int, dict[int, EpochCount]]  # rank → epoch → what its callback counted
    stdout: str = ""

    @classmethod
    def read(cls, run: Path, counts: dict[int, dict[int, EpochCount]], stdout: str = "") -> Stage:
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        state = torch.load(RunPaths(run).state, map_location="cpu", weights_only=True)
        return cls(run, _listing(run), _result(run), metrics, state, counts, stdout)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("distributed")


@pytest.fixture(scope="module")
def work(base: Path) -> Path:
    """The workers' current folder; everything they write must land under it."""
    folder = base / "work"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def env(base: Path, work: Path) -> dict[str, str]:
    return _env(base, work)


@pytest.fixture(scope="module")
def single(work: Path) -> Stage:
    counter = Counter()
    run = cnnspec.train(
        SPEC, out=work / "single", overrides=[f"train.epochs={EPOCHS}"], progress=False, callbacks=[counter]
    )
    return Stage.read(run, {0: counter.epochs})


@pytest.fixture(scope="module")
def ddp(work: Path, env: dict[str, str]) -> Stage:
    run = work / "ddp"
    overrides = (f"train.epochs={EPOCHS}", "data.batch_size=64")
    proc = _run([*TORCHRUN_2, str(COUNTING), str(SPEC), str(run), *overrides], cwd=work, env=env)
    return Stage.read(run, parse(proc.stdout), proc.stdout)


@pytest.fixture(scope="module")
def one(work: Path, ddp: Stage) -> Stage:
    run = work / "one"
    shutil.copytree(ddp.run, run)
    counter = Counter()
    cnnspec.train(resume=run, overrides=[f"train.epochs={EPOCHS + 2}"], progress=False, callbacks=[counter])
    return Stage.read(run, {0: counter.epochs})


@pytest.fixture(scope="module")
def two(work: Path, env: dict[str, str], one: Stage) -> Stage:
    run = work / "two"
    shutil.copytree(one.run, run)
    proc = _run(
        [*TRAIN[:4], "--resume", str(run), "--nproc", "2", "--quiet", "--set", f"train.epochs={EPOCHS + 3}"],
        cwd=work,
        env=env,
    )
    return Stage.read(run, {}, proc.stdout)


@pytest.mark.slow
def test_two_processes_rank_1_writes_nothing_and_rank_0_writes_only_its_run(ddp: Stage) -> None:
    writes = _writes(ddp.stdout)
    assert set(writes) == {"0", "1"}, ddp.stdout[-2000:]  # both workers ran the hook to the end
    assert writes["1"] == [("done", "-")], f"rank 1 wrote: {writes['1'][:6]}"
    rank0 = {path for event, path in writes["0"] if event != "done"}
    assert str(ddp.run / "checkpoints" / "last.state.pt") in rank0
    outside = sorted(p for p in rank0 if not Path(p).is_relative_to(ddp.run))
    assert not outside, outside


@pytest.mark.slow
def test_two_processes_write_the_files_one_process_writes(ddp: Stage, single: Stage) -> None:
    assert ddp.listing == single.listing
    assert ddp.result["processes"] == 2 and single.result["processes"] == 1
    assert ddp.result["epochs"] == EPOCHS and len(ddp.metrics) == EPOCHS


@pytest.mark.slow
def test_two_processes_of_64_take_the_steps_and_images_of_one_process_of_128(ddp: Stage, single: Stage) -> None:
    epochs = list(range(1, EPOCHS + 1))
    assert sorted(ddp.counts) == [0, 1]  # every rank reported its counts
    for rank, counts in ddp.counts.items():
        assert sorted(counts) == epochs, rank
        assert [(c.steps, c.images) for c in counts.values()] == [(STEPS_OF_128, 64 * STEPS_OF_128)] * EPOCHS, rank
    together = [sum(ddp.counts[r][e].images for r in (0, 1)) for e in epochs]
    assert together == [IMAGES_PER_EPOCH] * EPOCHS
    assert [(c.steps, c.images) for c in single.counts[0].values()] == [(STEPS_OF_128, IMAGES_PER_EPOCH)] * EPOCHS
    # torch's own count of optimizer.step() calls, and the step count the schedule reads.
    assert _adam_steps(ddp.run) == _adam_steps(single.run) == {EPOCHS * STEPS_OF_128}
    assert ddp.state["step"] == single.state["step"] == EPOCHS * STEPS_OF_128


@pytest.mark.slow
def test_two_process_epoch_metrics_are_sums_over_both_ranks(ddp: Stage) -> None:
    """metrics.jsonl's training loss and images/s are those of both ranks' batches, not rank 0's."""
    for record in ddp.metrics:
        counted = [ddp.counts[r][record["epoch"]] for r in (0, 1)]
        images = sum(c.images for c in counted)
        assert record["train_loss"] == pytest.approx(sum(c.loss_sum for c in counted) / images, rel=1e-6)
        assert record["images_per_second"] * record["seconds"] == pytest.approx(images, rel=1e-9)


@pytest.mark.slow
def test_checkpoints_hold_the_plain_modules_keys(ddp: Stage, single: Stage) -> None:
    """No `module.` prefix: the keys of torch's state_dict of the model built from the spec."""
    keys = set(cnnspec.build(cnnspec.load(SPEC)).state_dict())
    for stage in (ddp, single):
        for which in ("best", "last"):
            assert set(read_weights(RunPaths(stage.run).weights(which))) == keys, (stage.run, which)
        assert set(stage.state["model"]) == keys


@pytest.mark.slow
def test_two_process_state_holds_each_ranks_own_random_stream(ddp: Stage) -> None:
    assert ddp.state["world_size"] == 2 and len(ddp.state["rng_ranks"]) == 2
    assert not torch.equal(ddp.state["rng_ranks"][0]["cpu"], ddp.state["rng_ranks"][1]["cpu"])


@pytest.mark.slow
def test_a_two_process_state_resumes_in_one_process(one: Stage) -> None:
    assert one.result["epochs"] == EPOCHS + 2 and one.result["processes"] == 1
    # data.batch_size stays per process: the resumed run trains epochs 9 and 10 with 20 steps of 64.
    assert sorted(one.counts[0]) == [EPOCHS + 1, EPOCHS + 2]
    assert [(c.steps, c.images) for c in one.counts[0].values()] == [(STEPS_OF_64, 64 * STEPS_OF_64)] * 2
    assert _adam_steps(one.run) == {EPOCHS * STEPS_OF_128 + 2 * STEPS_OF_64}  # steps taken, both runs
    # The schedule's step count is restated in one process's steps: 10 epochs of 20.
    assert one.state["step"] == (EPOCHS + 2) * STEPS_OF_64 and one.state["world_size"] == 1


@pytest.mark.slow
def test_nproc_resumes_a_one_process_state_in_two_processes(two: Stage) -> None:
    assert two.stdout.count("test accuracy") == 1, two.stdout  # rank 0 alone reports
    writes = _writes(two.stdout)
    assert set(writes) == {"0", "1"}, two.stdout[-2000:]
    assert writes["1"] == [("done", "-")], f"rank 1 wrote: {writes['1'][:6]}"
    assert two.result["epochs"] == EPOCHS + 3 and two.result["processes"] == 2
    assert _adam_steps(two.run) == {EPOCHS * STEPS_OF_128 + 2 * STEPS_OF_64 + STEPS_OF_128}
    assert two.state["world_size"] == 2 and two.state["step"] == (EPOCHS + 3) * STEPS_OF_128


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(FLOORS))
def test_each_run_of_the_chain_reaches_its_accuracy_floor(stage: str, request: pytest.FixtureRequest) -> None:
    result = request.getfixturevalue(stage).result
    assert result["test_accuracy"] >= FLOORS[stage], (stage, result["test_accuracy"], result["best_epoch"])


@pytest.mark.slow
def test_export_takes_the_two_process_weights_as_they_are(ddp: Stage, base: Path) -> None:
    model = cnnspec.export(ddp.run, out=base / "ddp.onnx")  # the parity gate ran inside
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
        "       resize: 8, num_workers: 1, cache: none}\n"
        "optimizer: {name: sgd, lr: 0.05}\n"
        "train: {epochs: 2, seed: 0}\n"
    )
    out = tmp_path / "run"
    proc = _run([*TORCHRUN_2, str(COUNTING), "--digests", str(spec), str(out)], cwd=tmp_path, env=_env(tmp_path, out))
    counts = parse(proc.stdout)
    assert sorted(counts) == [0, 1] and all(sorted(c) == [1, 2] for c in counts.values())
    # By hand: 3 classes × 20 = 60 training images, val_split 0.2 keeps 48; 8 per process and step: 3 steps of 16.
    for rank in (0, 1):
        assert [(c.steps, c.images) for c in counts[rank].values()] == [(3, 24), (3, 24)], rank
    epochs = [[d for r in (0, 1) for d in counts[r][e].digests] for e in (1, 2)]
    assert [len(set(e)) for e in epochs] == [48, 48]  # 48 different images in each epoch: none twice
    assert set(epochs[0]) == set(epochs[1])  # and the same 48 in both: every training image once per epoch
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["images_per_second"] * m["seconds"] for m in metrics] == pytest.approx([48, 48], rel=1e-9)
    assert all(m["val_accuracy"] is not None for m in metrics)
    result = _result(out)
    assert result["processes"] == 2 and result["test_accuracy"] is not None
    assert _writes(proc.stdout)["1"] == [("done", "-")]
