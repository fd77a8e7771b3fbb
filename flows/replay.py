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
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

from ctcd.cadence import Timeline, parse
from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.ct_inputs import with_batches
from ctcd.errors import ConfigError, WorkFailed
from tasks import ct_steps, dataset, evaluation, model_gate, policy, stream, training
from tasks.evaluation import GREATER_IS_BETTER, THRESHOLD, metric_value
from tasks.model import Model, features_frame, positive_proba, target_vector

AFTER_ONSET = 3  # "metric in the 3 batches after each onset": the onset batch and the 2 after it
PRE_DRIFT = 3  # the pre-drift level is the mean of the served batches just before an onset
DRIFT_KINDS = ("covariate_shift", "prior_shift", "concept_drift")
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}  # river's SEA variants: y = x1 + x2 > threshold
_EVERY = re.compile(r"^every-([1-9]\d*)$")
SYNTHETIC_START = datetime(2000, 1, 1)


# --------------------------------------------------------------------------- histories


@dataclass(frozen=True)
class ReplayBatch:
    """One batch of a history: position (1-based), id, start, features, labels, and why the data gate
    rejects it (if it does)."""

    day: int  # the batch's position, 1-based (a "day" of a daily stream)
    batch_id: str
    start: datetime
    features: pd.DataFrame
    labels: pd.DataFrame
    rejected: str | None = None


@dataclass(frozen=True)
class Onset:
    """The first batch of one known drift of a synthetic history."""

    day: int
    kind: str
    what: str

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.day}"


@dataclass(frozen=True)
class Scenario:
    """A history, the config ctcd runs it with, its timeline, and where its known drifts begin."""

    name: str
    cfg: CtcdConfig
    days: list[ReplayBatch]
    onsets: list[Onset]
    timeline: Timeline


def _timeline(batches: list[ReplayBatch]) -> Timeline:
    return Timeline.of({b.batch_id: b.start for b in batches})


def rejection(features: pd.DataFrame, events: list[ScenarioEvent], cfg: CtcdConfig) -> str | None:
    """Why the data gate rejects a batch: a scheduled corruption, missing feature columns or null features."""
    corrupt = [stream.describe_event(ev) for ev in events if ev.kind == "corrupt_batch"]
    if corrupt:
        return ", ".join(corrupt)
    missing = [c for c in cfg.dataset.features if c not in features.columns]
    if missing:
        return f"missing columns {missing}"
    nulls = features[cfg.dataset.features].isna().sum()
    if nulls.any():
        return f"{int(nulls.sum())} null feature values"
    return None


def agrawal_scenario(cfg: CtcdConfig, days: int, rows_per_day: int) -> Scenario:
    """The config's built-in Agrawal stream (`tasks.stream.generate_day`) for `days` days."""
    if cfg.stream is None:
        raise ConfigError("the built-in stream needs a `stream:` section in the config")
    cfg = cfg.model_copy(
        update={"stream": cfg.stream.model_copy(update={"days": days, "rows_per_day": rows_per_day})}
    )
    out = []
    for d in range(1, days + 1):
        batch = stream.generate_day(cfg, d)
        out.append(
            ReplayBatch(
                d,
                batch.batch_id,
                datetime.combine(batch.date, datetime.min.time()),
                batch.features,
                batch.labels,
                rejection(batch.features, batch.events, cfg),
            )
        )
    onsets = [
        Onset(ev.day, ev.kind, stream.describe_event(ev))
        for ev in cfg.stream.events
        if ev.kind in DRIFT_KINDS and ev.day <= days
    ]
    return Scenario(
        f"agrawal ({cfg.dataset.name})", cfg, out, sorted(onsets, key=lambda o: o.day), _timeline(out)
    )


def _sea_seed(seed: int, day: int) -> int:
    return int.from_bytes(hashlib.sha256(f"sea:{seed}:{day}".encode()).digest()[:8], "big")


