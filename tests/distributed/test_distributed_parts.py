"""The pieces of distributed training that run in one process: torchrun's environment, shards,
SyncBatchNorm conversion, and the refusals that come before any process group exists."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from cnnspec.builder.graph_module import build
from cnnspec.errors import DataError, TrainingError
from cnnspec.spec.load import load
from cnnspec.spec.overrides import load_with_overrides
from cnnspec.training.distributed import (
    LOCAL,
    Dist,
    check_supported,
    convert_sync_batchnorm,
    from_env,
    rank_seed,
    shard_epoch,
    shard_split,
    smallest_batch,
    steps_per_epoch,
)
from cnnspec.training.sources import FolderSource, TensorSource, epoch_order

ROOT = Path(__file__).resolve().parents[2]


def test_torchrun_environment() -> None:
    assert from_env({}) is LOCAL
    assert from_env({"RANK": "1", "WORLD_SIZE": "2"}) is LOCAL  # not a complete torchrun launch
    assert from_env({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is LOCAL  # one process: a plain run
    d = from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert d == Dist(3, 4, 1) and d.enabled and not d.is_main
    with pytest.raises(TrainingError, match="not integers"):
        from_env({"RANK": "a", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(TrainingError, match="inconsistent"):
        from_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


def test_steps_per_epoch_are_global_batches() -> None:
    assert steps_per_epoch(1293, 128, 1) == 10
    assert steps_per_epoch(1293, 64, 2) == 10  # the same global batch
    assert steps_per_epoch(1293, 128, 2) == 5  # batch_size is per process
    assert steps_per_epoch(100, 128, 4) == 1  # smaller than one global batch: one step


@pytest.mark.parametrize("world", [2, 3])
def test_in_memory_shards_split_a_prefix_of_the_epoch_order(world: int) -> None:
    n, batch, seed, epoch = 1293, 64, 5, 3
    source = TensorSource(torch.zeros((n, 1, 2, 2), dtype=torch.uint8), torch.zeros(n, dtype=torch.int64))
    take = steps_per_epoch(n, batch, world) * batch
    shards = [shard_epoch(source, seed, epoch, Dist(r, world, r), take) for r in range(world)]
    assert all(len(s) == take for s in shards)
    together = torch.cat(shards)
    assert len(set(together.tolist())) == world * take  # no image twice
    # All ranks' steps together read the start of the one-process order: N processes ⇄ M resume relies on it.
    assert set(together.tolist()) == set(epoch_order(n, seed, epoch)[: world * take].tolist())
    # Step k of rank r reads every world-th image of the k-th global batch.
    assert shards[1][0] == epoch_order(n, seed, epoch)[1]


def test_image_folder_shards_come_from_distributed_sampler() -> None:
    n, world, take = 50, 2, 20
    source = FolderSource([(f"img{i}.png", i % 3) for i in range(n)], channels=1, size=(8, 8))
    shard = {e: [shard_epoch(source, 0, e, Dist(r, world, r), take) for r in range(world)] for e in (1, 2)}
    for parts in shard.values():
        assert all(len(p) == take for p in parts)
        assert not set(parts[0].tolist()) & set(parts[1].tolist())
    assert not torch.equal(shard[1][0], shard[2][0])  # set_epoch reshuffles
    assert torch.equal(shard[1][0], shard_epoch(source, 0, 1, Dist(0, world, 0), take))  # and repeats


def test_evaluation_shards_cover_the_split_once() -> None:
    images = torch.arange(7, dtype=torch.uint8).reshape(7, 1, 1, 1)
    source = TensorSource(images, torch.arange(7))
    parts = [shard_split(source, Dist(r, 3, r)) for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    seen = [int(y) for p in parts for _, labels in p.batches(None, 2, torch.device("cpu")) for y in labels]
    assert sorted(seen) == list(range(7))
    assert parts[1].sample(1) == (images[4], 4)


def test_rank_seeds_differ() -> None:
    seeds = {rank_seed(0, r) for r in range(8)} | {rank_seed(1, r) for r in range(8)}
    assert len(seeds) == 16


def test_sync_batchnorm_conversion_is_what_forward_runs() -> None:
    spec = load(ROOT / "specs" / "digits.yaml")
    torch.manual_seed(0)
    model = build(spec)
    reference = build(spec)
    reference.load_state_dict(model.state_dict())
    keys = list(model.state_dict())
    assert convert_sync_batchnorm(model) == 2
    assert isinstance(model.layer("bn1"), nn.SyncBatchNorm) and isinstance(model.layer("bn2"), nn.SyncBatchNorm)
    assert not any(type(m) is nn.BatchNorm2d for m in model.modules())
    assert list(model.state_dict()) == keys  # checkpoints stay portable both ways
    x = torch.randn(4, 1, 8, 8)
    model.eval(), reference.eval()
    torch.testing.assert_close(model(x), reference(x))
    # In train mode (no process group: plain batch statistics) the gradient reaches the new modules.
    model.train()
    model(x).sum().backward()
    assert model.layer("bn1").weight.grad is not None


def test_sync_batchnorm_on_cpu_is_refused_with_its_location(tmp_path: Path) -> None:
    spec = load_with_overrides(ROOT / "specs" / "digits.yaml", ["train.sync_batchnorm=true", "train.device=cpu"])
    with pytest.raises(TrainingError, match="needs GPUs") as info:
        check_supported(spec, 1000, Dist(0, 2, 0))
    assert "--set train.sync_batchnorm=true" in info.value.format()
    check_supported(spec, 1000, LOCAL)  # ignored (with a message) by a one-process run
    with pytest.raises(DataError, match="cannot be shared by 4 processes"):
        check_supported(load(ROOT / "specs" / "digits.yaml"), 3, Dist(0, 4, 0))


def _step_sizes(source: TensorSource | FolderSource, batch: int, world: int) -> list[int]:
    """The batch of every step every rank takes in epoch 1: its shard (shard_epoch) cut as the loop cuts it."""
    steps = steps_per_epoch(len(source), batch, world)
    sizes = []
    for rank in range(world):
        order = shard_epoch(source, 0, 1, Dist(rank, world, rank), steps * batch)
        sizes += [min(batch, len(order) - start) for start in range(0, len(order), batch)]
    return sizes


def test_smallest_batch_is_the_smallest_step_of_any_rank() -> None:
    # The oracle is the shards themselves, in memory and through DistributedSampler (image_folder).
    for images in range(2, 41):
        labels = torch.zeros(images, dtype=torch.int64)
        sources: list[TensorSource | FolderSource] = [
            TensorSource(torch.zeros((images, 1, 1, 1), dtype=torch.uint8), labels),
            FolderSource([(f"img{i}.png", 0) for i in range(images)], channels=1, size=(1, 1)),
        ]
        for batch in range(1, 9):
            for world in range(1, min(images, 4) + 1):
                for source in sources:
                    sizes = _step_sizes(source, batch, world)
                    assert min(sizes) == smallest_batch(images, batch, world), (images, batch, world, sizes)


BATCHNORM_VECTOR = """
name: bn-vector
model:
  input: {channels: 1, height: 4, width: 4}
  layers:
    - flatten
    - linear: {out_features: 8}
    - batchnorm1d
    - relu
    - linear: {out_features: 2}
