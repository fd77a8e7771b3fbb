"""Scoring during a rollout (`ctcd.rollout`): the champion and a candidate on the same rows.

`ChampionService` holds the candidate beside the champion while a rollout is active. In canary each row is
answered by the model `routes_to_candidate` picks for its id: when the candidate answers any row of a batch,
both models score it before it is answered. In shadow, and for a canary batch the champion answers alone,
the candidate's scoring and the log write leave the request path: `ShadowScorer` does them in its own
thread, at the lowest CPU priority (so a saturated server answers first), and scores inline only when it
falls behind (its queue is full), so the log stays complete. Every logged row carries both probabilities.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from ctcd.columns import (
    ANSWERED_BY,
    CANDIDATE_PROBABILITY,
    CANDIDATE_VERSION,
    CHAMPION_PROBABILITY,
    CHAMPION_VERSION,
)
from ctcd.rollout import routes_to_candidate

logger = logging.getLogger("ctcd.serving")

SHADOW_QUEUE_BATCHES = 256
SHADOW_MERGE_BATCHES = 32  # queued batches the shadow scorer scores in one model call, at most
SHADOW_NICE = 19  # the shadow scorer thread's CPU priority (the lowest)


class ServedRollout(BaseModel):
    """The rollout a server is asked to serve (the reload channel's and `/admin/reload`'s `rollout`)."""

    candidate_version: str
    mode: Literal["shadow", "canary"]
    fraction: float = Field(default=0.0, ge=0.0, le=1.0)


@dataclass(frozen=True)
class ActiveRollout:
    """A loaded candidate (a `LiveModel`) and how it is served; replaced as a whole, never mutated."""

    candidate: Any
    mode: Literal["shadow", "canary"]
    fraction: float

    def describe(self) -> dict[str, Any]:
        return {"candidate_version": self.candidate.version, "mode": self.mode, "fraction": self.fraction}


def active_rollout(
    rollout: ServedRollout | None, loaded: list[Any], load: Callable[[str], Any]
) -> ActiveRollout | None:
    """The rollout to serve: its candidate taken from the models `loaded` already, else `load`ed (checked)."""
    if rollout is None:
        return None
    same = [m for m in loaded if m.version == rollout.candidate_version]
    candidate = same[0] if same else load(rollout.candidate_version)
    return ActiveRollout(candidate, rollout.mode, rollout.fraction)


def model_scores(model: Any, frame: Any) -> tuple[np.ndarray, np.ndarray]:
    """A `LiveModel`'s probability of the positive label and its predicted label, per row of `frame`."""
    proba = np.asarray(model.estimator.predict_proba(frame), dtype="float64")
    return proba[:, model.positive_index], model.classes[proba.argmax(axis=1)].astype("int64")


def candidate_frame(champion: Any, candidate: Any, raw: dict[str, list[Any]], frame: Any) -> Any:
    """The candidate's input: the champion's when both take categories in the same form."""
    return frame if candidate.text_columns == champion.text_columns else candidate.input_columns(raw)[0]


def log_columns(
    answered_by: list[Any],
    champion_version: Any,
    champion_probability: Any,
    candidate_version: Any,
    candidate_probability: Any,
    n: int,
) -> dict[str, Any]:
    """The five rollout log columns of `n` rows; a version given once is repeated on every row."""
    return {
        ANSWERED_BY: answered_by,
        CHAMPION_VERSION: [champion_version] * n,
        CHAMPION_PROBABILITY: champion_probability,
        CANDIDATE_VERSION: [candidate_version] * n,
        CANDIDATE_PROBABILITY: candidate_probability,
    }


def no_rollout_columns(n: int) -> dict[str, list[None]]:
    """The rollout log columns of rows served without a rollout."""
    empty = [None] * n
    return log_columns(empty, None, empty, None, empty, n)


