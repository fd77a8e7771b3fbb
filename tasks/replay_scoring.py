"""Scoring replayed runs (`tasks/replay.py`): mean score per policy, score after each known onset, recovery
from it, the drift episodes `ctcd` detected, trainings and their cost, and the accuracy-vs-cost trade-off.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from tasks.replay import PolicyRun
from tasks.replay_history import Scenario
from tasks.replay_rollout import split_policy

AFTER_ONSET = 3  # "metric in the 3 batches after each onset": the onset batch and the 2 after it
PRE_DRIFT = 3  # the pre-drift level is the mean of the served batches just before an onset


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
    rollouts: int = 0  # candidates that went to a rollout (+shadow, +canary)
    online_promotions: int = 0
    online_rejections: int = 0
    rollouts_replaced: int = 0  # rollouts a newer candidate replaced before the online gate decided
    promotion_delay: float | None = None  # mean batches from a promoted rollout's training to its promotion


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
    online_promoted = [o for o in run.online if o.action == "promote"]
    promoted = {t.version for t in done if t.served is not None and t.rollout is None}
    promoted |= {o.candidate for o in online_promoted}
    metric_values = [v for v in run.metric.values() if not math.isnan(v)]
    return PolicySummary(
        policy=run.policy,
        mean_accuracy=float(np.mean(list(run.accuracy.values()))) if run.accuracy else math.nan,
        mean_metric=float(np.mean(metric_values)) if metric_values else math.nan,
        metric_name=scenario.cfg.gates.model.primary_metric,
        after_onset=after,
        recovery=recovery,
        pre_drift=pre,
        episodes=(
            detected_episodes(run, scenario, metric, tolerance)
            if split_policy(run.policy)[0] == "ctcd"
            else []
        ),
        trainings=len(run.trainings),
        training_seconds=sum(t.seconds for t in run.trainings),
        cpu_seconds=sum(c.cpu_seconds for c in costs),
        gpu_seconds=sum(c.gpu_seconds for c in costs),
        rows=sum(c.rows for c in costs),
        money=sum(c.money for c in costs),
        promotions=len(promoted),
        rejected=sum(t.served is None for t in done),
        failed=len(run.trainings) - len(done),
        worse_promotions=sum(t.worse for t in done if t.version in promoted),
        rollouts=sum(t.rollout is not None for t in done),
        online_promotions=len(online_promoted),
        online_rejections=sum(o.action == "reject" for o in run.online),
        rollouts_replaced=replaced_rollouts(run),
        promotion_delay=(
            float(np.mean([o.day - o.started for o in online_promoted])) if online_promoted else None
        ),
    )


def replaced_rollouts(run: PolicyRun) -> int:
    """Rollouts a newer candidate replaced (`deploy.start_rollout` does) before the online gate decided."""
    rolled = [t for t in run.trainings if t.error is None and t.rollout is not None]
    decided = {o.candidate for o in run.online if o.action in ("promote", "reject")}
    return sum(t.version not in decided for t in rolled[:-1]) if rolled else 0


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
