"""Data-parallel training on torch.distributed (DistributedDataParallel, launched by torchrun).

A run is distributed when torchrun's environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`) names
more than one process. Then:

- the process group is NCCL for CUDA tensors and gloo for CPU ones (`cpu:gloo,cuda:nccl` on a
  machine with CUDA, `gloo` without), each process on GPU `LOCAL_RANK`;
- rank 0 alone resolves the spec and sets up the run directory, then sends the result to the
  other ranks (which load their own copy of the data); rank 0 alone writes anything;
- every rank computes the same shuffled epoch and takes every `world_size`-th image of it
  (DistributedSampler's layout; `image_folder` goes through DistributedSampler itself);
- sums (loss, correct, images seen) are reduced with all_reduce before they are recorded.

`launch` is `cnnspec train --nproc N`: torchrun's own launcher run in this process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cnnspec.errors import DataError, Diagnostic, TrainingError
from cnnspec.training.folder_cache import DecodedFolder
from cnnspec.training.sources import Batch, FolderSource, Source, epoch_order

if TYPE_CHECKING:
    from cnnspec.spec.model import Spec
    from cnnspec.training.progress import Reporter
    from cnnspec.training.setup import Session, SpecInput

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class Dist:
    """This process's place in a distributed run; `Dist()` is a plain one-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when there are other processes to talk to."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory and reports progress."""
        return self.rank == 0


LOCAL = Dist()


def from_env(env: Mapping[str, str] | None = None) -> Dist:
    """The run's ranks from torchrun's environment variables; `LOCAL` when they are absent.

    A torchrun launch of a single process (WORLD_SIZE=1) trains like a plain run.
    """
    env = os.environ if env is None else env
    if not all(key in env for key in ENV_KEYS):
        return LOCAL
    try:
        rank, world, local = (int(env[key]) for key in ENV_KEYS)
    except ValueError:
        values = ", ".join(f"{key}={env[key]!r}" for key in ENV_KEYS)
        raise TrainingError(f"torchrun's environment is not integers: {values}") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise TrainingError(
            f"torchrun's environment is inconsistent: RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}"
        )
    return Dist(rank, world, local) if world > 1 else LOCAL