def sea_scenario(
    cfg: CtcdConfig,
    days: int,
    rows_per_day: int,
    schedule: dict[int, int],
    noise: float,
    seed: int,
    start: date = date(2026, 1, 1),
) -> Scenario:
    """river's SEA generator day by day; `schedule` maps the first day of each variant to the variant (0-3).

    The config's dataset must declare three numerical features (river's attributes 0, 1, 2, in order).
    """
    from river.datasets import synth

    ds = cfg.dataset
    if len(ds.numerical_features) != 3 or ds.categorical_features:
        raise ConfigError("the SEA history needs a dataset of exactly 3 numerical features")
    if 1 not in schedule:
        raise ValueError("the SEA schedule must say which variant starts on day 1")
    out = []
    variant = schedule[1]
    for d in range(1, days + 1):
        variant = schedule.get(d, variant)
        rows = list(synth.SEA(variant=variant, noise=noise, seed=_sea_seed(seed, d)).take(rows_per_day))
        when = start + timedelta(days=d - 1)
        ids = np.int64(d) * stream.ID_BLOCK + np.arange(rows_per_day, dtype=np.int64)
        features = pd.DataFrame({ds.id_column: ids})
        if ds.timestamp_column:
            features[ds.timestamp_column] = pd.Timestamp(when, tz="UTC") + pd.to_timedelta(
                np.linspace(0, 86_399, rows_per_day), unit="s"
            )
        for i, col in enumerate(ds.numerical_features):
            features[col] = np.array([x[i] for x, _ in rows], dtype="float64")
        labels = pd.DataFrame(
            {ds.id_column: ids, ds.target: np.array([int(y) for _, y in rows], dtype="int64")}
        )
        out.append(
            ReplayBatch(
                d,
                when.isoformat(),
                datetime.combine(when, datetime.min.time()),
                features,
                labels,
                rejection(features, [], cfg),
            )
        )
    onsets = [
        Onset(d, "concept_drift", f"SEA variant {v} (x1 + x2 > {SEA_THRESHOLDS[v]:g})")
        for d, v in sorted(schedule.items())
        if 1 < d <= days
    ]
    return Scenario(f"river SEA ({cfg.dataset.name})", cfg, out, onsets, _timeline(out))


def source_scenario(cfg: CtcdConfig, limit: int | None = None) -> Scenario:
    """The batches of `dataset.source` (files, file split or SQL), in batch-id order, with their labels
    (the batch's own target column, or the source's separate labels). No known onsets."""
    from ctcd import sources

    ds = cfg.dataset
    if ds.source is None:
        raise ConfigError("the config has no `dataset.source` (and no `stream:` section): nothing to replay")
    found = sources.list_batches(cfg)[:limit] if limit else sources.list_batches(cfg)
    if not found:
        raise WorkFailed("dataset.source holds no batch: nothing to replay")
    labels_cfg = getattr(ds.source, "labels", None)
    out = []
    for i, b in enumerate(found, start=1):
        frame = sources.read_source_batch(cfg, b)
        if ds.id_column not in frame.columns:
            raise WorkFailed(f"batch {b.batch_id} of dataset.source has no id column {ds.id_column!r}")
        if ds.target in frame.columns:
            labels = frame[[ds.id_column, ds.target]].dropna()
        elif labels_cfg is not None:
            labels = sources._source_labels(cfg, labels_cfg, b.batch_id, frame[ds.id_column])
        else:
            raise WorkFailed(f"batch {b.batch_id} of dataset.source has no target column {ds.target!r}")
        features = frame.drop(columns=[ds.target], errors="ignore")
        features = features[features[ds.id_column].isin(labels[ds.id_column])].reset_index(drop=True)
        parsed = parse(b.batch_id)
        start = parsed[1] if parsed else SYNTHETIC_START + timedelta(days=i - 1)
        out.append(ReplayBatch(i, b.batch_id, start, features, labels, rejection(features, [], cfg)))
    if any(parse(b.batch_id) is None for b in out):
        # Ids that are not times: one synthetic day per batch, in id order.
        out = [
            ReplayBatch(b.day, b.batch_id, SYNTHETIC_START + timedelta(days=b.day - 1), *_rest(b))
            for b in out
        ]
    return Scenario(f"dataset.source ({ds.name})", cfg, out, [], _timeline(out))


def _rest(b: ReplayBatch) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    return b.features, b.labels, b.rejected


# --------------------------------------------------------------------------- policies


def schedule_every(name: str, timeline: Timeline) -> int | None:
    """How many batches apart a scheduled policy trains (None: `never` or `ctcd`)."""
    if name in ("never", "ctcd"):
        return None
    if name == "daily":
        return 1
    if name == "weekly":
        return 7 if timeline.period == "day" else 1
    m = _EVERY.match(name)
    if m is None:
        raise ValueError(f"unknown policy {name!r}: use never, daily, weekly, ctcd or every-K (K >= 1)")
    return int(m[1])