def canary_answers(
    champion: Any,
    rollout: ActiveRollout,
    champion_scores: tuple[np.ndarray, np.ndarray],
    candidate_scores: tuple[np.ndarray, np.ndarray],
    to_candidate: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """Per row, the answering model's probability, label and version, and the rollout log columns."""
    probability = np.where(to_candidate, candidate_scores[0], champion_scores[0])
    labels = np.where(to_candidate, candidate_scores[1], champion_scores[1])
    cand, champ = rollout.candidate.version, champion.version
    versions = [cand if c else champ for c in to_candidate.tolist()]
    answered_by = ["candidate" if c else "champion" for c in to_candidate.tolist()]
    columns = log_columns(answered_by, champ, champion_scores[0], cand, candidate_scores[0], len(versions))
    return probability, labels, versions, columns


def rollout_answers(
    champion: Any,
    rollout: ActiveRollout | None,
    raw: dict[str, list[Any]],
    frame: Any,
    champion_scores: tuple[np.ndarray, np.ndarray],
    ids: list[Any],
    request_ids: list[str],
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any], bool]:
    """Per row, the answer (probability, label, version), the rollout log columns of a scored batch, and
    whether the candidate still has to score it (for the log only: `ShadowScorer`).

    Without a rollout and in shadow the champion answers (the shadow candidate scores later, off the
    request path). In canary a row is routed by its id (a row without one by its request id); when the
    candidate answers any row of the batch it scores the batch now, else later, like a shadow.
    """
    n = len(ids)
    if rollout is None:
        return *champion_scores, [champion.version] * n, no_rollout_columns(n), False
    to_candidate = np.zeros(n, dtype=bool)
    if rollout.mode == "canary":
        route_ids = [i if i is not None else r for i, r in zip(ids, request_ids, strict=True)]
        to_candidate = np.fromiter(
            (routes_to_candidate(i, rollout.fraction) for i in route_ids), dtype=bool, count=n
        )
    if not to_candidate.any():
        columns = shadow_columns(champion, rollout, champion_scores[0])
        return *champion_scores, [champion.version] * n, columns, True
    scores = model_scores(rollout.candidate, candidate_frame(champion, rollout.candidate, raw, frame))
    return *canary_answers(champion, rollout, champion_scores, scores, to_candidate), False


def shadow_columns(champion: Any, rollout: ActiveRollout, champion_probability: np.ndarray) -> dict[str, Any]:
    """The rollout log columns of a batch the champion answers alone, before the candidate has scored it."""
    n = len(champion_probability)
    return log_columns(
        ["champion"] * n, champion.version, champion_probability, rollout.candidate.version, [None] * n, n
    )


def lower_this_threads_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19), where the OS allows it.

    On Linux a thread's nice value is its own: on a busy machine the shadow candidate's scoring then waits
    for the threads that answer requests instead of sharing the CPU with them evenly."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SHADOW_NICE)


class ShadowScorer:
    """Scores shadow batches with the candidate in its own thread, then appends them to the log."""

    def __init__(self, append: Callable[[dict[str, Any]], None]) -> None:
        self._append = append
        self._queue: queue.Queue[tuple[Any, Callable[[], Any], dict[str, Any]] | None] = queue.Queue(
            SHADOW_QUEUE_BATCHES
        )
        self._thread = threading.Thread(target=self._run, name="ctcd-shadow-scorer", daemon=True)
        self._thread.start()

    def submit(self, candidate: Any, frame: Callable[[], Any], record: dict[str, Any]) -> None:
        """Score `record`'s rows with `candidate` (its input from `frame()`) and log them, soon."""
        try:
            self._queue.put_nowait((candidate, frame, record))
        except queue.Full:
            self._finish(candidate, frame, record)  # behind: score here rather than lose the rows

    def close(self) -> None:
        """Score and log every batch queued so far; then stop."""
        self._queue.put(None)
        self._thread.join(timeout=120)

    def _run(self) -> None:
        lower_this_threads_priority()
        while (job := self._queue.get()) is not None:
            # Under load batches queue up: score them together, one model call (its fixed cost dominates).
            jobs = [job]
            while len(jobs) < SHADOW_MERGE_BATCHES:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._finish_together(jobs)
                    return
                jobs.append(job)
            self._finish_together(jobs)

    def _finish_together(self, jobs: list[tuple[Any, Callable[[], Any], dict[str, Any]]]) -> None:
        import pandas as pd

        candidate = jobs[0][0]
        if len(jobs) == 1 or any(c is not candidate for c, _, _ in jobs):
            for job in jobs:
                self._finish(*job)
            return
        try:
            frames = [frame() for _, frame, _ in jobs]
            scores = model_scores(candidate, pd.concat(frames, ignore_index=True))[0]
        except Exception:
            for job in jobs:  # each on its own: one bad batch does not lose the others' scores
                self._finish(*job)
            return
        start = 0
        for (_, _, record), frame in zip(jobs, frames, strict=True):
            record[CANDIDATE_PROBABILITY] = scores[start : start + len(frame)]
            start += len(frame)
            try:
                self._append(record)
            except Exception:
                logger.exception("could not queue shadow-scored predictions for the log")

    def _finish(self, candidate: Any, frame: Callable[[], Any], record: dict[str, Any]) -> None:
        try:
            record[CANDIDATE_PROBABILITY] = model_scores(candidate, frame())[0]
        except Exception:
            logger.exception("shadow model version %s could not score a batch", candidate.version)
        try:
            self._append(record)
        except Exception:
            logger.exception("could not queue shadow-scored predictions for the log")
