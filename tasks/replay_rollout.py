"""Rollouts in the replay (`tasks/replay.py`): a policy name with `+shadow` or `+canary` (`ctcd+shadow`,
`every-4+canary`) promotes on live evidence, as `serving.rollout: shadow | canary` does in the product.

A candidate that passes the model gate while a champion serves does not replace it: it enters a rollout
(`ctcd.rollout.RolloutState`) and, from the next batch on, scores every served row beside the champion; the
replay's prediction log gets the live log's rollout columns (`ctcd/columns.py`). In shadow the champion
answers every row; in canary the candidate answers the rows `ctcd.rollout.routes_to_candidate` sends it
(by the row's id, as the live server routes), and the batch's score counts the answered predictions.
After each served batch the product's online gate runs on the rows whose labels have arrived
(`online_gate.judge_rollout`, `next_step`): promote -> the candidate becomes the champion
(serving from the next batch); reject -> the champion stays; step_up -> a canary's next share; hold.
A newer candidate that passes the model gate replaces the one in rollout (the delivery's `start_rollout`
does the same). No candidate rolls out without a champion: the first model is promoted at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from typing import Literal

import numpy as np
import pandas as pd

from ctcd import columns
from ctcd.config import CtcdConfig
from ctcd.ct_inputs import with_batches
from ctcd.rollout import RolloutState, routes_to_candidate
from ctcd.serving.rollout_scoring import log_columns, no_rollout_columns
from tasks import online_gate, policy
from tasks.evaluation import THRESHOLD
from tasks.model import features_frame, positive_proba
from tasks.online_gate import OnlineVerdict, RolloutStep
from tasks.replay_history import ReplayBatch, Scenario, arrived_labels
from tasks.replay_registry import Champion

Mode = Literal["direct", "shadow", "canary"]
ROLLOUT_MODES = ("shadow", "canary")


def split_policy(name: str) -> tuple[str, Mode]:
    """A policy name's schedule and rollout: `ctcd+shadow` -> (`ctcd`, `shadow`); no suffix: direct."""
    base, sep, mode = name.partition("+")
    if not sep:
        return name, "direct"
    if mode == "shadow" or mode == "canary":
        return base, mode
    raise ValueError(
        f"unknown rollout {mode!r} in policy {name!r}: end a policy name with +shadow or +canary "
        "(promotion on live evidence), or with nothing (direct promotion)"
    )


@dataclass
class Rollout:
    """A candidate served beside the champion."""

    candidate: Champion
    state: RolloutState
    started: int  # the batch whose training started it; it scores rows from the next batch on
    trigger: str | None  # the monitored batch of the drift-triggered training that made it (None: scheduled)


@dataclass(frozen=True)
class OnlineRecord:
    """One online gate verdict of a replayed rollout, and the step the rollout took on it."""

    day: int
    batch: str
    candidate: str
    champion: str
    mode: str
    started: int
    verdict: str  # promote | wait | reject
    action: str  # promote | reject | step_up | hold
    fraction: float  # the candidate's share of answered rows after the step
    labelled_rows: int
    delta: float | None
    batches_waited: int
    reason: str


def start(
    cfg: CtcdConfig,
    candidate: Champion,
    champion: Champion,
    mode: Mode,
    day: ReplayBatch,
    trigger: str | None,
    metric: str | None = None,
) -> Rollout:
    """The rollout `deploy.start_rollout` records: shadow, or canary at the first `serving.canary_steps`;
    judged online on `metric`, the one the candidate passed the model gate on."""
    state = RolloutState(
        candidate_version=candidate.version,
        champion_version=champion.version,
        mode="canary" if mode == "canary" else "shadow",
        step=0,
        fraction=cfg.serving.canary_steps[0] if mode == "canary" else 0.0,
        started_at=day.start.replace(tzinfo=UTC),
        started_batch=day.batch_id,
        metric=metric,
    )
    return Rollout(candidate, state, day.day, trigger)


