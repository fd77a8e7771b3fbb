"""The online gate: a candidate in shadow or canary judged against the champion on labelled live traffic.

During a rollout both models score every request (`champion_probability`, `candidate_probability` in the
prediction log). Once enough of those rows have labels (`gates.online.min_labelled_rows`), the offline
gate's paired bootstrap (`tasks.model_gate.paired_bootstrap`, same metric, samples and seed)
compares the two on the same rows:
- promote: the interval rules out a regression beyond `max_regression` and the gain exceeds the offline
  gate's `min_improvement` (the offline rule, on live rows);
- reject: the candidate is significantly worse (the whole interval below zero), or the rollout has lasted
  `max_wait_batches` monitored batches without a promotion (too few labels, or no clear gain);
- wait: otherwise (keep collecting labels).

The gate looks again on every monitored batch, up to `max_wait_batches` times per rollout: each look's
interval is at the Bonferroni-corrected confidence `1 - (1 - confidence) / max_wait_batches`
(`look_confidence`), so the chance that any look of a rollout errs stays within the model gate's
`1 - confidence`; its bootstrap draws enough resamples for those narrower tails (`look_samples`).

`next_step` turns a verdict into the rollout's next step (`RolloutStep`): promote, reject, or, while the
gate waits, `step_up` (a canary moves to the next `serving.canary_steps` share, only on evidence: at least
`gates.online.step_min_labelled_rows` labelled rows and a point delta not below `-max_regression`) or
`hold` (shadow, or a canary without that evidence, stays as it is).

Pure functions and records: `flows/monitoring.py` reads the rows and carries out the step; the replay
(`tasks/replay_rollout.py`) runs the same functions on its simulated log.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ctcd import columns
from ctcd.cadence import Timeline
from ctcd.config import CtcdConfig, DatasetConfig
from ctcd.features import is_positive
from ctcd.rollout import RolloutState
from tasks.dataset import join_labels
from tasks.evaluation import GREATER_IS_BETTER, metric_value
from tasks.model_gate import paired_bootstrap

CHAMPION_PROBABILITY = columns.CHAMPION_PROBABILITY
CANDIDATE_PROBABILITY = columns.CANDIDATE_PROBABILITY
CHAMPION_VERSION = columns.CHAMPION_VERSION
CANDIDATE_VERSION = columns.CANDIDATE_VERSION
OnlineAction = Literal["promote", "wait", "reject"]
StepAction = Literal["promote", "reject", "step_up", "hold"]


class OnlineVerdict(BaseModel):
    """The online gate's decision on one rollout, and the evidence behind it."""

    action: OnlineAction
    candidate_version: str
    champion_version: str
    labelled_rows: int
    metric: str
    champion_value: float | None = None
    candidate_value: float | None = None
    delta: float | None = None
    """candidate - champion, signed so that positive is better (with fewer than `min_labelled_rows` rows,
    from `step_min_labelled_rows` on: the point delta alone, no interval)."""
    ci_low: float | None = None
    ci_high: float | None = None
    reason: str
    batches_waited: int = 0
    min_labelled_rows: int = 0
    max_regression: float = 0.0
    confidence: float = 0.95
    """the interval's confidence for this look (`look_confidence`)"""
    looks: int = 1
    """the looks per rollout `confidence` accounts for (Bonferroni over `gates.online.max_wait_batches`)"""
    bootstrap_samples: int = 0
    """resamples behind the interval (`look_samples`: enough for the corrected confidence's tails)"""
    decided_at: str = ""

    def summary(self) -> str:
        """One line: the action, the versions, the numbers and why."""
        head = f"online gate {self.action.upper()} v{self.candidate_version}"
        head += f" vs champion v{self.champion_version}"
        if self.delta is not None:
            ci = f"[{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"
            head += (
                f": {self.metric} {_fmt(self.candidate_value)} vs {_fmt(self.champion_value)} "
                f"(delta {self.delta:+.4f}, {self.confidence:.1%} CI {ci})"
            )
        return f"{head} on {self.labelled_rows} labelled live rows; {self.reason}"

    def tags(self) -> dict[str, str]:
        """The verdict as the version's `ctcd.rollout` tag (one of `tracking.VERSION_TAGS`; the full record is
        the artifact), e.g. `online gate: reject, delta -0.0210 on 840 labelled live rows`."""
        delta = "" if self.delta is None else f", delta {self.delta:+.4f}"
        return {
            "ctcd.rollout": f"online gate: {self.action}{delta} on {self.labelled_rows} labelled live rows"
        }

    def markdown(self) -> str:
        """The verdict as a Prefect markdown artifact."""
        rows = [
            ("action", self.action),
            ("candidate", f"v{self.candidate_version}"),
            ("champion", f"v{self.champion_version}"),
            ("labelled live rows", f"{self.labelled_rows} (need {self.min_labelled_rows})"),
            ("batches waited", str(self.batches_waited)),
            (
                f"{self.metric} candidate / champion",
                f"{_fmt(self.candidate_value)} / {_fmt(self.champion_value)}",
            ),
            ("delta", _fmt(self.delta)),
            (f"{self.confidence:.1%} CI", f"[{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"),
            ("looks corrected for", f"{self.looks} (Bonferroni)"),
            ("bootstrap resamples", str(self.bootstrap_samples)),
            ("max regression", f"{self.max_regression:g}"),
        ]
        table = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return f"## Online gate: {self.action}\n\n{self.summary()}\n\n| | |\n|---|---|\n{table}\n"


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def max_regression(cfg: CtcdConfig) -> float:
    """The online gate's allowed regression (`gates.online.max_regression`, else the offline gate's)."""
    online = cfg.gates.online.max_regression
    return cfg.gates.model.max_regression if online is None else online


