"""The shadow scorer (`ctcd.serving.rollout_scoring.ShadowScorer`): every submitted batch is scored by the
candidate and logged, off the request path, in a thread at the lowest CPU priority."""

from __future__ import annotations

import os
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ctcd.columns import CANDIDATE_PROBABILITY
from ctcd.serving.rollout_scoring import SHADOW_NICE, ShadowScorer, model_scores


def _candidate() -> SimpleNamespace:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = (x["a"] + x["b"] > 0).astype(int)
    estimator = LogisticRegression().fit(x, y)
    return SimpleNamespace(version="2", estimator=estimator, positive_index=1, classes=np.array([0, 1]))


def test_every_submitted_batch_is_scored_by_the_candidate_and_logged() -> None:
    logged: list[dict] = []
    scorer = ShadowScorer(logged.append)
    candidate = _candidate()
    frames = [pd.DataFrame({"a": [float(i), -1.0], "b": [0.5, float(-i)]}) for i in range(50)]
    for i, frame in enumerate(frames):
        scorer.submit(candidate, lambda f=frame: f, {"batch": i})
    scorer.close()

    assert [r["batch"] for r in logged] == list(range(50))  # every batch, in order, once
    for record, frame in zip(logged, frames, strict=True):
        expected = model_scores(candidate, frame)[0]
        np.testing.assert_allclose(record[CANDIDATE_PROBABILITY], expected)


def test_a_batch_the_candidate_cannot_score_is_still_logged_without_its_score() -> None:
    logged: list[dict] = []
    scorer = ShadowScorer(logged.append)
    scorer.submit(_candidate(), lambda: pd.DataFrame({"unknown": [1.0]}), {"batch": "bad"})
    scorer.close()
    assert logged == [{"batch": "bad"}]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_candidate_scores_at_the_lowest_cpu_priority_and_the_caller_keeps_its_own() -> None:
    seen: list[int] = []

    def frame() -> pd.DataFrame:  # called where the candidate scores: in the scorer's thread
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return pd.DataFrame({"a": [1.0], "b": [2.0]})

    scorer = ShadowScorer(lambda record: None)
    scorer.submit(_candidate(), frame, {})
    scorer.close()
    assert seen == [SHADOW_NICE]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < SHADOW_NICE
