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
   With a rollout suffix (`ctcd+shadow`, `every-4+canary`) it enters a rollout instead and the online gate
   runs after step 4's decision on every later batch (`tasks/replay_rollout.py`).

The first champion is trained at the end of batch `warmup` by every policy (batches before are history:
not served, not scored); when nothing clears the floors, every policy tries again the next batch.
The histories are `tasks/replay_history.py`, the in-memory registry and one training
`tasks/replay_registry.py`; `ctcd/app/backtest.py` runs the policies and judges them
(`tasks/replay_scoring.py`).
"""

from __future__ import annotations

import dataclasses
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
from tasks import ct_steps, policy, replay_rollout, training
from tasks.evaluation import THRESHOLD
from tasks.model import features_frame, positive_proba, target_vector
from tasks.replay_history import ReplayBatch, Scenario, arrived_labels
from tasks.replay_registry import (
    Champion,
    FitCache,
    TrainingRecord,
    failed_record,
    safe_metric,
    train_and_gate,
)
from tasks.replay_rollout import OnlineRecord, Rollout, split_policy

EVERY_K = re.compile(r"^every-([1-9]\d*)$")  # the fixed schedules: every-1, every-2, ...


# --------------------------------------------------------------------------- policies


def schedule_every(name: str, timeline: Timeline) -> int | None:
    """How many batches apart a scheduled policy trains (None: `never` or `ctcd`); a rollout suffix
    (`+shadow`, `+canary`: `replay_rollout.split_policy`) does not change the schedule."""
    name = split_policy(name)[0]
    if name in ("never", "ctcd"):
        return None
    if name == "daily":
        return 1
    if name == "weekly":
        return 7 if timeline.period == "day" else 1
    m = EVERY_K.match(name)
    if m is None:
        raise ValueError(
            f"unknown policy {name!r}: use never, daily, weekly, ctcd or every-K (K >= 1), optionally with "
            "+shadow or +canary"
        )
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
    online: list[OnlineRecord] = field(default_factory=list)  # the online gate's verdicts (+shadow, +canary)
    rollout_served: dict[int, str] = field(default_factory=dict)  # batch -> the candidate scoring beside it


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
    labels = arrived_labels(scenario, today, (timeline.position(window.lookback[0]) or 0) - delay)
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

    `which` ending with `+shadow` or `+canary`: a candidate that passes the model gate goes to a rollout
    and the online gate promotes it (`tasks/replay_rollout.py`). `on_day(day, message)` is called after
    every batch (progress)."""
    cfg = scenario.cfg
    cache = cache or FitCache()
    device = device or training.choose_device(cfg.training.device)
    base, mode = split_policy(which)
    every = schedule_every(which, scenario.timeline)
    if not 1 <= warmup < len(scenario.days):
        raise ValueError(f"warmup must be between 1 and {len(scenario.days) - 1} batches")
    run = PolicyRun(which)
    champion: Champion | None = None
    rollout: Rollout | None = None
    state = policy.PolicyState()
    logs = run.logs
    versions = 0
    last_training = warmup

    def train(
        today: int, reason: str, window_start: str | None, triggering: list[str] | None = None
    ) -> bool | None:
        """Train and gate; whether the candidate was promoted (None: the training failed, or its rollout
        has not been decided)."""
        nonlocal champion, rollout, versions
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
        if new is not None and champion is not None and mode != "direct":
            # `serving.rollout`: not promoted; it replaces any candidate in rollout (`deploy.start_rollout`).
            trigger = scenario.days[today - 1].batch_id if triggering else None
            metric = record.decision.primary_metric if record.decision is not None else None
            rollout = replay_rollout.start(
                cfg, new, champion, mode, scenario.days[today - 1], trigger, metric
            )
            run.trainings.append(dataclasses.replace(record, rollout=mode))
            return None
        run.trainings.append(record)
        if new is not None:
            champion = new
            run.champions[new.version] = new
        return new is not None

    def online(today: int) -> None:
        """The online gate on the rollout in flight, and its step carried out."""
        nonlocal champion, rollout, state
        assert rollout is not None
        verdict, step = replay_rollout.judge(scenario, today, rollout, logs)
        run.online.append(replay_rollout.record(scenario, today, rollout, verdict, step))
        if step.action in ("step_up", "hold"):
            rollout = replay_rollout.stepped(rollout, step)
            return
        if step.action == "promote":
            champion = rollout.candidate
            run.champions[champion.version] = champion
        state = replay_rollout.policy_state_after(state, rollout, step)
        rollout = None

    def monitor_and_train(today: int) -> None:
        """The `ctcd` policy's batch: the monitoring flow (its decision, then the online gate on a rollout
        in flight), and the training its drift event triggers."""
        nonlocal state
        assert champion is not None
        outcome = monitor(scenario, today, champion, logs, state)
        if outcome is None:
            run.monitoring.append(MonitoringRecord(today, "failed", "no predictions in the window", [], None))
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
        if rollout is not None:
            online(today)
        if outcome is not None and outcome[0].action == "retrain":
            decision = outcome[0]
            # What the monitoring flow reads back from the registry before its next decision.
            promoted = train(
                today, f"drift: {', '.join(decision.triggering)}", decision.window_start, decision.triggering
            )
            state = policy.record_outcome(state, promoted)

    for day in scenario.days:
        today = day.day
        message = ""
        if champion is not None and day.rejected is None and len(day.labels):
            log = replay_rollout.with_rollout(cfg, day, served_predictions(cfg, day, champion), rollout)
            logs[today] = log
            y = batch_targets(cfg, day)
            run.accuracy[today] = float(np.mean(log["prediction"].to_numpy() == y))
            run.metric[today] = safe_metric(cfg.gates.model.primary_metric, y, log["probability"].to_numpy())
            run.served_by[today] = champion.version
            if rollout is not None:
                run.rollout_served[today] = rollout.state.candidate_version
        if today >= warmup:
            if champion is None:
                # Nothing to serve or monitor yet: every policy tries again the next batch, on a grown window.
                train(today, "initial" if today == warmup else "initial (retry)", None)
                last_training = today
            elif every is not None:
                if rollout is not None:
                    online(today)
                if today - last_training >= every:
                    train(today, which, None)
                    last_training = today
            elif base == "ctcd":
                monitor_and_train(today)
            elif rollout is not None:
                online(today)
        if run.trainings and run.trainings[-1].day == today:
            t = run.trainings[-1]
            done = "promoted" if t.served else "kept"
            message = f"{t.reason}: {t.error or (f'to {t.rollout}' if t.rollout else done)}"
        if on_day:
            on_day(today, message)
    return run
