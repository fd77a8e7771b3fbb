"""Replay a drifting stream day by day under a retraining policy, using ctcd's own decision code.

Everything a policy decides with is ctcd's code, called in-process without MLflow, Prefect or servers:
the stream (`tasks.stream.generate_day`, or river's SEA for a second stream), the training window and
time split (`tasks.dataset`), the search and baseline (`tasks.training`), the holdout evaluation
(`tasks.evaluation`), the model gate (`tasks.model_gate.decide`), the monitoring windows
(`flows.monitoring.windows`, `with_batches`, `current_window`, `new_labelled_rows`), the drift signals
(`tasks.drift.compute_signals`) and the retraining policy (`tasks.policy.decide`). The harness only does
what the MLflow registry, the prediction log and the label files do in the real loop: it keeps the
champion in memory, logs its predictions as a DataFrame in the prediction-log format and releases labels
`dataset.label_delay_batches` after their batch.

One replayed day `d`, in order:
1. the labels of day `d - label_delay_batches` arrive;
2. batch `d` lands; the data gate rejects it when the scenario corrupted it or its features hold nulls
   (a rejected batch is neither served, scored nor trained on);
3. the champion serves the batch: its predictions are logged and the day's accuracy is scored against the
   day's labels (the benchmark knows them now; the policy only sees them once they arrive);
4. the policy decides whether to train. `ctcd` runs the monitoring step on exactly what the monitoring
   flow would load (today's predictions, the lookback's predictions joined with arrived labels, the
   champion's reference sample and holdout metrics) and retrains when `tasks.policy.decide` says so, from
   its `window_start`; whether that candidate was promoted goes back into the policy's state
   (`tasks.policy.record_outcome`), as the monitoring flow reads it from the registry, so a rejected
   retraining is retried. `never` trains once, `weekly` every 7 days and `daily` every day, on the
   sliding `training.window_batches` window;
5. a training uses validated batches whose labels have arrived, and its candidate replaces the champion
   only if the model gate passes (with no champion, as in the flow, the better of the candidate and the
   baseline that clears the floors serves first);
   the new champion serves from day `d + 1`.

The first champion is trained at the end of day `warmup_days` by every policy (days before that are
history: not served, not scored).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from typing import Literal

import numpy as np
import pandas as pd

from ctcd.cadence import Timeline
from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.errors import WorkFailed
from flows.monitoring import current_window, new_labelled_rows, windows, with_batches
from tasks import dataset, drift, evaluation, model_gate, policy, stream, training
from tasks.evaluation import GREATER_IS_BETTER, THRESHOLD, metric_value
from tasks.model import Model, features_frame, positive_proba, target_vector

Policy = Literal["never", "weekly", "daily", "ctcd"]
POLICIES: tuple[Policy, ...] = ("never", "weekly", "daily", "ctcd")
WEEK = 7
AFTER_ONSET_DAYS = 3  # "accuracy in the 3 days after each onset": the onset day and the 2 days after it
PRE_DRIFT_DAYS = 3  # the pre-drift level is the mean accuracy of the served days just before an onset
DRIFT_KINDS = ("covariate_shift", "prior_shift", "concept_drift")
SEA_THRESHOLDS = {0: 8.0, 1: 9.0, 2: 7.0, 3: 9.5}  # river's SEA variants: y = x1 + x2 > threshold


# --------------------------------------------------------------------------- streams


@dataclass(frozen=True)
class StreamDay:
    """One day of a stream: the features batch, its labels, and why the data gate rejects it (if it does)."""

    day: int
    date: date
    batch_id: str
    features: pd.DataFrame
    labels: pd.DataFrame
    rejected: str | None = None


@dataclass(frozen=True)
class Onset:
    """The first day of one drift of the scenario."""

    day: int
    kind: str
    what: str

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.day}"


@dataclass(frozen=True)
class Scenario:
    """A generated stream, the config ctcd runs it with, and where its drifts begin."""

    name: str
    cfg: CtcdConfig
    days: list[StreamDay]
    onsets: list[Onset]


def bench_config(
    cfg: CtcdConfig,
    search_budget: int | None = None,
    n_estimators: int | None = None,
    bootstrap_samples: int | None = None,
    n_jobs: int | None = None,
) -> CtcdConfig:
    """The config with the benchmark's cost overrides (None keeps the config's value).

    `n_estimators` and `n_jobs` only apply to XGBoost. On a shared, oversubscribed machine XGBoost's
    default of one thread per core spins and slows a fit down by 10-30x.
    """
    search = cfg.model.search
    if search_budget is not None:
        search = search.model_copy(update={"budget": search_budget})
    params = dict(cfg.model.params)
    if cfg.model.flavor == "xgboost":  # the scikit-learn models take neither
        if n_estimators is not None:
            params["n_estimators"] = n_estimators
        if n_jobs is not None:
            params["n_jobs"] = n_jobs
    gate = cfg.gates.model
    if bootstrap_samples is not None:
        gate = gate.model_copy(update={"bootstrap_samples": bootstrap_samples})
    return cfg.model_copy(
        update={
            "model": cfg.model.model_copy(update={"search": search, "params": params}),
            "gates": cfg.gates.model_copy(update={"model": gate}),
        }
    )


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
    assert cfg.stream is not None, "the Agrawal scenario needs a config with a stream section"
    cfg = cfg.model_copy(
        update={"stream": cfg.stream.model_copy(update={"days": days, "rows_per_day": rows_per_day})}
    )
    out = []
    for d in range(1, days + 1):
        batch = stream.generate_day(cfg, d)
        out.append(
            StreamDay(
                d,
                batch.date,
                batch.batch_id,
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
    return Scenario(f"agrawal ({cfg.dataset.name})", cfg, out, sorted(onsets, key=lambda o: o.day))


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
        raise ValueError("the SEA scenario needs a dataset of exactly 3 numerical features")
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
        out.append(StreamDay(d, when, when.isoformat(), features, labels, rejection(features, [], cfg)))
    onsets = [
        Onset(d, "concept_drift", f"SEA variant {v} (x1 + x2 > {SEA_THRESHOLDS[v]:g})")
        for d, v in sorted(schedule.items())
        if 1 < d <= days
    ]
    return Scenario(f"river SEA ({cfg.dataset.name})", cfg, out, onsets)


# --------------------------------------------------------------------------- training + gate


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
    """One training run of a policy: its window, the gate's decision, the re-checked holdout numbers, cost."""

    day: int
    reason: str
    version: str
    window: list[str]
    window_start: str | None
    reference_kind: str
    passed: bool
    summary: str
    candidate_metric: float  # primary metric on the holdout, recomputed by the harness
    reference_metric: float
    worse: bool  # candidate below its reference by more than gates.model.max_regression on the holdout
    seconds: float  # the whole run: window, search + baseline fits, holdout evaluation, gate
    fit_seconds: float  # search + baseline (charged again when a policy reuses another's identical fit)
    gate_seconds: float
    fit_reused: bool
    decision: model_gate.GateDecision | None = field(default=None, repr=False)
    error: str | None = None