def check_policy(name: str) -> str:
    """The policy name, or a ValueError saying which names exist."""
    schedule_every(name, Timeline())
    return name


# --------------------------------------------------------------------------- the in-memory registry


@dataclass
class Champion:
    """The model serving now, with what monitoring reads from the registry: reference and holdout metrics."""

    version: str
    model: Model = field(repr=False)
    reference: pd.DataFrame = field(repr=False)
    baseline: dict[str, float]
    trained_on: int


@dataclass(frozen=True)
class TrainingRecord:
    """One training of a policy: its window, the gate's decision, the re-checked holdout numbers, cost."""

    day: int
    batch: str
    reason: str
    version: str
    window: list[str]
    window_start: str | None
    reference_kind: str
    passed: bool
    served: str | None  # what the decision put in service: candidate, baseline (first model) or None
    summary: str
    triggering: list[str]  # the drift signals that triggered it (empty: scheduled or initial)
    candidate_metric: float  # the gate's metric on the holdout, recomputed from the probabilities
    reference_metric: float
    worse: bool  # served a model below its reference by more than gates.model.max_regression
    seconds: float  # the whole training: window, fits, holdout evaluation, gate
    cost: ct_steps.TrainingCost | None
    fit_reused: bool
    decision: model_gate.GateDecision | None = field(default=None, repr=False)
    error: str | None = None


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


class FitCache:
    """Fitted search results by training-data digest: the training flow caches its search the same way,
    so two policies training on the same window get the same model. The cost is charged every time."""

    def __init__(self) -> None:
        self._fits: dict[str, ct_steps.Fitted] = {}

    def fit(
        self, cfg: CtcdConfig, split: dataset.Split, device: training.DeviceChoice
    ) -> tuple[ct_steps.Fitted, bool]:
        """The search and baseline for this split, and whether they were reused."""
        if split.digest in self._fits:
            return self._fits[split.digest], True
        fitted = ct_steps.fit(cfg, split, device)
        self._fits[split.digest] = fitted
        return fitted, False


def training_window(
    scenario: Scenario, today: int, window_start: str | None
) -> tuple[list[ReplayBatch], dataset.Split]:
    """The validated batches whose labels arrived by `today` (`tasks.dataset.select_window`), split."""
    cfg = scenario.cfg
    delay = cfg.dataset.label_delay_batches
    usable = {d.batch_id: d for d in scenario.days[:today] if d.rejected is None}
    labelled = {d.batch_id for d in usable.values() if d.day + delay <= today}
    chosen = dataset.select_window(list(usable), labelled, cfg.training.window_batches, window_start)
    if not chosen:
        raise WorkFailed(f"no validated batch with arrived labels by batch {today}")
    inputs = [
        dataset.BatchInput(
            b, b, "replay", dataset.join_labels(usable[b].features, usable[b].labels, cfg.dataset)
        )
        for b in chosen
    ]
    return [usable[b] for b in chosen], ct_steps.training_split(inputs, cfg)


