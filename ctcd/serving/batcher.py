"""Merge concurrent requests into batches for one scoring thread, without a timer.

The first request that finds the scorer idle is scored at once, alone. Requests that arrive while a batch
is being scored wait in a queue, and the next batch takes all of them (whole requests, up to `max_rows`
rows; a single larger request goes alone). Batches grow with the load and no request waits for a window
to close, so an idle server answers in one scoring call and a loaded one scores many rows per call.
A request that waited longer than `max_wait_seconds` before its batch started is refused (503) instead
of scored: the queue sheds load rather than answering ever later.

`submit` runs on the server's event loop; `score` runs in the batcher's own thread and gets one list per
request, returning one result per request in the same order. An exception fails every request of its
batch; later batches go on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import bentoml


class MicroBatcher:
    """One scoring thread fed with batches of the requests that queued while it was busy."""

    def __init__(
        self,
        score: Callable[[list[Sequence[Any]]], Sequence[Any]],
        max_rows: int,
        max_wait_seconds: float,
        name: str = "ctcd-score",
    ) -> None:
        self.score = score
        self.max_rows = max_rows
        self.max_wait_seconds = max_wait_seconds
        self._queue: deque[tuple[Sequence[Any], asyncio.Future[Any], float]] = deque()
        self._running = False
        self._task: asyncio.Task[None] | None = None  # the draining task (a reference keeps it alive)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.batches = 0  # scoring calls made
        self.rows = 0  # rows scored

    async def submit(self, rows: Sequence[Any]) -> Any:
        """Score `rows` with the next batch; return what `score` returned for them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((rows, future, time.monotonic()))
        if not self._running:
            self._running = True
            self._task = loop.create_task(self._drain())
        return await future

    def close(self) -> None:
        """Let the batch being scored finish; no further batches start."""
        self._executor.shutdown(wait=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                jobs = self._next_batch()
                if not jobs:
                    continue
                try:
                    results = await loop.run_in_executor(self._executor, self.score, [j[0] for j in jobs])
                except Exception as exc:
                    for _, future, _ in jobs:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.rows += sum(len(j[0]) for j in jobs)
                for (_, future, _), result in zip(jobs, results, strict=True):
                    if not future.done():  # the client may have gone away
                        future.set_result(result)
        finally:
            self._running = False
            if self._queue:  # a request cancelled this task: hand the rest to a new one
                self._running = True
                self._task = loop.create_task(self._drain())

    def _next_batch(self) -> list[tuple[Sequence[Any], asyncio.Future[Any], float]]:
        jobs: list[tuple[Sequence[Any], asyncio.Future[Any], float]] = []
        rows = 0
        now = time.monotonic()
        while self._queue:
            job_rows, future, queued_at = self._queue[0]
            if jobs and rows + len(job_rows) > self.max_rows:
                break
            self._queue.popleft()
            if future.done():  # cancelled while it waited
                continue
            if now - queued_at > self.max_wait_seconds:
                future.set_exception(
                    bentoml.exceptions.ServiceUnavailable(
                        f"the request waited more than {self.max_wait_seconds:.1f} s for scoring: "
                        "the server is overloaded, retry later"
                    )
                )
                continue
            jobs.append((job_rows, future, queued_at))
            rows += len(job_rows)
        return jobs
