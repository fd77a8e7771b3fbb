"""The micro-batcher of /predict: requests that queue while a batch is scored go together in the next one."""

from __future__ import annotations

import asyncio
import threading

import bentoml
import pytest

from ctcd.serving.batcher import MicroBatcher


class GatedScorer:
    """Records each batch; the first call waits until released, so requests pile up behind it."""

    def __init__(self) -> None:
        self.batches: list[list[list[int]]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.threads: set[str] = set()

    def __call__(self, requests: list[list[int]]) -> list[list[int]]:
        self.threads.add(threading.current_thread().name)
        self.batches.append(requests)
        self.entered.set()
        self.release.wait(30)
        if any(-1 in r for r in requests):
            raise ValueError("bad row")
        return [[v * 10 for v in r] for r in requests]


async def _wait(event: threading.Event) -> None:
    await asyncio.to_thread(event.wait, 30)


def test_requests_that_arrive_during_a_batch_are_scored_together_in_order():
    scorer = GatedScorer()
    batcher = MicroBatcher(scorer, max_rows=64, max_wait_seconds=60)

    async def main() -> list:
        first = asyncio.create_task(batcher.submit([1]))
        await _wait(scorer.entered)  # the first request is being scored, alone
        rest = [asyncio.create_task(batcher.submit([i, i + 1])) for i in (2, 4, 6)]
        await asyncio.sleep(0.05)
        scorer.release.set()
        return [await first, *[await t for t in rest]]

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert answers == [[10], [20, 30], [40, 50], [60, 70]]
    assert scorer.batches == [[[1]], [[2, 3], [4, 5], [6, 7]]]
    assert (batcher.batches, batcher.rows) == (2, 7)
    assert len(scorer.threads) == 1 and threading.current_thread().name not in scorer.threads


def test_a_batch_never_exceeds_max_rows_but_a_larger_request_goes_alone():
    scorer = GatedScorer()
    batcher = MicroBatcher(scorer, max_rows=4, max_wait_seconds=60)

    async def main() -> None:
        first = asyncio.create_task(batcher.submit([0]))
        await _wait(scorer.entered)
        queued = [batcher.submit(r) for r in ([1, 1], [2, 2], [3, 3, 3, 3, 3, 3], [4])]
        tasks = [asyncio.create_task(q) for q in queued]
        await asyncio.sleep(0.05)
        scorer.release.set()
        await asyncio.gather(first, *tasks)

    try:
        asyncio.run(main())
    finally:
        batcher.close()
    assert scorer.batches == [[[0]], [[1, 1], [2, 2]], [[3, 3, 3, 3, 3, 3]], [[4]]]


def test_an_error_fails_only_the_requests_of_its_batch():
    scorer = GatedScorer()
    batcher = MicroBatcher(scorer, max_rows=2, max_wait_seconds=60)

    async def main() -> list:
        first = asyncio.create_task(batcher.submit([-1]))
        await _wait(scorer.entered)
        later = asyncio.create_task(batcher.submit([5, 6]))
        await asyncio.sleep(0.05)
        scorer.release.set()
        return await asyncio.gather(first, later, return_exceptions=True)

    try:
        failed, answered = asyncio.run(main())
    finally:
        batcher.close()
    assert isinstance(failed, ValueError)
    assert answered == [50, 60]


def test_a_request_that_waited_too_long_is_refused_with_503_and_not_scored():
    scorer = GatedScorer()
    batcher = MicroBatcher(scorer, max_rows=64, max_wait_seconds=0.05)

    async def main() -> list:
        first = asyncio.create_task(batcher.submit([1]))
        await _wait(scorer.entered)
        late = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0.2)  # longer than max_wait_seconds behind the first batch
        scorer.release.set()
        return await asyncio.gather(first, late, return_exceptions=True)

    try:
        answered, refused = asyncio.run(main())
    finally:
        batcher.close()
    assert answered == [10]
    assert isinstance(refused, bentoml.exceptions.ServiceUnavailable) and refused.error_code == 503
    assert scorer.batches == [[[1]]]


def test_a_cancelled_request_is_dropped_and_the_others_are_answered():
    scorer = GatedScorer()
    batcher = MicroBatcher(scorer, max_rows=64, max_wait_seconds=60)

    async def main() -> list:
        first = asyncio.create_task(batcher.submit([1]))
        await _wait(scorer.entered)
        gone = asyncio.create_task(batcher.submit([2]))
        kept = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0.05)
        gone.cancel()  # the client went away (or the request timed out) while it waited
        scorer.release.set()
        return [await first, await kept, gone.cancelled()]

    try:
        assert asyncio.run(main()) == [[10], [30], True]
    finally:
        batcher.close()
    assert scorer.batches == [[[1]], [[3]]]


@pytest.mark.parametrize("requests", [1, 50])
def test_every_request_gets_its_own_answer_under_concurrency(requests):
    def score(batch: list[list[int]]) -> list[list[int]]:
        return [[v + 1 for v in r] for r in batch]

    batcher = MicroBatcher(score, max_rows=8, max_wait_seconds=60)

    async def main() -> list:
        return await asyncio.gather(*(batcher.submit([i, -i]) for i in range(requests)))

    try:
        answers = asyncio.run(main())
    finally:
        batcher.close()
    assert answers == [[i + 1, -i + 1] for i in range(requests)]
    assert batcher.rows == 2 * requests and batcher.batches <= requests