def train_and_gate(
    scenario: Scenario,
    today: int,
    window_start: str | None,
    champion: Champion | None,
    version: str,
    reason: str,
    cache: FitCache,
    device: training.DeviceChoice,
    triggering: list[str] | None = None,
) -> tuple[TrainingRecord, Champion | None]:
    """The training flow's steps minus MLflow: window, split, fit, evaluate, gate; the new champion when
    the decision puts a model in service (None otherwise)."""
    cfg = scenario.cfg
    gate_cfg = cfg.gates.model
    t0 = time.perf_counter()
    batches, split = training_window(scenario, today, window_start)
    fitted, reused = cache.fit(cfg, split, device)
    t1 = time.perf_counter()
    evaluated = ct_steps.evaluate(fitted, split, cfg)
    champion_proba = (
        None if champion is None else positive_proba(champion.model, features_frame(split.test, cfg.dataset))
    )
    metric = ct_steps.gate_metric(cfg, triggering or [])
    decision = ct_steps.gate(
        cfg, split, evaluated, champion_proba, version, champion.version if champion else None, metric
    )
    served = ct_steps.served_model(decision)
    t2 = time.perf_counter()
    # Re-check the verdict from the raw probabilities rather than trusting the gate's record.
    y = target_vector(split.test, cfg.dataset).to_numpy()
    reference_proba = evaluated.baseline_proba if champion_proba is None else champion_proba
    cand = _safe_metric(metric, y, evaluated.proba)
    ref = _safe_metric(metric, y, reference_proba)
    sign = 1.0 if GREATER_IS_BETTER[metric] else -1.0
    served_value = cand if served == "candidate" else ref
    seconds = (t2 - t1) + (fitted.cost.wall_seconds if reused else t1 - t0)
    record = TrainingRecord(
        day=today,
        batch=scenario.days[today - 1].batch_id,
        reason=reason,
        version=version,
        window=[b.batch_id for b in batches],
        window_start=window_start,
        reference_kind=decision.reference_kind,
        passed=decision.passed,
        served=served,
        summary=decision.summary(),
        triggering=list(triggering or []),
        candidate_metric=cand,
        reference_metric=ref,
        worse=champion is not None
        and served is not None
        and sign * (served_value - ref) < -gate_cfg.max_regression,
        seconds=seconds,
        cost=fitted.cost,
        fit_reused=reused,
        decision=decision,
    )
    if served is None:
        return record, None
    model = fitted.result.best.model if served == "candidate" else fitted.baseline
    report = evaluated.report if served == "candidate" else evaluated.baseline_report
    train_rows = pd.concat([split.train, split.validation], ignore_index=True)
    new = Champion(
        version=version,
        model=model,
        reference=evaluation.reference_sample(model, train_rows, cfg, cfg.training.reference_rows),
        baseline=ct_steps.numeric_metrics(report),
        trained_on=today,
    )
    return record, new


def _safe_metric(name: str, y: np.ndarray, proba: np.ndarray) -> float:
    try:
        return float(metric_value(name, y, proba))
    except ValueError:  # one class only: ROC AUC is undefined
        return math.nan


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
            run.trainings.append(_failed(scenario, today, reason, str(versions), window_start, str(exc)))
            return None
        run.trainings.append(record)
        if new is not None:
            champion = new
            run.champions[new.version] = new
        return record.served == "candidate" if record.reference_kind == "champion" else new is not None

    for day in scenario.days:
        today = day.day
        message = ""
        if champion is not None and day.rejected is None and len(day.labels):
            log = served_predictions(cfg, day, champion)
            logs[today] = log
            y = batch_targets(cfg, day)
            run.accuracy[today] = float(np.mean(log["prediction"].to_numpy() == y))
            run.metric[today] = _safe_metric(cfg.gates.model.primary_metric, y, log["probability"].to_numpy())
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


def _failed(
    scenario: Scenario, today: int, reason: str, version: str, window_start: str | None, error: str
) -> TrainingRecord:
    return TrainingRecord(
        day=today,
        batch=scenario.days[today - 1].batch_id,
        reason=reason,
        version=version,
        window=[],
        window_start=window_start,
        reference_kind="-",
        passed=False,
        served=None,
        summary="",
        triggering=[],
        candidate_metric=math.nan,
        reference_metric=math.nan,
        worse=False,
        seconds=0.0,
        cost=None,
        fit_reused=False,
        error=error,
    )


# --------------------------------------------------------------------------- scoring the runs


@dataclass(frozen=True)
class Episode:
    """A drift episode the `ctcd` policy detected: the batch it retrained on, and its estimated onset."""

    detected: int
    onset: int
    recovery: int | None  # batches from the estimated onset back within tolerance of the pre-onset level


@dataclass(frozen=True)
class PolicySummary:
    """The backtest's numbers for one policy."""

    policy: str
    mean_accuracy: float
    mean_metric: float
    metric_name: str
    after_onset: dict[str, float | None]
    recovery: dict[str, int | None]
    pre_drift: dict[str, float | None]
    episodes: list[Episode]
    trainings: int
    training_seconds: float
    cpu_seconds: float
    gpu_seconds: float
    rows: int
    money: float
    promotions: int
    rejected: int
    failed: int
    worse_promotions: int


def scores(run: PolicyRun, metric: str) -> dict[int, float]:
    """The per-batch scores a backtest judges on: accuracy, or the config's primary metric."""
    values = run.accuracy if metric == "accuracy" else run.metric
    return {d: v for d, v in values.items() if not math.isnan(v)}