def look_confidence(cfg: CtcdConfig) -> float:
    """The confidence of one look: the model gate's, Bonferroni-corrected for the up to
    `gates.online.max_wait_batches` looks a rollout gets (0.95 over 5 looks: 0.99 each)."""
    return 1 - (1 - cfg.gates.model.confidence) / cfg.gates.online.max_wait_batches


def look_samples(cfg: CtcdConfig) -> int:
    """Bootstrap resamples of one look: `gates.model.bootstrap_samples`, raised so that each tail of the
    corrected interval holds at least 10 of them (a 99 % interval from 300 resamples rests on 1.5 per tail;
    with the defaults: 2,000)."""
    tails = 1 - look_confidence(cfg)
    return max(cfg.gates.model.bootstrap_samples, math.ceil(20 / tails - 1e-9))


def step_min_labelled_rows(cfg: CtcdConfig) -> int:
    """Labelled live rows a canary needs to step up (`gates.online.step_min_labelled_rows`, else a quarter
    of `min_labelled_rows`)."""
    online = cfg.gates.online
    given = online.step_min_labelled_rows
    return max(1, online.min_labelled_rows // 4) if given is None else given


def rollout_window(cfg: CtcdConfig, timeline: Timeline, batch: str) -> list[str]:
    """The batches whose logged rows the online gate reads when monitoring `batch`: enough to count a
    rollout up to `gates.online.max_wait_batches` (older rows are not the rollout's, or it is over)."""
    return timeline.last(batch, cfg.gates.online.max_wait_batches + 1)


def verdict_artifact(batch: str) -> str:
    """Where the verdict of the monitoring run of `batch` is kept in the candidate's MLflow run."""
    return f"gate/online-{batch}.json"


def rollout_rows(
    predictions: pd.DataFrame, labels: pd.DataFrame, dataset: DatasetConfig, candidate_version: str
) -> tuple[pd.DataFrame, int]:
    """The logged rows `candidate_version` scored beside the champion, joined to their arrived labels
    (`tasks.dataset.join_labels`), and the number of batches it has been scored in (`BATCH`; the served
    date when the rows carry no batch)."""
    if CANDIDATE_VERSION not in predictions or predictions.empty:
        return predictions.iloc[0:0], 0
    scored = predictions[
        (predictions[CANDIDATE_VERSION].astype(str) == str(candidate_version))
        & predictions[CANDIDATE_PROBABILITY].notna()
        & predictions[CHAMPION_PROBABILITY].notna()
    ]
    if columns.BATCH in scored:
        batches = scored[columns.BATCH].astype(str).nunique()
    else:
        batches = pd.to_datetime(scored[columns.SERVED_AT], utc=True).dt.date.nunique()
    return join_labels(scored, labels, dataset), int(batches)


def judge_online(
    cfg: CtcdConfig,
    rows: pd.DataFrame,
    *,
    candidate_version: str | None = None,
    champion_version: str | None = None,
    batches_waited: int = 0,
    metric: str | None = None,
) -> OnlineVerdict:
    """Promote, wait or reject the candidate on `rows`: logged predictions with both models' probabilities
    joined to their labels (`rollout_rows`). The versions default to the ones the rows name; with them
    given, only rows of that candidate and champion count. `batches_waited`: the monitored batches the
    rollout has lasted (`gates.online.max_wait_batches` ends it). `metric`: the one the candidate passed
    the model gate on (`RolloutState.metric`; None: `gates.model.primary_metric`), so a candidate blessed
    on accuracy is not judged live on ROC AUC."""
    gate, online = cfg.gates.model, cfg.gates.online
    metric = metric or gate.primary_metric
    candidate_version = candidate_version or _only(rows, CANDIDATE_VERSION)
    champion_version = champion_version or _only(rows, CHAMPION_VERSION)
    rows = _of_versions(rows, candidate_version, champion_version)
    n = len(rows)
    tolerance = max_regression(cfg)
    common = {
        "candidate_version": candidate_version,
        "champion_version": champion_version,
        "labelled_rows": n,
        "metric": metric,
        "batches_waited": batches_waited,
        "min_labelled_rows": online.min_labelled_rows,
        "max_regression": tolerance,
        "confidence": look_confidence(cfg),
        "looks": online.max_wait_batches,
        "bootstrap_samples": look_samples(cfg),
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out_of_time = batches_waited >= online.max_wait_batches
    if n < online.min_labelled_rows:
        point = _point(cfg, rows, metric) if n >= step_min_labelled_rows(cfg) else {}
        if out_of_time:
            why = f"only {n} of {online.min_labelled_rows} labelled rows after {batches_waited} batches"
            return OnlineVerdict(
                action="reject", reason=f"{why} (gates.online.max_wait_batches)", **common, **point
            )
        return OnlineVerdict(
            action="wait", reason=f"{n} of {online.min_labelled_rows} labelled rows so far", **common, **point
        )
    y = _labels(cfg, rows)
    boot = paired_bootstrap(
        metric,
        y,
        rows[CANDIDATE_PROBABILITY].astype("float64").to_numpy(),
        rows[CHAMPION_PROBABILITY].astype("float64").to_numpy(),
        look_samples(cfg),
        look_confidence(cfg),
        cfg.training.seed,
        gate.bootstrap_max_rows,
    )
    numbers = {
        "candidate_value": _number(boot.candidate),
        "champion_value": _number(boot.reference),
        "delta": _number(boot.delta),
        "ci_low": _number(boot.low),
        "ci_high": _number(boot.high),
    }
    action, reason = _rule(boot.delta, boot.low, boot.high, tolerance, gate.min_improvement)
    if action == "wait" and out_of_time:
        action, reason = "reject", f"{reason} after {batches_waited} batches (gates.online.max_wait_batches)"
    return OnlineVerdict(action=action, reason=reason, **common, **numbers)


def judge_rollout(
    cfg: CtcdConfig, rollout: RolloutState, predictions: pd.DataFrame, labels: pd.DataFrame
) -> OnlineVerdict:
    """The online gate on a rollout: the logged rows its candidate scored beside its champion
    (`predictions`, the rollout window's log), joined to the arrived `labels`, judged on the rollout's
    metric. The monitoring flow and the replay both call this."""
    rows, batches = rollout_rows(predictions, labels, cfg.dataset, rollout.candidate_version)
    return judge_online(
        cfg,
        rows,
        candidate_version=rollout.candidate_version,
        champion_version=rollout.champion_version,
        batches_waited=batches,
        metric=rollout.metric,
    )


class RolloutStep(BaseModel):
    """What a rollout does after a verdict (`next_step`); the monitoring flow or the replay carries it out."""

    action: StepAction
    mode: Literal["shadow", "canary"]
    step: int
    """the `serving.canary_steps` index after the step (0 in shadow)"""
    fraction: float
    """the share of rows the candidate answers after the step (0.0 in shadow; 1.0 once promoted)"""
    reason: str

    def summary(self) -> str:
        """One line, e.g. `canary step_up to 25%: 80 labelled rows, delta +0.0100 not below -0.01`."""
        share = f" at {self.fraction:.0%}" if self.mode == "canary" and self.action == "hold" else ""
        share = f" to {self.fraction:.0%}" if self.action == "step_up" else share
        return f"{self.mode} {self.action}{share}: {self.reason}"


def next_step(cfg: CtcdConfig, verdict: OnlineVerdict, rollout: RolloutState) -> RolloutStep:
    """The rollout's next step on `verdict`: promote or reject as the gate says; while it waits, a canary
    steps up one `serving.canary_steps` share only on evidence (at least `step_min_labelled_rows` labelled
    rows and a point delta not below `-max_regression`), else it holds, as a shadow always does."""
    here = {"mode": rollout.mode, "step": rollout.step, "fraction": rollout.fraction}
    if verdict.action == "promote":
        return RolloutStep(action="promote", reason=verdict.reason, **{**here, "fraction": 1.0})
    if verdict.action == "reject":
        return RolloutStep(action="reject", reason=verdict.reason, **{**here, "fraction": 0.0})
    if rollout.mode == "shadow":
        return RolloutStep(action="hold", reason=f"the gate waits: {verdict.reason}", **here)
    steps = cfg.serving.canary_steps
    need, tolerance = step_min_labelled_rows(cfg), max_regression(cfg)
    if rollout.step >= len(steps) - 1:
        why = f"already at the last of serving.canary_steps; the gate waits: {verdict.reason}"
    elif verdict.labelled_rows < need:
        why = f"{verdict.labelled_rows} of {need} labelled rows to step up (step_min_labelled_rows)"
    elif verdict.delta is None:
        why = f"no point delta on {verdict.labelled_rows} labelled rows (one class only?)"
    elif verdict.delta < -tolerance:
        why = f"delta {verdict.delta:+.4f} is below -{tolerance:g} (max_regression)"
    else:
        step = rollout.step + 1
        why = f"{verdict.labelled_rows} labelled rows, delta {verdict.delta:+.4f} not below -{tolerance:g}"
        return RolloutStep(action="step_up", mode="canary", step=step, fraction=steps[step], reason=why)
    return RolloutStep(action="hold", reason=why, **here)


def _labels(cfg: CtcdConfig, rows: pd.DataFrame) -> np.ndarray:
    return is_positive(rows[cfg.dataset.target], cfg.dataset.positive_label).astype("int64").to_numpy()


def _point(cfg: CtcdConfig, rows: pd.DataFrame, metric: str) -> dict[str, float | None]:
    """Both models' `metric` on the rows and the signed delta, without an interval (undefined: None)."""
    y = _labels(cfg, rows)
    cand = metric_value(metric, y, rows[CANDIDATE_PROBABILITY].astype("float64").to_numpy())
    champ = metric_value(metric, y, rows[CHAMPION_PROBABILITY].astype("float64").to_numpy())
    delta = (cand - champ) if GREATER_IS_BETTER[metric] else (champ - cand)
    return {
        "candidate_value": _number(cand),
        "champion_value": _number(champ),
        "delta": _number(delta),
    }


def _rule(
    delta: float, low: float, high: float, tolerance: float, min_improvement: float
) -> tuple[OnlineAction, str]:
    if any(math.isnan(v) for v in (delta, low, high)):
        return "wait", "the metric is undefined on these rows (one class only?)"
    if high < 0:
        return "reject", "the candidate is significantly worse than the champion on live rows"
    if low >= -tolerance and delta > min_improvement:
        return "promote", f"no regression beyond {tolerance:g} and a gain above {min_improvement:g}"
    if low < -tolerance:
        return "wait", f"a regression beyond {tolerance:g} is not ruled out yet"
    return "wait", f"no gain above {min_improvement:g} yet"


def _number(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


def _only(rows: pd.DataFrame, column: str) -> str:
    found = rows[column].dropna().astype(str).unique() if column in rows else np.array([])
    return str(found[-1]) if len(found) else "-"


def _of_versions(rows: pd.DataFrame, candidate: str, champion: str) -> pd.DataFrame:
    if CANDIDATE_PROBABILITY not in rows or CHAMPION_PROBABILITY not in rows:
        return rows.iloc[0:0]
    keep = pd.Series(True, index=rows.index)
    if CANDIDATE_VERSION in rows and candidate != "-":
        keep &= rows[CANDIDATE_VERSION].astype(str) == candidate
    if CHAMPION_VERSION in rows and champion != "-":
        keep &= rows[CHAMPION_VERSION].astype(str) == champion
    return rows[keep & rows[CANDIDATE_PROBABILITY].notna() & rows[CHAMPION_PROBABILITY].notna()]