@dataclass(frozen=True)
class NextDayCheck:
    """A promotion judged on the next served day: new champion vs the one it replaced."""

    promoted_on: int
    scored_on: int
    metric: str
    new: float
    old: float
    worse: bool


@dataclass(frozen=True)
class MonitoringRecord:
    """One monitoring run of the `ctcd` policy."""

    day: int
    action: str
    reason: str
    fired: list[str]
    window_start: str | None


@dataclass
class PolicyRun:
    """Everything one policy did and scored over a scenario."""

    policy: Policy
    accuracy: dict[int, float] = field(default_factory=dict)
    served_by: dict[int, str] = field(default_factory=dict)
    trainings: list[TrainingRecord] = field(default_factory=list)
    monitoring: list[MonitoringRecord] = field(default_factory=list)
    next_day: list[NextDayCheck] = field(default_factory=list)


@dataclass(frozen=True)
class _Fit:
    result: training.SearchResult
    baseline: Model
    seconds: float


class FitCache:
    """Fitted search results by training-data digest: the training flow caches its search the same way,
    so two policies training on the same window get the same model. The fit time is charged every time."""

    def __init__(self) -> None:
        self._fits: dict[str, _Fit] = {}

    def fit(self, cfg: CtcdConfig, split: dataset.Split, device: training.DeviceChoice) -> tuple[_Fit, bool]:
        """The search and baseline for this split, and whether they were reused."""
        if split.digest in self._fits:
            return self._fits[split.digest], True
        start = time.perf_counter()
        result = training.search(cfg, split, device)
        baseline = training.fit_baseline(cfg, split)
        fit = _Fit(result, baseline, time.perf_counter() - start)
        self._fits[split.digest] = fit
        return fit, False