def backend() -> str:
    """NCCL for CUDA tensors and gloo for CPU ones; gloo alone on a machine without CUDA."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


@contextlib.contextmanager
def process_group(dist: Dist) -> Iterator[None]:
    """Join the process group for the block (a no-op for one process); leave it afterwards.

    A group that the caller already started (cnnspec.train called from the user's own DDP
    script) is used as it is and left open.
    """
    if not dist.enabled:
        yield
        return
    import torch.distributed as td

    if td.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if dist.local_rank >= count:
            raise TrainingError(
                f"LOCAL_RANK {dist.local_rank} has no GPU: this machine has {count}",
                hint=f"start at most {count} processes per machine (--nproc_per_node {count})",
            )
        torch.cuda.set_device(dist.local_rank)
    td.init_process_group(backend(), rank=dist.rank, world_size=dist.world_size)
    finished = False
    try:
        yield
        finished = True
    finally:
        if finished:  # after a failure the other ranks may never arrive: no barrier then
            td.barrier()
        td.destroy_process_group()


# --- rank 0 decides, the others follow ------------------------------------------------------


class PeerFailed(TrainingError):
    """Rank 0 failed (and reported why); the other ranks stop without repeating it."""

    def __init__(self, rank: int):
        super().__init__(f"rank {rank}: stopping because rank 0 failed (its message says why)")


def _broadcast(value: Any) -> Any:
    import torch.distributed as td

    box = [value]
    td.broadcast_object_list(box, src=0)  # object collectives go through gloo (CPU)
    return box[0]


def share(dist: Dist, compute: Any) -> Any:
    """`compute()` on rank 0, its result sent to every rank; a failure on rank 0 stops them all.

    Rank 0 re-raises its own exception (which the CLI prints); the others raise PeerFailed,
    which the CLI does not print, so an error in the user's input is reported once.
    """
    if not dist.enabled:
        return compute()
    if dist.is_main:
        try:
            value = compute()
        except BaseException:
            _broadcast(("failed", None))
            raise
        _broadcast(("ok", value))
        return value
    status, value = _broadcast(None)
    if status != "ok":
        raise PeerFailed(dist.rank)
    return value


def prepare_shared(
    dist: Dist,
    spec_or_path: SpecInput,
    out: str | Path | None,
    resume: str | Path | None,
    overrides: Sequence[str],
    reporter: Reporter,
) -> Session:
    """`setup.prepare` on rank 0 (which alone writes the run directory); the other ranks get its
    spec and run info and load their own copy of the data."""
    from cnnspec.checker.checker import check
    from cnnspec.rundir.paths import RunPaths
    from cnnspec.training.datasets import load_data
    from cnnspec.training.setup import Session, prepare, resolve_spec

    if not dist.enabled:
        return prepare(spec_or_path, out, resume, overrides, reporter)
    session: Session | None = None

    def on_main() -> tuple[Spec, Any, bool, str]:
        nonlocal session
        # What the spec alone rules out is refused before the run directory is touched.
        check_supported(resolve_spec(spec_or_path, Path(resume) if resume else None, overrides)[0], None, dist)
        session = prepare(spec_or_path, out, resume, overrides, reporter, processes=dist.world_size)
        check_supported(session.spec, len(session.data.train), dist)
        return session.spec, session.info, session.resumed, str(session.paths.root)

    spec, info, resumed, root = share(dist, on_main)
    if session is not None:
        return session
    graph = check(spec)
    data = load_data(spec)
    if data.class_names != info.class_names:
        raise DataError(f"rank {dist.rank}: the dataset's classes differ from rank 0's ({info.dataset})")
    if len(data.train) < dist.world_size:  # rank 0 checked its copy; this is a different one
        raise DataError(f"rank {dist.rank}: only {len(data.train)} training images for {dist.world_size} processes")
    return Session(spec, graph, RunPaths(Path(root)), data, info, resumed)


def check_supported(spec: Spec, train_images: int | None, dist: Dist) -> None:
    """Refuse, before any step, what a distributed run of this spec cannot do (`train_images`: None
    when the data is not loaded yet)."""
    from cnnspec.training.precision import resolve

    if not dist.enabled:
        return
    if train_images is not None and train_images < dist.world_size:
        raise DataError(
            f"{train_images} training images cannot be shared by {dist.world_size} processes",
            hint="start fewer processes",
        )
    if spec.train.sync_batchnorm and resolve(spec.train).device.type != "cuda":
        raise TrainingError(
            Diagnostic(
                "train.sync_batchnorm needs GPUs: torch's SyncBatchNorm refuses CPU tensors",
                spec.source.locate(("train", "sync_batchnorm")),
                hint="train on GPUs, or --set train.sync_batchnorm=false "
                "(each process then normalises with its own batch's statistics)",
            )
        )


# --- sharding ---------------------------------------------------------------------------


def steps_per_epoch(images: int, batch_size: int, world_size: int) -> int:
    """Optimizer steps per epoch, the same on every rank: the last partial global batch is dropped;
    a set smaller than one global batch is one step."""
    return max(images // (batch_size * world_size), 1)


def smallest_batch(images: int, batch_size: int, world_size: int) -> int:
    """The fewest images any process trains on in one step: `batch_size`, unless one global batch is more
    than the set, when each process takes its share in one step (the smallest share: images // world_size).
    One process: min(batch_size, images), the one-process rule of `steps_per_epoch`."""
    return min(batch_size, images // world_size)


def shard_epoch(source: Source, seed: int, epoch: int, dist: Dist, take: int) -> torch.Tensor:
    """This rank's indices for `epoch`: every `world_size`-th of the epoch's shuffled order, `take` of them.

    In-memory data shards cnnspec's own epoch order (a function of seed and epoch); image_folder
    uses torch's DistributedSampler (seed, set_epoch, drop_last), streamed or held in memory
    (data.cache). Both lay the shards out the same way, so the first k steps of all ranks together
    read the first k·batch·world images of the order.
    """
    if isinstance(source, (FolderSource, DecodedFolder)):  # a folder shards alike, streamed or in memory
        from torch.utils.data.distributed import DistributedSampler

        sampler: DistributedSampler[int] = DistributedSampler(
            source,  # type: ignore[arg-type]  # only its length is read
            num_replicas=dist.world_size,
            rank=dist.rank,
            shuffle=True,
            seed=seed,
            drop_last=True,
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.int64)[:take]
    return epoch_order(len(source), seed, epoch)[dist.rank :: dist.world_size][:take]


@dataclass
class ShardSource:
    """Every `world_size`-th image of a split (for evaluation shared by the ranks)."""

    source: Source
    indices: torch.Tensor  # (M,) int64

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def batches(
        self, order: torch.Tensor | None, batch_size: int, device: torch.device, start: int = 0
    ) -> Iterator[Batch]:
        picked = self.indices if order is None else self.indices[order]
        return self.source.batches(picked, batch_size, device, start)

    def sample(self, index: int) -> tuple[torch.Tensor, int]:
        return self.source.sample(int(self.indices[index]))


def shard_split(source: Source, dist: Dist) -> ShardSource:
    """This rank's part of an evaluation split (parts differ in size by at most one image)."""
    return ShardSource(source, torch.arange(len(source))[dist.rank :: dist.world_size])


# --- collectives ------------------------------------------------------------------------


def all_reduce_sum(values: Sequence[float | int | torch.Tensor], device: torch.device) -> list[float]:
    """Sum each value over all ranks, in one float64 all_reduce (exact for counts below 2**53)."""
    import torch.distributed as td

    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
    td.all_reduce(t)
    return [float(v) for v in t.tolist()]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (e.g. a Ctrl-C that reached one of them)."""
    return all_reduce_sum([float(flag)], device)[0] > 0


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank."""
    import torch.distributed as td

    out: list[Any] = [None] * td.get_world_size()
    td.all_gather_object(out, value)
    return out


def rank_seed(seed: int, rank: int, salt: int = 0) -> int:
    """A seed for rank `rank`'s own random stream (augmentation, dropout), distinct per rank."""
    return (seed * 1_000_003 + rank * 7_919 + salt * 104_729 + 0x5EED) % (2**63)


# --- the model --------------------------------------------------------------------------


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel (it broadcasts rank 0's weights and buffers)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def convert_sync_batchnorm(model: nn.Module) -> int:
    """Replace every batch-norm layer with SyncBatchNorm (same state_dict keys); returns how many.

    SpecModule runs its layers from its own id → module table, not from its children, so a
    replaced top-level layer must be swapped in both places (nn.SyncBatchNorm.convert_sync_batchnorm
    alone would leave forward() running the old modules).
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    before = sum(isinstance(m, _BatchNorm) and not isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    table: dict[str, nn.Module] | None = getattr(model, "_modules_by_id", None)
    if table is None:
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return before
    for node_id, module in list(table.items()):
        converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)  # nested BN: replaced in place
        if converted is not module:
            *parents, last = node_id.split(".")
            parent = model
            for part in parents:
                parent = parent._modules[part]  # type: ignore[assignment]
            parent.add_module(last, converted)
            table[node_id] = converted
    return before


# --- cnnspec train --nproc N ------------------------------------------------------------


def launch(nproc: int, cli_args: Sequence[str]) -> int:
    """Run `cnnspec CLI_ARGS` in `nproc` processes on this machine and return the exit code.

    This is `torchrun --standalone --nproc_per_node N -m cnnspec CLI_ARGS`, run in this process
    (torch.distributed.run): torchrun starts each worker in its own session, so a Ctrl-C reaches
    torchrun alone, which passes it on once to every worker (they save and stop together).
    Workers print their own errors; torchrun's failure report is left out.
    """
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", "--nproc_per_node", str(nproc), "-m", "cnnspec", *cli_args])
    # torchrun's modules set their loggers' levels themselves: quiet each of them.
    quiet = [
        logging.getLogger(name)
        for name in list(logging.Logger.manager.loggerDict)
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"))
    ]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        if 130 in codes:
            return 130
        if codes == [1]:
            return 1  # a user error: the worker printed it
        import sys

        for rank, failure in sorted(exc.failures.items()):
            why = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
            print(f"cnnspec train: rank {rank} failed ({why})", file=sys.stderr)
        return 1
    except SignalException:
        return 130  # torchrun passed the signal on; rank 0 said how to resume
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    return 0