def with_rollout(
    cfg: CtcdConfig, day: ReplayBatch, log: pd.DataFrame, rollout: Rollout | None
) -> pd.DataFrame:
    """The champion's log of the batch (`replay.served_predictions`) as the live server logs it: with the
    rollout columns, and in canary the candidate's answers on the rows routed to it."""
    n = len(log)
    if rollout is None:  # the probabilities typed as the rollout's, so logs concatenate without a warning
        return log.assign(**no_rollout_columns(n)).astype(
            {columns.CHAMPION_PROBABILITY: "float64", columns.CANDIDATE_PROBABILITY: "float64"}
        )
    ds, state = cfg.dataset, rollout.state
    champion_proba = log[columns.PROBABILITY].to_numpy()
    candidate_proba = positive_proba(rollout.candidate.model, features_frame(day.features, ds))
    to_candidate = np.zeros(n, dtype=bool)
    if state.mode == "canary":
        ids = log[ds.id_column].tolist()
        to_candidate = np.fromiter((routes_to_candidate(i, state.fraction) for i in ids), dtype=bool, count=n)
    proba = np.where(to_candidate, candidate_proba, champion_proba)
    answered_by = np.where(to_candidate, "candidate", "champion").tolist()
    out = log.assign(
        **{
            columns.PROBABILITY: proba,
            columns.PREDICTION: (proba >= THRESHOLD).astype("int64"),
            columns.MODEL_VERSION: np.where(to_candidate, state.candidate_version, state.champion_version),
        }
    )
    return out.assign(
        **log_columns(
            answered_by, state.champion_version, champion_proba, state.candidate_version, candidate_proba, n
        )
    )


def judge(
    scenario: Scenario, today: int, rollout: Rollout, logs: dict[int, pd.DataFrame]
) -> tuple[OnlineVerdict, RolloutStep]:
    """The monitoring flow's online step on batch `today`: the gate on the rollout's logged rows whose labels
    have arrived (`flows/monitoring.py::judge_rollout`), and the step `next_step` takes on its verdict."""
    cfg, timeline = scenario.cfg, scenario.timeline
    batch = scenario.days[today - 1].batch_id
    window = online_gate.rollout_window(cfg, timeline, batch)
    served = [log for d, log in logs.items() if scenario.days[d - 1].batch_id in window]
    predictions = with_batches(pd.concat(served, ignore_index=True), timeline) if served else pd.DataFrame()
    labels = arrived_labels(scenario, today, timeline.position(window[0]) or 0)
    verdict = online_gate.judge_rollout(cfg, rollout.state, predictions, labels)
    return verdict, online_gate.next_step(cfg, verdict, rollout.state)


def record(
    scenario: Scenario, today: int, rollout: Rollout, verdict: OnlineVerdict, step: RolloutStep
) -> OnlineRecord:
    """The verdict and step as the policy run keeps them."""
    return OnlineRecord(
        day=today,
        batch=scenario.days[today - 1].batch_id,
        candidate=verdict.candidate_version,
        champion=verdict.champion_version,
        mode=rollout.state.mode,
        started=rollout.started,
        verdict=verdict.action,
        action=step.action,
        fraction=step.fraction,
        labelled_rows=verdict.labelled_rows,
        delta=verdict.delta,
        batches_waited=verdict.batches_waited,
        reason=step.reason,
    )


def stepped(rollout: Rollout, step: RolloutStep) -> Rollout:
    """The rollout after a `step_up` or `hold` (`deploy.advance_canary`)."""
    state = rollout.state.model_copy(update={"step": step.step, "fraction": step.fraction})
    return Rollout(rollout.candidate, state, rollout.started, rollout.trigger)


def policy_state_after(state: policy.PolicyState, rollout: Rollout, step: RolloutStep) -> policy.PolicyState:
    """The retraining policy's state once the rollout is decided, as the monitoring flow reads the outcome
    back from the registry (`tasks.monitoring.retrain_outcome`: promoted, or tagged `online gate: reject`):
    only for the open episode's latest retraining, the one whose drift event made this candidate."""
    episode = state.episode
    if step.action not in ("promote", "reject") or episode is None or rollout.trigger is None:
        return state
    if episode.retrained_on != rollout.trigger:
        return state
    return policy.record_outcome(state, step.action == "promote")
