"""Dynamic batching for `cnnspec serve`: requests wait in a bounded queue, and one task runs them together.

Each request brings a batch of n ≥ 1 images (already preprocessed, (n, C, H, W) float32). The batching
task takes the oldest waiting request, then waits for more until the batch holds `max_batch` images or
`max_wait` seconds have passed since that request was queued, whichever comes first, and only while
other requests are on their way (`incoming`: being read or decoded), so a lone request never waits. It
runs the batch in one model call on a worker thread (so the event loop keeps reading and answering
requests meanwhile) and gives each request its own rows of the output. A request that does not fit
beside the ones already taken waits for the next batch; one holding more than `max_batch` images on its
own runs alone.

No onnxruntime here: the model is a function from a batch to its outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    """The queue already holds `max_queue` requests: the caller answers 503."""


@dataclass
class _Job:
    x: np.ndarray  # (n, C, H, W)
    future: asyncio.Future[np.ndarray]
    arrived: float = field(default_factory=time.perf_counter)


# What the batcher reports of each model call: its images and its seconds.
BatchObserver = Callable[[int, float], None]


class Batcher:
    """The queue and the one task that empties it (`start` inside a running event loop, `stop` to drain)."""

    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int,
        observe: BatchObserver | None = None,
        hold: Callable[[], bool] | None = None,
    ) -> None:
        """`run` maps (N, C, H, W) to (N, …) and is called on a worker thread, one batch at a time. `hold`:
        while it returns True the task takes no new batch (a supported hook: tests fill the queue with it,
        `cnnspec serve` reads it from CNNSPEC_SERVE_HOLD); requests still queue, up to `max_queue`."""
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be at least 1 and max_wait at least 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_queue = max_queue
        self._observe = observe
        self._hold = hold
        self._jobs: deque[_Job] = deque()
        self._queued_images = 0
        self._arrived = asyncio.Event()
        self._stopping = False
        self._incoming = 0
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnspec-serve-model")

    @property
    def depth(self) -> int:
        """Requests waiting for a batch (not those whose batch is running)."""
        return len(self._jobs)

    @contextlib.contextmanager
    def incoming(self) -> Iterator[None]:
        """Around reading and decoding a request that will be submitted: while any is, a batch waits for it
        (up to max_wait)."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            self._arrived.set()

    @property
    def full(self) -> bool:
        """Whether a request submitted now would be refused (QueueFull)."""
        return len(self._jobs) >= self.max_queue

    @property
    def full_message(self) -> str:
        return f"{len(self._jobs)} requests are waiting already (--max-queue {self.max_queue})"

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="cnnspec-serve-batcher")

    async def stop(self) -> None:
        """Answer every request still queued, then end the task and its worker thread."""
        self._stopping = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def abort(self) -> None:
        """End the task now, running nothing more (a forced stop: the requests queued were cancelled)."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)  # a batch already running ends on its own

    async def submit(self, x: np.ndarray) -> np.ndarray:
        """The model's output rows for `x` (n, C, H, W), once its batch has run; QueueFull when the queue
        is full; the model call's exception when it fails."""
        if self.full:
            raise QueueFull(self.full_message)
        job = _Job(x, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._queued_images += len(x)
        self._arrived.set()
        return await job.future

    async def _loop(self) -> None:
        while True:
            while not self._jobs:
                if self._stopping:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            while self._hold is not None and self._hold():
                await asyncio.sleep(0.01)
            await self._fill(self._jobs[0].arrived + self.max_wait)
            await self._run_batch(self._take())

    async def _fill(self, deadline: float) -> None:
        """Wait until the queue holds a full batch, no other request is on its way, or `deadline` (perf_counter
        seconds) has passed."""
        while self._queued_images < self.max_batch and self._incoming > 0 and not self._stopping:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Job]:
        """The oldest requests whose images fit in one batch (at least one request)."""
        batch = [self._jobs.popleft()]
        images = len(batch[0].x)
        while self._jobs and images + len(self._jobs[0].x) <= self.max_batch:
            images += len(self._jobs[0].x)
            batch.append(self._jobs.popleft())
        self._queued_images -= images
        return batch

    async def _run_batch(self, batch: list[_Job]) -> None:
        x = batch[0].x if len(batch) == 1 else np.concatenate([job.x for job in batch])
        started = time.perf_counter()
        try:
            out = await asyncio.get_running_loop().run_in_executor(self._executor, self._run, x)
        except Exception as exc:  # the model call failed: every request of the batch hears why
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        if self._observe is not None:
            self._observe(len(x), time.perf_counter() - started)
        start = 0
        for job in batch:
            rows = out[start : start + len(job.x)]
            start += len(job.x)
            if not job.future.done():  # a cancelled request (its client left) takes nothing
                job.future.set_result(rows)