def pre_drift_level(values: dict[int, float], onset: int) -> float | None:
    """Mean score of the (up to) PRE_DRIFT served batches before the onset."""
    before = [values[d] for d in sorted(values) if d < onset][-PRE_DRIFT:]
    return float(np.mean(before)) if before else None


def reference_levels(
    runs: Iterable[PolicyRun], scenario: Scenario, metric: str = "accuracy"
) -> dict[str, float | None]:
    """Each known onset's pre-drift level: the best `pre_drift_level` of any policy."""
    runs = list(runs)
    levels: dict[str, float | None] = {}
    for onset in scenario.onsets:
        found = [v for v in (pre_drift_level(scores(r, metric), onset.day) for r in runs) if v is not None]
        levels[onset.label] = max(found) if found else None
    return levels


def recovery_days(
    values: dict[int, float], onset: int, until: int, level: float, tolerance: float
) -> int | None:
    """Batches from the onset to the first served batch (before `until`) back within `tolerance` of the
    pre-drift `level` (0: it never left); None when it did not recover in time."""
    for d in sorted(values):
        if onset <= d < until and values[d] >= level - tolerance:
            return d - onset
    return None


def detected_episodes(run: PolicyRun, scenario: Scenario, metric: str, tolerance: float) -> list[Episode]:
    """The drift episodes `ctcd` acted on, with recovery from their estimated onset (the window start it
    retrained from, else the first batch the episode was open) against its own pre-onset level."""
    values = scores(run, metric)
    position = {d.batch_id: d.day for d in scenario.days}
    found: list[Episode] = []
    seen: set[str] = set()
    for m in run.monitoring:
        if m.action != "retrain":
            continue
        onset = position.get(m.window_start or "", position.get(m.episode_started or "", m.day))
        key = m.episode_started or str(onset)
        if key in seen or str(onset) in seen:  # a retry of an episode, or another episode from the same onset
            continue
        seen.update({key, str(onset)})
        level = pre_drift_level(values, onset)
        rec = (
            None if level is None else recovery_days(values, onset, len(scenario.days) + 1, level, tolerance)
        )
        found.append(Episode(m.day, onset, rec))
    return found


def summarize(
    run: PolicyRun,
    scenario: Scenario,
    tolerance: float,
    levels: dict[str, float | None],
    metric: str = "accuracy",
) -> PolicySummary:
    """Mean score, score after each known onset, recovery, detected episodes, trainings and cost."""
    values = scores(run, metric)
    after: dict[str, float | None] = {}
    recovery: dict[str, int | None] = {}
    pre: dict[str, float | None] = {}
    for i, onset in enumerate(scenario.onsets):
        window = [values[d] for d in range(onset.day, onset.day + AFTER_ONSET) if d in values]
        after[onset.label] = float(np.mean(window)) if window else None
        until = scenario.onsets[i + 1].day if i + 1 < len(scenario.onsets) else len(scenario.days) + 1
        level = levels.get(onset.label)
        pre[onset.label] = level
        recovery[onset.label] = (
            None if level is None else recovery_days(values, onset.day, until, level, tolerance)
        )
    done = [t for t in run.trainings if t.error is None]
    costs = [t.cost for t in done if t.cost is not None]
    metric_values = [v for v in run.metric.values() if not math.isnan(v)]
    return PolicySummary(
        policy=run.policy,
        mean_accuracy=float(np.mean(list(run.accuracy.values()))) if run.accuracy else math.nan,
        mean_metric=float(np.mean(metric_values)) if metric_values else math.nan,
        metric_name=scenario.cfg.gates.model.primary_metric,
        after_onset=after,
        recovery=recovery,
        pre_drift=pre,
        episodes=detected_episodes(run, scenario, metric, tolerance) if run.policy == "ctcd" else [],
        trainings=len(run.trainings),
        training_seconds=sum(t.seconds for t in run.trainings),
        cpu_seconds=sum(c.cpu_seconds for c in costs),
        gpu_seconds=sum(c.gpu_seconds for c in costs),
        rows=sum(c.rows for c in costs),
        money=sum(c.money for c in costs),
        promotions=sum(t.served is not None for t in done),
        rejected=sum(t.served is None for t in done),
        failed=len(run.trainings) - len(done),
        worse_promotions=sum(t.worse for t in done),
    )


