"""Replay a history batch by batch under a retraining policy, with the CT loop's own steps (`ctcd backtest`).

The decisions are `tasks/ct_steps.py`, the same functions the training and monitoring flows call; this
module replaces what the flows get from Prefect, MLflow, the prediction log and the label files with a
simulated clock and an in-memory registry: the champion is kept in memory, its predictions are logged as
a DataFrame in the prediction-log format, and labels arrive `dataset.label_delay_batches` after their batch.
No Prefect, MLflow or server is imported or started.

One replayed batch `d` (1-based), in order:
1. the labels of batch `d - label_delay_batches` arrive;
2. batch `d` lands; the data gate rejects it when the scenario corrupted it or its features hold nulls
   (a rejected batch is neither served, scored nor trained on);
3. the champion serves the batch: its predictions are logged and the batch is scored against its labels
   (the replay knows them now; the policy only sees them once they arrive);
4. the policy decides whether to train. `ctcd` runs the monitoring steps on exactly what the monitoring
   flow would load and retrains when the policy says so, from its `window_start`; whether that candidate
   was promoted goes back into the policy's state (`record_outcome`), so a rejected retraining is retried.
   `never` trains once; `every-k` every k batches on the sliding `training.window_batches` window
   (`daily` is every batch, `weekly` every 7 daily batches, i.e. every batch of a weekly or monthly
   cadence);
5. a training uses validated batches whose labels have arrived; its candidate replaces the champion only
   if the model gate passes (with no champion, the first-model rule), and serves from batch `d + 1`.

The first champion is trained at the end of batch `warmup` by every policy (batches before are history:
not served, not scored); when nothing clears the floors, every policy tries again the next batch.
The histories are `tasks/replay_history.py`, the in-memory registry and one training
`tasks/replay_registry.py`; `ctcd/app/backtest.py` runs the policies and judges them
(`tasks/replay_scoring.py`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, timedelta

import numpy as np
import pandas as pd

from ctcd.cadence import Timeline
from ctcd.config import CtcdConfig
from ctcd.ct_inputs import with_batches
from ctcd.errors import WorkFailed
from tasks import ct_steps, policy, training
from tasks.evaluation import THRESHOLD
from tasks.model import features_frame, positive_proba, target_vector
from tasks.replay_history import ReplayBatch, Scenario
from tasks.replay_registry import (
    Champion,
    FitCache,
    TrainingRecord,
    failed_record,
    safe_metric,
    train_and_gate,
)

EVERY_K = re.compile(r"^every-([1-9]\d*)$")  # the fixed schedules: every-1, every-2, ...


# --------------------------------------------------------------------------- policies


def schedule_every(name: str, timeline: Timeline) -> int | None:
    """How many batches apart a scheduled policy trains (None: `never` or `ctcd`)."""
    if name in ("never", "ctcd"):
        return None
    if name == "daily":
        return 1
    if name == "weekly":
        return 7 if timeline.period == "day" else 1
    m = EVERY_K.match(name)
    if m is None:
        raise ValueError(f"unknown policy {name!r}: use never, daily, weekly, ctcd or every-K (K >= 1)")
    return int(m[1])


def check_policy(name: str) -> str:
    """The policy name, or a ValueError saying which names exist."""
    schedule_every(name, Timeline())
    return name


@dataclass(frozen=True)
class MonitoringRecord:
    """One monitoring run of the `ctcd` policy."""

    day: int
    action: str
    reason: str
    fired: list[str]
    window_start: str | None
    episode_started: str | None = None
    state: policy.PolicyState | None = field(default=None, repr=False)  # the state the policy decided on


@dataclass
class PolicyRun:
    """Everything one policy did and scored over a history."""

    policy: str
    accuracy: dict[int, float] = field(default_factory=dict)
    metric: dict[int, float] = field(default_factory=dict)  # gates.model.primary_metric per batch
    served_by: dict[int, str] = field(default_factory=dict)
    trainings: list[TrainingRecord] = field(default_factory=list)
    monitoring: list[MonitoringRecord] = field(default_factory=list)
    champions: dict[str, Champion] = field(default_factory=dict, repr=False)  # the in-memory registry
    logs: dict[int, pd.DataFrame] = field(default_factory=dict, repr=False)  # the prediction log


# --------------------------------------------------------------------------- serving and monitoring


def served_predictions(cfg: CtcdConfig, day: ReplayBatch, champion: Champion) -> pd.DataFrame:
    """The batch as the prediction log holds it after the champion served it (served mid-batch-day)."""
    ds = cfg.dataset
    proba = positive_proba(champion.model, features_frame(day.features, ds))
    if ds.timestamp_column and ds.timestamp_column in day.features:
        served_at = pd.to_datetime(day.features[ds.timestamp_column], utc=True)
    else:
        served_at = pd.Series(pd.Timestamp(day.start + timedelta(hours=12), tz=UTC), index=day.features.index)
    log = day.features[[ds.id_column, *ds.features]].copy()
    log.insert(0, "served_at", served_at.to_numpy())
    log.insert(0, "request_id", [f"{day.batch_id}-{i}" for i in range(len(log))])
    log["probability"] = proba
    log["prediction"] = (proba >= THRESHOLD).astype("int64")
    log["model_version"] = champion.version
    return log


def batch_targets(cfg: CtcdConfig, day: ReplayBatch) -> np.ndarray:
    """The batch's labels (0/1 for the positive label), in the order of its feature rows."""
    ids = day.features[[cfg.dataset.id_column]]
    return target_vector(ids.merge(day.labels, on=cfg.dataset.id_column, how="left"), cfg.dataset).to_numpy()


