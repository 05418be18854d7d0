"""The dynamic batcher on its own, with a real function of the batch in place of the model."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from cnnspec.deploy.batcher import Batcher, QueueFull


class Recorder:
    """A model that returns each image's sum and its batch's size, and remembers its batch sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        return np.stack([x.reshape(len(x), -1).sum(axis=1), np.full(len(x), len(x))], axis=1)


def images(*values: float) -> np.ndarray:  # (n, 1, 2, 2), image i filled with values[i]
    return np.stack([np.full((1, 2, 2), v, dtype=np.float32) for v in values])


async def held_then_released(batcher: Batcher, hold: list[bool], requests: list[np.ndarray]) -> list[np.ndarray]:
    """Submit every request while the batcher is held, then let it go: the queue holds them all at once."""
    batcher.start()
    tasks = [asyncio.create_task(batcher.submit(r)) for r in requests]
    while batcher.depth < len(requests):
        await asyncio.sleep(0.001)
    hold[0] = False
    out = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    await batcher.stop()
    return out


def test_queued_requests_share_batches_up_to_max_batch_and_get_their_own_rows() -> None:
    model, hold = Recorder(), [True]
    batcher = Batcher(model, max_batch=4, max_wait=0.0, max_queue=10, hold=lambda: hold[0])
    requests = [images(1), images(2, 3), images(4), images(5, 6, 7), images(8)]
    out = asyncio.run(held_then_released(batcher, hold, requests))
    assert model.sizes == [4, 4]  # 1+2+1, then the 3-image request does not fit: 3+1
    assert [list(o[:, 0]) for o in out] == [[4], [8, 12], [16], [20, 24, 28], [32]]


def test_a_request_larger_than_max_batch_runs_alone() -> None:
    model, hold = Recorder(), [True]
    batcher = Batcher(model, max_batch=2, max_wait=0.0, max_queue=10, hold=lambda: hold[0])
    out = asyncio.run(held_then_released(batcher, hold, [images(1), images(2, 3, 4), images(5)]))
    assert model.sizes == [1, 3, 1]
    assert [len(o) for o in out] == [1, 3, 1]


def test_a_full_batch_does_not_wait_for_max_wait() -> None:
    model = Recorder()

    async def main() -> list[np.ndarray]:
        batcher = Batcher(model, max_batch=3, max_wait=600.0, max_queue=10)
        batcher.start()
        out = await asyncio.wait_for(asyncio.gather(*(batcher.submit(images(v)) for v in (1, 2, 3))), 60)
        await batcher.stop()
        return list(out)

    asyncio.run(main())
    assert model.sizes == [3]


def test_a_batch_waits_for_a_request_on_its_way() -> None:
    model = Recorder()

    async def main() -> list[np.ndarray]:
        batcher = Batcher(model, max_batch=8, max_wait=600.0, max_queue=10)
        batcher.start()
        with batcher.incoming():  # a second request is being read
            first = asyncio.create_task(batcher.submit(images(1)))
            await asyncio.sleep(0.05)
            assert model.sizes == []  # the first waits for it
            second = asyncio.create_task(batcher.submit(images(2)))
        out = await asyncio.wait_for(asyncio.gather(first, second), 60)
        await batcher.stop()
        return list(out)

    asyncio.run(main())
    assert model.sizes == [2]


def test_max_wait_lets_a_lone_request_run() -> None:
    model = Recorder()

    async def main() -> np.ndarray:
        batcher = Batcher(model, max_batch=32, max_wait=0.001, max_queue=10)
        batcher.start()
        with batcher.incoming():  # another request is on its way, but never comes: max_wait ends the wait
            out = await asyncio.wait_for(batcher.submit(images(2)), 60)
        await batcher.stop()
        return out

    assert list(asyncio.run(main())[0]) == [8, 1]


def test_full_queue_refuses_and_stop_answers_what_was_queued() -> None:
    model, hold = Recorder(), [True]

    async def main() -> tuple[list[np.ndarray], str]:
        batcher = Batcher(model, max_batch=1, max_wait=0.0, max_queue=2, hold=lambda: hold[0])
        batcher.start()
        queued = [asyncio.create_task(batcher.submit(images(v))) for v in (1, 2)]
        while batcher.depth < 2:
            await asyncio.sleep(0.001)
        with pytest.raises(QueueFull) as refused:
            await batcher.submit(images(3))
        stopping = asyncio.create_task(batcher.stop())
        hold[0] = False
        await asyncio.wait_for(stopping, 30)
        return [q.result() for q in queued], str(refused.value)

    out, message = asyncio.run(main())
    assert [list(o[:, 0]) for o in out] == [[4], [8]]
    assert message == "2 requests are waiting already (--max-queue 2)"


def test_a_failing_model_call_fails_every_request_of_its_batch() -> None:
    def broken(x: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"cannot run a batch of {len(x)}")

    hold = [True]
    batcher = Batcher(broken, max_batch=4, max_wait=0.0, max_queue=4, hold=lambda: hold[0])

    async def main() -> list[BaseException | np.ndarray]:
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(images(v))) for v in (1, 2)]
        while batcher.depth < 2:
            await asyncio.sleep(0.001)
        hold[0] = False
        out = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return out

    out = asyncio.run(main())
    assert [str(o) for o in out] == ["cannot run a batch of 2"] * 2