def training_window(
    scenario: Scenario, today: int, window_start: str | None
) -> tuple[list[StreamDay], dataset.Split]:
    """The validated batches whose labels arrived by `today`, chosen by `tasks.dataset.select_window`."""
    cfg = scenario.cfg
    delay = cfg.dataset.label_delay_batches
    usable = {d.batch_id: d for d in scenario.days[:today] if d.rejected is None}
    labelled = {d.batch_id for d in usable.values() if d.day + delay <= today}
    chosen = dataset.select_window(list(usable), labelled, cfg.training.window_batches, window_start)
    inputs = [
        dataset.BatchInput(
            b, b, "replay", dataset.join_labels(usable[b].features, usable[b].labels, cfg.dataset)
        )
        for b in chosen
    ]
    frame = dataset.training_frame(inputs, cfg.dataset)
    return [usable[b] for b in chosen], dataset.time_split(frame, cfg.training)


def train_and_gate(
    scenario: Scenario,
    today: int,
    window_start: str | None,
    champion: Champion | None,
    version: str,
    reason: str,
    cache: FitCache,
    device: training.DeviceChoice,
) -> tuple[TrainingRecord, Champion | None]:
    """What `flows/training.py` does minus MLflow: window, split, search, holdout, gate, promote if blessed.

    Returns the record and the new champion (None when the candidate was not promoted).
    """
    cfg = scenario.cfg
    gate = cfg.gates.model
    t0 = time.perf_counter()
    batches, split = training_window(scenario, today, window_start)
    t1 = time.perf_counter()
    fit, reused = cache.fit(cfg, split, device)
    t2 = time.perf_counter()
    report, proba = evaluation.evaluate(fit.result.best.model, split.test, cfg)
    y = target_vector(split.test, cfg.dataset).to_numpy()
    X_test = features_frame(split.test, cfg.dataset)
    if champion is None:
        kind: model_gate.ReferenceKind = "baseline"
        reference_proba = positive_proba(fit.baseline, X_test)
    else:
        kind = "champion"
        reference_proba = positive_proba(champion.model, X_test)
    t3 = time.perf_counter()
    decision = model_gate.decide_on_holdout(
        cfg, split.test, proba, reference_proba, report, kind, version, champion.version if champion else None
    )
    if champion is None:  # as the training flow: the better of candidate and baseline over the floors
        decision = model_gate.choose_first(decision)
    t4 = time.perf_counter()
    # Re-check the gate's verdict from the raw probabilities rather than trusting its record.
    cand = metric_value(gate.primary_metric, y, proba)
    ref = metric_value(gate.primary_metric, y, reference_proba)
    sign = 1.0 if GREATER_IS_BETTER[gate.primary_metric] else -1.0
    record = TrainingRecord(
        day=today,
        reason=reason,
        version=version,
        window=[b.batch_id for b in batches],
        window_start=window_start,
        reference_kind=kind,
        passed=decision.passed,
        summary=decision.summary(),
        candidate_metric=cand,
        reference_metric=ref,
        worse=sign * (cand - ref) < -gate.max_regression,
        seconds=(t1 - t0) + fit.seconds + (t4 - t2),
        fit_seconds=fit.seconds,
        gate_seconds=t4 - t3,
        fit_reused=reused,
        decision=decision,
    )
    served = "candidate" if decision.passed else decision.chosen
    if served is None:
        return record, None
    model = fit.result.best.model if served == "candidate" else fit.baseline
    if served == "baseline":
        report, _ = evaluation.evaluate(model, split.test, cfg)
    train_rows = pd.concat([split.train, split.validation], ignore_index=True)
    new = Champion(
        version=version,
        model=model,
        reference=evaluation.reference_sample(model, train_rows, cfg, cfg.training.reference_rows),
        baseline={k: float(v) for k, v in report.metrics.items() if isinstance(v, int | float)},
        trained_on=today,
    )
    return record, new


# --------------------------------------------------------------------------- serving and monitoring