data:
  dataset: {name: synthetic, num_samples: 3, num_classes: 2}
  batch_size: 16
  val_split: 0
train: {epochs: 1}
"""


def test_a_process_whose_share_is_one_image_through_batch_norm_is_refused_before_the_run_is_written(
    tmp_path: Path,
) -> None:
    from cnnspec.spec.load import loads
    from cnnspec.training.progress import Reporter
    from cnnspec.training.setup import prepare

    spec = loads(BATCHNORM_VECTOR, file="bn.yaml")
    out = tmp_path / "run"
    # 3 images, 2 processes: shares of 2 and 1 in one step (a batch of one made torch raise on rank 1,
    # a traceback after rank 0 had written the run directory).
    with pytest.raises(DataError) as info:
        prepare(spec, out, None, [], Reporter(), processes=2)
    text = info.value.format()
    assert "batchnorm1d 'batchnorm1d_2' would normalise a single value per channel: a training batch of 1 image" in text
    assert "2 processes share 3 training images, fewer than one global batch of 2×16" in text
    assert "hint: start fewer processes" in text
    assert not out.exists()
    # One process trains the 3 images in one batch of 3; 4 processes cannot share 3 images.
    prepare(spec, out, None, [], Reporter(), processes=1).release()
    with pytest.raises(DataError, match="3 training images cannot be shared by 4 processes"):
        prepare(spec, tmp_path / "four", None, [], Reporter(), processes=4)
    assert not (tmp_path / "four").exists()