def monitor(
    scenario: Scenario,
    today: int,
    champion: Champion,
    logs: dict[int, pd.DataFrame],
    state: policy.PolicyState,
) -> tuple[policy.RetrainDecision, policy.PolicyState] | None:
    """The monitoring flow's decision for `today` on what it would load; None when it has no predictions."""
    cfg = scenario.cfg
    delay = cfg.dataset.label_delay_batches
    timeline = scenario.timeline
    batch = scenario.days[today - 1].batch_id
    window = ct_steps.windows(cfg, timeline, batch)
    served = [log for d, log in logs.items() if scenario.days[d - 1].batch_id in window.lookback]
    if not served:
        return None
    predictions = with_batches(pd.concat(served, ignore_index=True), timeline)
    if ct_steps.current_window(predictions, window.current).empty:
        return None
    # Arrived labels of the look-back's batches (and the label delay's before them), as `read_labels`.
    due = scenario.days[: today - delay] if today > delay else []
    first = (timeline.position(window.lookback[0]) or 0) - delay
    arrived = [d.labels for d in due if (timeline.position(d.batch_id) or 0) >= first]
    labels = (
        pd.concat(arrived, ignore_index=True)
        if arrived
        else pd.DataFrame(
            {cfg.dataset.id_column: pd.Series(dtype="int64"), cfg.dataset.target: pd.Series(dtype="int64")}
        )
    )
    found, labelled = ct_steps.signals(
        cfg, window, champion.version, champion.reference, champion.baseline, predictions, labels
    )
    return ct_steps.policy_decision(cfg, found, labelled, state, batch, timeline)


# --------------------------------------------------------------------------- the replay


def replay(
    scenario: Scenario,
    which: str,
    warmup: int,
    cache: FitCache | None = None,
    device: training.DeviceChoice | None = None,
    on_day: Callable[[int, str], None] | None = None,
) -> PolicyRun:
    """Replay the history under one policy and record what it served, trained, promoted and decided.

    `on_day(day, message)` is called after every batch (progress)."""
    cfg = scenario.cfg
    cache = cache or FitCache()
    device = device or training.choose_device(cfg.training.device)
    every = schedule_every(which, scenario.timeline)
    if not 1 <= warmup < len(scenario.days):
        raise ValueError(f"warmup must be between 1 and {len(scenario.days) - 1} batches")
    run = PolicyRun(which)
    champion: Champion | None = None
    state = policy.PolicyState()
    logs = run.logs
    versions = 0
    last_training = warmup

    def train(
        today: int, reason: str, window_start: str | None, triggering: list[str] | None = None
    ) -> bool | None:
        """Train and gate; whether the candidate was promoted (None: the training failed)."""
        nonlocal champion, versions
        versions += 1
        try:
            record, new = train_and_gate(
                scenario, today, window_start, champion, str(versions), reason, cache, device, triggering
            )
        except WorkFailed as exc:
            run.trainings.append(
                failed_record(scenario, today, reason, str(versions), window_start, str(exc))
            )
            return None
        run.trainings.append(record)
        if new is not None:
            champion = new
            run.champions[new.version] = new
        return new is not None

    for day in scenario.days:
        today = day.day
        message = ""
        if champion is not None and day.rejected is None and len(day.labels):
            log = served_predictions(cfg, day, champion)
            logs[today] = log
            y = batch_targets(cfg, day)
            run.accuracy[today] = float(np.mean(log["prediction"].to_numpy() == y))
            run.metric[today] = safe_metric(cfg.gates.model.primary_metric, y, log["probability"].to_numpy())
            run.served_by[today] = champion.version
        if today >= warmup:
            if champion is None:
                # Nothing to serve or monitor yet: every policy tries again the next batch, on a grown window.
                train(today, "initial" if today == warmup else "initial (retry)", None)
                last_training = today
            elif every is not None and today - last_training >= every:
                train(today, which, None)
                last_training = today
            elif which == "ctcd":
                outcome = monitor(scenario, today, champion, logs, state)
                if outcome is None:
                    run.monitoring.append(
                        MonitoringRecord(today, "failed", "no predictions in the window", [], None)
                    )
                else:
                    decided_on = state
                    decision, state = outcome
                    run.monitoring.append(
                        MonitoringRecord(
                            today,
                            decision.action,
                            decision.reason,
                            decision.fired,
                            decision.window_start,
                            decision.episode_started,
                            decided_on,
                        )
                    )
                    if decision.action == "retrain":
                        # What the monitoring flow reads back from the registry before its next decision.
                        promoted = train(
                            today,
                            f"drift: {', '.join(decision.triggering)}",
                            decision.window_start,
                            decision.triggering,
                        )
                        state = policy.record_outcome(state, promoted)
        if run.trainings and run.trainings[-1].day == today:
            t = run.trainings[-1]
            message = f"{t.reason}: {t.error or ('promoted' if t.served else 'kept')}"
        if on_day:
            on_day(today, message)
    return run