def served_predictions(cfg: CtcdConfig, day: StreamDay, champion: Champion) -> pd.DataFrame:
    """The day's batch as the prediction log holds it after the champion served it."""
    ds = cfg.dataset
    proba = positive_proba(champion.model, features_frame(day.features, ds))
    if ds.timestamp_column and ds.timestamp_column in day.features:
        served_at = pd.to_datetime(day.features[ds.timestamp_column], utc=True)
    else:
        served_at = pd.Series(
            pd.Timestamp(datetime.combine(day.date, clock(12), UTC)), index=day.features.index
        )
    log = day.features[[ds.id_column, *ds.features]].copy()
    log.insert(0, "served_at", served_at.to_numpy())
    log.insert(0, "request_id", [f"{day.batch_id}-{i}" for i in range(len(log))])
    log["probability"] = proba
    log["prediction"] = (proba >= THRESHOLD).astype("int64")
    log["model_version"] = champion.version
    return log


def daily_accuracy(cfg: CtcdConfig, day: StreamDay, log: pd.DataFrame) -> float:
    """Accuracy of the served predictions against the day's labels (all of them: the benchmark's view)."""
    y = target_vector(day.labels, cfg.dataset).to_numpy()
    return float(np.mean(log["prediction"].to_numpy() == y))


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
    timeline = Timeline()  # the stream's batch ids are dates: one batch a day
    batch = scenario.days[today - 1].batch_id
    window = windows(cfg, timeline, batch)
    served = [log for d, log in logs.items() if scenario.days[d - 1].batch_id in window.lookback]
    if not served:
        return None
    predictions = with_batches(pd.concat(served, ignore_index=True), timeline)
    current = current_window(predictions, window.current)
    if current.empty:
        return None
    label_from = timeline.shift(window.lookback[0], -delay) or window.lookback[0]
    due = scenario.days[: today - delay] if today > delay else []
    arrived = [d.labels for d in due if d.batch_id >= label_from]
    labels = (
        pd.concat(arrived, ignore_index=True)
        if arrived
        else pd.DataFrame(
            {cfg.dataset.id_column: pd.Series(dtype="int64"), cfg.dataset.target: pd.Series(dtype="int64")}
        )
    )
    labelled = drift.join_labels(predictions, labels, cfg.dataset)
    signals = drift.compute_signals(
        champion.reference,
        current,
        labelled,
        champion.baseline,
        cfg.dataset,
        cfg.drift,
        (window.current[0], window.batch),
        model_version=champion.version,
    )
    return policy.decide(
        signals,
        state,
        cfg.drift,
        batch,
        new_labelled_rows(labelled, state, timeline),
        cfg.training.window_batches,
        timeline,
    )


def _primary(cfg: CtcdConfig, day: StreamDay, model: Model) -> float:
    y = target_vector(day.labels, cfg.dataset).to_numpy()
    return metric_value(
        cfg.gates.model.primary_metric, y, positive_proba(model, features_frame(day.features, cfg.dataset))
    )


# --------------------------------------------------------------------------- the replay