def judged(s: PolicySummary, metric: str) -> float:
    """The mean score a backtest judges a policy on."""
    return s.mean_accuracy if metric == "accuracy" else s.mean_metric


def tradeoff(
    summaries: dict[str, PolicySummary], metric: str, alphas: np.ndarray | None = None
) -> dict[str, float]:
    """Area under score - alpha * cost over alpha in [0, 0.1] (normalised by the range), per policy; cost
    is the policy's training money as a share of the most expensive policy's (Regol et al., ICML 2025)."""
    alphas = np.linspace(0.0, 0.1, 21) if alphas is None else alphas
    top = max((s.money for s in summaries.values()), default=0.0) or 1.0
    return {
        p: float(np.mean([judged(s, metric) - a * s.money / top for a in alphas]))
        for p, s in summaries.items()
    }


@dataclass(frozen=True)
class TargetCheck:
    """One acceptance target, judged on the ctcd policy."""

    name: str
    passed: bool
    detail: str


def frontier(summaries: dict[str, PolicySummary], metric: str) -> list[tuple[str, int, float]]:
    """(policy, trainings, mean score) of `never` and every fixed schedule, fewest trainings first."""
    fixed = [p for p in summaries if p == "never" or _EVERY.match(p)]
    # daily and weekly only where no every-k of the same trainings and score stands for them
    seen = {(summaries[p].trainings, judged(summaries[p], metric)) for p in fixed}
    fixed += [
        p
        for p in ("daily", "weekly")
        if p in summaries and (summaries[p].trainings, judged(summaries[p], metric)) not in seen
    ]
    return sorted(
        ((p, summaries[p].trainings, judged(summaries[p], metric)) for p in fixed), key=lambda x: (x[1], x[0])
    )


def check_targets(
    summaries: dict[str, PolicySummary], scenario: Scenario, metric: str, max_training_share: float = 0.15
) -> list[TargetCheck]:
    """The acceptance targets for `ctcd`: vs every-batch retraining and concept-drift recovery (histories
    with known onsets), above the frontier of fixed schedules, and no worse model promoted."""
    ctcd = summaries["ctcd"]
    mine = judged(ctcd, metric)
    checks: list[TargetCheck] = []
    every1 = summaries.get("every-1") or summaries.get("daily")
    if scenario.onsets and every1 is not None:
        share = ctcd.trainings / every1.trainings if every1.trainings else math.inf
        checks.append(
            TargetCheck(
                "metric and trainings vs every batch",
                mine >= judged(every1, metric) and share <= max_training_share,
                f"mean {metric} {mine:.4f} vs {judged(every1, metric):.4f} (must be >=), "
                f"{ctcd.trainings} vs {every1.trainings} trainings = {share:.0%} "
                f"(must be <= {max_training_share:.0%})",
            )
        )
        allowed = scenario.cfg.dataset.label_delay_batches + 1
        concept = [o for o in scenario.onsets if o.kind == "concept_drift"]
        late = {o.label: ctcd.recovery[o.label] for o in concept if ctcd.pre_drift[o.label] is not None}
        if late:
            checks.append(
                TargetCheck(
                    "recovery after concept drift",
                    all(v is not None and v <= allowed for v in late.values()),
                    ", ".join(
                        f"{k}: {'not recovered' if v is None else f'{v} batches'}" for k, v in late.items()
                    )
                    + f" (must be <= label delay + 1 = {allowed})",
                )
            )
    cheaper = [(p, n, v) for p, n, v in frontier(summaries, metric) if n <= ctcd.trainings]
    best = max(cheaper, key=lambda x: x[2]) if cheaper else None
    checks.append(
        TargetCheck(
            "above the frontier",
            best is None or mine > best[2],
            f"ctcd {mine:.4f} with {ctcd.trainings} trainings; best fixed schedule with as many or fewer: "
            + ("none" if best is None else f"{best[0]} {best[2]:.4f} ({best[1]} trainings)"),
        )
    )
    checks.append(
        TargetCheck(
            "no worse model promoted",
            ctcd.worse_promotions == 0,
            f"ctcd promoted {ctcd.worse_promotions} model(s) worse than the one they replaced by more than "
            f"{scenario.cfg.gates.model.max_regression} on the holdout metric the gate judged",
        )
    )
    return checks