def replay(
    scenario: Scenario,
    which: Policy,
    warmup_days: int,
    cache: FitCache | None = None,
    device: training.DeviceChoice | None = None,
    on_day: Callable[[str], None] | None = None,
) -> PolicyRun:
    """Replay the scenario under one policy and record what it served, trained, promoted and decided."""
    cfg = scenario.cfg
    gate = cfg.gates.model
    cache = cache or FitCache()
    device = device or training.choose_device(cfg.training.device)
    if not 1 <= warmup_days < len(scenario.days):
        raise ValueError(f"warmup_days must be between 1 and {len(scenario.days) - 1}")
    run = PolicyRun(which)
    champion: Champion | None = None
    state = policy.PolicyState()
    logs: dict[int, pd.DataFrame] = {}
    pending: tuple[int, Model, Model] | None = None  # a promotion waiting for its next served day
    versions = 0

    def train(today: int, reason: str, window_start: str | None) -> bool | None:
        """Train and gate; whether the candidate was promoted (None: the training failed)."""
        nonlocal champion, versions, pending
        versions += 1
        try:
            record, new = train_and_gate(
                scenario, today, window_start, champion, str(versions), reason, cache, device
            )
        except WorkFailed as exc:
            failed = TrainingRecord(
                day=today,
                reason=reason,
                version=str(versions),
                window=[],
                window_start=window_start,
                reference_kind="-",
                passed=False,
                summary="",
                candidate_metric=math.nan,
                reference_metric=math.nan,
                worse=False,
                seconds=0.0,
                fit_seconds=0.0,
                gate_seconds=0.0,
                fit_reused=False,
                error=str(exc),
            )
            run.trainings.append(failed)
            return None
        run.trainings.append(record)
        if new is not None:
            if champion is not None:
                pending = (today, champion.model, new.model)
            champion = new
        if on_day:
            on_day(
                f"{which} day {today}: {reason}: {'promoted' if record.passed else 'kept'} - {record.summary}"
            )
        return record.passed

    for day in scenario.days:
        today = day.day
        if champion is not None and day.rejected is None:
            log = served_predictions(cfg, day, champion)
            logs[today] = log
            run.accuracy[today] = daily_accuracy(cfg, day, log)
            run.served_by[today] = champion.version
            if pending is not None:
                promoted_on, old, new_model = pending
                new_v, old_v = _primary(cfg, day, new_model), _primary(cfg, day, old)
                sign = 1.0 if GREATER_IS_BETTER[gate.primary_metric] else -1.0
                run.next_day.append(
                    NextDayCheck(
                        promoted_on,
                        today,
                        gate.primary_metric,
                        new_v,
                        old_v,
                        sign * (new_v - old_v) < -gate.max_regression,
                    )
                )
                pending = None
        if today < warmup_days:
            continue
        if champion is None:
            # The first candidate failed the gate against the baseline: with nothing to serve or monitor,
            # every policy tries again the next day, on the grown window.
            train(today, "initial" if today == warmup_days else "initial (retry)", None)
            continue
        if which == "daily" or (which == "weekly" and (today - warmup_days) % WEEK == 0):
            train(today, which, None)
        elif which == "ctcd":
            outcome = monitor(scenario, today, champion, logs, state)
            if outcome is None:
                run.monitoring.append(
                    MonitoringRecord(today, "failed", "no predictions in the window", [], None)
                )
                continue
            decision, state = outcome
            run.monitoring.append(
                MonitoringRecord(
                    today, decision.action, decision.reason, decision.fired, decision.window_start
                )
            )
            if decision.action == "retrain":
                # What the monitoring flow reads back from the registry before its next decision.
                promoted = train(today, f"drift: {', '.join(decision.triggering)}", decision.window_start)
                state = policy.record_outcome(state, promoted)
    return run


# --------------------------------------------------------------------------- scoring the runs


@dataclass(frozen=True)
class PolicySummary:
    """The benchmark's numbers for one policy."""

    policy: Policy
    mean_accuracy: float
    after_onset: dict[str, float | None]
    recovery_days: dict[str, int | None]
    pre_drift: dict[str, float | None]  # the level recovery is judged against; None: not judged
    trainings: int
    training_seconds: float
    fit_seconds: float
    gate_seconds: float
    promotions: int
    rejected: int
    failed: int
    worse_promotions: int
    worse_next_day: int


def pre_drift_level(run: PolicyRun, onset: int) -> float | None:
    """Mean accuracy of the (up to) PRE_DRIFT_DAYS served days before the onset."""
    before = [run.accuracy[d] for d in sorted(run.accuracy) if d < onset][-PRE_DRIFT_DAYS:]
    return float(np.mean(before)) if before else None


def reference_levels(runs: Iterable[PolicyRun], scenario: Scenario) -> dict[str, float | None]:
    """Each onset's pre-drift level: the best `pre_drift_level` of any policy (what was achievable just
    before the drift, so a policy that was already degraded does not "recover" to its own low level);
    None when no policy served before the onset."""
    runs = list(runs)
    levels: dict[str, float | None] = {}
    for onset in scenario.onsets:
        found = [v for v in (pre_drift_level(r, onset.day) for r in runs) if v is not None]
        levels[onset.label] = max(found) if found else None
    return levels


def recovery_days(run: PolicyRun, onset: int, until: int, level: float, tolerance: float) -> int | None:
    """Days from the onset to the first served day (before `until`) whose accuracy is back within
    `tolerance` of the pre-drift `level` (0: it never left); None when it did not recover in time."""
    for d in sorted(run.accuracy):
        if onset <= d < until and run.accuracy[d] >= level - tolerance:
            return d - onset
    return None


def summarize(
    run: PolicyRun, scenario: Scenario, tolerance: float, levels: dict[str, float | None]
) -> PolicySummary:
    """Mean daily accuracy, accuracy after each onset, recovery (against `reference_levels`), trainings
    and gate outcomes of one run."""
    days = len(scenario.days)
    after: dict[str, float | None] = {}
    recovery: dict[str, int | None] = {}
    pre: dict[str, float | None] = {}
    for i, onset in enumerate(scenario.onsets):
        window = [
            run.accuracy[d] for d in range(onset.day, onset.day + AFTER_ONSET_DAYS) if d in run.accuracy
        ]
        after[onset.label] = float(np.mean(window)) if window else None
        until = scenario.onsets[i + 1].day if i + 1 < len(scenario.onsets) else days + 1
        level = levels.get(onset.label)
        pre[onset.label] = level
        recovery[onset.label] = (
            None if level is None else recovery_days(run, onset.day, until, level, tolerance)
        )
    done = [t for t in run.trainings if t.error is None]
    return PolicySummary(
        policy=run.policy,
        mean_accuracy=float(np.mean(list(run.accuracy.values()))) if run.accuracy else math.nan,
        after_onset=after,
        recovery_days=recovery,
        pre_drift=pre,
        trainings=len(run.trainings),
        training_seconds=sum(t.seconds for t in run.trainings),
        fit_seconds=sum(t.fit_seconds for t in run.trainings),
        gate_seconds=sum(t.gate_seconds for t in run.trainings),
        promotions=sum(t.passed for t in done),
        rejected=sum(not t.passed for t in done),
        failed=len(run.trainings) - len(done),
        worse_promotions=sum(t.passed and t.worse for t in done),
        worse_next_day=sum(c.worse for c in run.next_day),
    )


@dataclass(frozen=True)
class TargetCheck:
    """One of the issue's targets, judged on the ctcd policy."""

    name: str
    passed: bool
    detail: str


def check_targets(
    summaries: dict[Policy, PolicySummary], scenario: Scenario, max_training_share: float = 0.15
) -> list[TargetCheck]:
    """The issue's three targets for `ctcd` (against `daily`, and for every policy's promotions)."""
    ctcd, daily = summaries["ctcd"], summaries["daily"]
    share = ctcd.trainings / daily.trainings if daily.trainings else math.inf
    allowed = scenario.cfg.dataset.label_delay_batches + 1
    concept = [o for o in scenario.onsets if o.kind == "concept_drift"]
    late = {o.label: ctcd.recovery_days[o.label] for o in concept if ctcd.pre_drift[o.label] is not None}
    unjudged = [o.label for o in concept if ctcd.pre_drift[o.label] is None]
    worse = {p: s.worse_promotions for p, s in summaries.items()}
    return [
        TargetCheck(
            "accuracy and cost vs daily",
            ctcd.mean_accuracy > daily.mean_accuracy and share <= max_training_share,
            f"mean accuracy {ctcd.mean_accuracy:.4f} vs {daily.mean_accuracy:.4f} (must be higher), "
            f"{ctcd.trainings} vs {daily.trainings} trainings = {share:.1%} "
            f"(must be <= {max_training_share:.0%})",
        ),
        TargetCheck(
            "recovery after concept drift",
            bool(late) and all(v is not None and v <= allowed for v in late.values()),
            (
                ", ".join(f"{k}: {'not recovered' if v is None else f'{v} days'}" for k, v in late.items())
                or "no concept drift to judge in the replayed days"
            )
            + f" (must be <= label delay + 1 = {allowed} days)"
            + (f"; not judged (no champion served before): {', '.join(unjudged)}" if unjudged else ""),
        ),
        TargetCheck(
            "no promotion of a worse model",
            not any(worse.values()),
            "promotions whose holdout "
            f"{scenario.cfg.gates.model.primary_metric} is worse than the replaced model's by more than "
            f"{scenario.cfg.gates.model.max_regression}: " + ", ".join(f"{p} {n}" for p, n in worse.items()),
        ),
    ]
