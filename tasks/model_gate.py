"""The model gate (a TFX-style blessing): floors, a paired bootstrap against the champion, and slices.

The candidate and its reference (the champion, or the baseline before there is one) are scored on the same
holdout. The candidate passes when (a) every floor holds, (b) the bootstrap interval of its difference on
the primary metric rules out a regression beyond `max_regression`, (c) it improves the primary metric by
more than `min_improvement` (so an equal model never displaces the champion), and (d) no slice with enough
rows regresses beyond `slice_max_regression`. The decision keeps every number behind it.

Before there is a champion something must serve: `choose_first` picks the better (on the primary metric)
of the candidate and the baseline among those that clear every floor, and `no_first_model` says in one line
what to change when neither does. On a window restarted at a drift's onset the baseline competes too
(`choose_contender`): served instead of the candidate when it passes the same gate and scores better.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ctcd.config import CtcdConfig, ModelGateConfig
from tasks.evaluation import (
    GREATER_IS_BETTER,
    EvaluationReport,
    classification_metrics,
    metric_value,
    metric_values,
    slice_keys,
)
from tasks.model import target_vector

ReferenceKind = Literal["champion", "baseline"]
Chosen = Literal["candidate", "baseline"]
_CHUNK = 50  # bootstrap samples scored at once (bounds memory: chunk x holdout rows floats)
_CHUNK_CELLS = 5_000_000  # at most this many weights (chunk x rows) at once on large holdouts


class Check(BaseModel):
    """One rule of the gate with the numbers it compared."""

    name: str
    passed: bool
    value: float | None
    threshold: float | None
    detail: str


class BootstrapResult(BaseModel):
    """Paired bootstrap of (candidate - reference) on one metric, signed so that positive is better."""

    metric: str
    candidate: float
    reference: float
    delta: float
    low: float
    high: float
    confidence: float
    samples: int


class SliceResult(BaseModel):
    """The primary metric on one slice value for both models."""

    column: str
    value: str
    rows: int
    candidate: float | None
    reference: float | None
    regression: float | None
    passed: bool


class GateDecision(BaseModel):
    """The blessing: whether the candidate may replace its reference, and the evidence."""

    passed: bool
    primary_metric: str
    reference_kind: ReferenceKind
    candidate_version: str | None = None
    reference_version: str | None = None
    holdout_rows: int
    holdout_batches: list[str] = []
    candidate_metrics: dict[str, float | None]
    reference_metrics: dict[str, float | None]
    bootstrap: BootstrapResult
    slices: list[SliceResult]
    checks: list[Check]
    thresholds: ModelGateConfig
    decided_at: str
    chosen: Chosen | None = None
    """With no champion: the model served first (see `choose_first`); None with a champion, or when
    neither the candidate nor the baseline clears the floors."""
    reference_checks: list[Check] = []
    """With no champion: the floors applied to the baseline."""
    baseline_decision: GateDecision | None = None
    """With a champion and a restarted window: the baseline judged by the same gate (`choose_contender`);
    `chosen` is "baseline" when it is served instead of the candidate."""

    @property
    def reasons(self) -> list[str]:
        """The detail of every failed check (empty when the gate passed)."""
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line: passed or not, and why."""
        b = self.bootstrap
        head = (
            f"{'PASSED' if self.passed else 'FAILED'} vs {self.reference_kind}: {b.metric} "
            f"{b.candidate:.4f} vs {b.reference:.4f} (delta {b.delta:+.4f}, "
            f"{b.confidence:.0%} CI [{b.low:+.4f}, {b.high:+.4f}])"
        )
        line = head if self.passed else f"{head}; " + "; ".join(self.reasons)
        if self.reference_kind == "baseline" and not self.passed and self.chosen:
            line += f"; first model: the {self.chosen} is served (the better one that clears the floors)"
        if self.reference_kind == "champion" and self.chosen == "baseline" and self.baseline_decision:
            r = self.baseline_decision.bootstrap
            line += f"; the baseline is served instead (restarted window): {r.metric} {r.candidate:.4f} vs "
            line += f"{r.reference:.4f}, PASSED"
        return line


def _signed(metric: str, value: float) -> float:
    return value if GREATER_IS_BETTER[metric] else -value


def paired_bootstrap(
    metric: str,
    y_true: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    samples: int,
    confidence: float,
    seed: int,
    max_rows: int | None = None,
) -> BootstrapResult:
    """Resample holdout rows (the same for both models); the interval of the delta, positive = better.

    With more than `max_rows` holdout rows the work is bounded (an m-out-of-n bootstrap): the resamples
    are drawn from a fixed-seed subsample of m = `max_rows` rows, and the interval is the full holdout's
    delta plus the subsample's resampled deviations scaled by sqrt(m / n) (the spread of a mean-like
    statistic shrinks as 1 / sqrt(rows)). The point values always use every row.
    """
    y = np.asarray(y_true)
    n = len(y)
    cand = metric_value(metric, y, candidate)
    ref = metric_value(metric, y, reference)
    delta = _signed(metric, cand - ref)
    rng = np.random.default_rng(seed)
    scale, centre = 1.0, 0.0
    if max_rows is not None and n > max_rows:
        keep = np.sort(rng.choice(n, size=max_rows, replace=False))
        y, candidate, reference = y[keep], np.asarray(candidate)[keep], np.asarray(reference)[keep]
        sub = _signed(metric, metric_value(metric, y, candidate) - metric_value(metric, y, reference))
        scale, centre = math.sqrt(max_rows / n), delta - math.sqrt(max_rows / n) * sub
        n = max_rows
    chunk = max(1, min(_CHUNK, _CHUNK_CELLS // max(n, 1)))
    deltas: list[np.ndarray] = []
    for done in range(0, samples, chunk):
        # Multinomial counts as weights: the same resample as drawing row indices, for many at once.
        w = rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, samples - done))
        d = metric_values(metric, y, candidate, w) - metric_values(metric, y, reference, w)
        deltas.append(d if GREATER_IS_BETTER[metric] else -d)
    found = np.concatenate(deltas) if deltas else np.array([])
    found = centre + scale * found[~np.isnan(found)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(found, [alpha, 1 - alpha]) if len(found) else (math.nan, math.nan)
    return BootstrapResult(
        metric=metric,
        candidate=cand,
        reference=ref,
        delta=delta,
        low=float(low),
        high=float(high),
        confidence=confidence,
        samples=len(found),
    )


def floor_checks(metrics: dict[str, float | None], floors: dict[str, float]) -> list[Check]:
    """One check per configured floor (a ceiling for metrics where lower is better)."""
    checks = []
    for name, floor in sorted(floors.items()):
        value = metrics.get(name)
        higher = GREATER_IS_BETTER.get(name, True)
        ok = value is not None and (value >= floor if higher else value <= floor)
        word = ">=" if higher else "<="
        checks.append(
            Check(
                name=f"floor:{name}",
                passed=ok,
                value=value,
                threshold=floor,
                detail=f"{name} {_fmt(value)} must be {word} {floor}",
            )
        )
    return checks


def slice_results(
    frame: pd.DataFrame,
    y_true: np.ndarray,
    candidate: np.ndarray,
    reference: np.ndarray,
    cfg: CtcdConfig,
) -> list[SliceResult]:
    """The primary metric per slice value for both models, judged against `slice_max_regression`."""
    gate = cfg.gates.model
    metric = gate.primary_metric
    out = []
    for column in cfg.dataset.slice_columns:
        keys = slice_keys(frame, column, cfg).to_numpy()
        for key in sorted(set(keys)):
            mask = keys == key
            rows = int(mask.sum())
            c = metric_value(metric, y_true[mask], candidate[mask])
            r = metric_value(metric, y_true[mask], reference[mask])
            judged = rows >= gate.min_slice_rows and not (math.isnan(c) or math.isnan(r))
            regression = _signed(metric, r - c) if judged else None
            passed = regression is None or regression <= gate.slice_max_regression
            out.append(
                SliceResult(
                    column=column,
                    value=str(key),
                    rows=rows,
                    candidate=None if math.isnan(c) else c,
                    reference=None if math.isnan(r) else r,
                    regression=regression,
                    passed=passed,
                )
            )
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:.4f}"


def decide_on_holdout(
    cfg: CtcdConfig,
    test: pd.DataFrame,
    candidate_proba: np.ndarray,
    reference_proba: np.ndarray,
    report: EvaluationReport,
    reference_kind: ReferenceKind,
    candidate_version: str | None = None,
    reference_version: str | None = None,
) -> GateDecision:
    """`decide` on a holdout frame: its labels, the candidate's evaluation report and the reference's
    probabilities (the training flow and the CT benchmark both judge this way)."""
    y = target_vector(test, cfg.dataset).to_numpy()
    return decide(
        cfg,
        test,
        y,
        candidate_proba,
        reference_proba,
        report.metrics,
        classification_metrics(y, reference_proba),
        reference_kind,
        candidate_version=candidate_version,
        reference_version=reference_version,
        holdout_batches=report.batches,
    )


def decide(
    cfg: CtcdConfig,
    test: pd.DataFrame,
    y_true: np.ndarray,
    candidate_proba: np.ndarray,
    reference_proba: np.ndarray,
    candidate_metrics: dict[str, float | None],
    reference_metrics: dict[str, float | None],
    reference_kind: ReferenceKind,
    candidate_version: str | None = None,
    reference_version: str | None = None,
    holdout_batches: list[str] | None = None,
) -> GateDecision:
    """Judge a candidate against its reference on the same holdout and return the typed decision."""
    gate = cfg.gates.model
    metric = gate.primary_metric
    boot = paired_bootstrap(
        metric,
        y_true,
        candidate_proba,
        reference_proba,
        gate.bootstrap_samples,
        gate.confidence,
        cfg.training.seed,
        gate.bootstrap_max_rows,
    )
    checks = floor_checks(candidate_metrics, gate.floors)
    checks.append(
        Check(
            name="no_regression",
            passed=not math.isnan(boot.low) and boot.low >= -gate.max_regression,
            value=boot.low,
            threshold=-gate.max_regression,
            detail=(
                f"{boot.confidence:.0%} CI lower bound of {metric} change vs {reference_kind} "
                f"{_fmt(boot.low)} must be >= -{gate.max_regression}"
            ),
        )
    )
    checks.append(
        Check(
            name="improvement",
            passed=not math.isnan(boot.delta) and boot.delta > gate.min_improvement,
            value=boot.delta,
            threshold=gate.min_improvement,
            detail=f"{metric} change vs {reference_kind} {_fmt(boot.delta)} must be > {gate.min_improvement}",
        )
    )
    slices = slice_results(test, y_true, candidate_proba, reference_proba, cfg)
    for s in slices:
        if not s.passed:
            checks.append(
                Check(
                    name=f"slice:{s.column}={s.value}",
                    passed=False,
                    value=s.regression,
                    threshold=gate.slice_max_regression,
                    detail=(
                        f"slice {s.column}={s.value} ({s.rows} rows) {metric} regresses by "
                        f"{_fmt(s.regression)} > {gate.slice_max_regression}"
                    ),
                )
            )
    judged = [s for s in slices if s.regression is not None]
    checks.append(
        Check(
            name="slices",
            passed=all(s.passed for s in slices),
            value=max((s.regression for s in judged if s.regression is not None), default=None),
            threshold=gate.slice_max_regression,
            detail=f"{sum(not s.passed for s in slices)} of {len(judged)} judged slices regress too much",
        )
    )
    return GateDecision(
        passed=all(c.passed for c in checks),
        primary_metric=metric,
        reference_kind=reference_kind,
        candidate_version=candidate_version,
        reference_version=reference_version,
        holdout_rows=len(y_true),
        holdout_batches=holdout_batches or [],
        candidate_metrics=candidate_metrics,
        reference_metrics=reference_metrics,
        bootstrap=boot,
        slices=slices,
        checks=checks,
        thresholds=gate,
        decided_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def choose_first(decision: GateDecision) -> GateDecision:
    """With no champion, the model to serve first: the candidate when it passed the gate against the
    baseline; otherwise the better of the two on the primary metric among those clearing every floor
    (a tie goes to the candidate); None when neither clears them. Returns the decision with `chosen` set."""
    if decision.reference_kind != "baseline":
        raise ValueError("choose_first applies to a decision against the baseline (no champion yet)")
    base_checks = floor_checks(decision.reference_metrics, decision.thresholds.floors)
    candidate_ok = all(c.passed for c in decision.checks if c.name.startswith("floor:"))
    baseline_ok = all(c.passed for c in base_checks)
    chosen: Chosen | None
    if decision.passed or (candidate_ok and (not baseline_ok or decision.bootstrap.delta >= 0)):
        chosen = "candidate"
    elif baseline_ok:
        chosen = "baseline"
    else:
        chosen = None
    return decision.model_copy(update={"chosen": chosen, "reference_checks": base_checks})


def choose_contender(decision: GateDecision, rival: GateDecision) -> GateDecision:
    """With a champion: `decision` (the candidate's) with the baseline's own decision against the same
    champion attached, and `chosen` "baseline" when the baseline passed and the candidate did not, or it
    scored better on the gate's metric. The candidate's verdict (`passed`) stays its own."""
    if decision.reference_kind != "champion" or rival.reference_kind != "champion":
        raise ValueError("choose_contender compares two decisions against the same champion")
    metric = decision.bootstrap.metric
    better = _signed(metric, rival.bootstrap.candidate) > _signed(metric, decision.bootstrap.candidate)
    chosen: Chosen | None = "baseline" if rival.passed and (not decision.passed or better) else None
    return decision.model_copy(update={"chosen": chosen, "baseline_decision": rival})


def no_first_model(decision: GateDecision) -> str:
    """One line for the state where nothing can serve: the floors, both models' numbers, what to change."""
    floors = decision.thresholds.floors
    rules = ", ".join(
        f"{name}{'>=' if GREATER_IS_BETTER.get(name, True) else '<='}{floor:g}"
        for name, floor in sorted(floors.items())
    )

    def numbers(metrics: dict[str, float | None]) -> str:
        return ", ".join(f"{name} {_fmt(metrics.get(name))}" for name in sorted(floors))

    return (
        f"no model cleared the floors {rules}: candidate {numbers(decision.candidate_metrics)} "
        f"(baseline {numbers(decision.reference_metrics)}); lower gates.model.floors in the config, "
        "or check the labels (dataset.target, positive_label) and the features"
    )


def baseline_tags(decision: GateDecision) -> dict[str, str]:
    """`decision_tags` for a served baseline: first model, its numbers and floors; else vs the champion."""
    if decision.baseline_decision is not None:
        return {**decision_tags(decision.baseline_decision), "ctcd.gate.chosen": "baseline"}
    b = decision.bootstrap
    checks = ", ".join(f"{c.name}={'pass' if c.passed else 'FAIL'}" for c in decision.reference_checks)
    return {
        **decision_tags(decision),
        "ctcd.gate": "first-model",
        "ctcd.delta": f"{b.metric} {-b.delta:+.4f} vs candidate v{decision.candidate_version or '-'}",
        "ctcd.gate.reference": f"candidate:{decision.candidate_version or '-'}",
        "ctcd.gate.candidate": f"{b.reference:.6f}",
        "ctcd.gate.reference_value": f"{b.candidate:.6f}",
        "ctcd.gate.delta": f"{-b.delta:.6f}",
        "ctcd.gate.ci": f"[{-b.high:.6f}, {-b.low:.6f}] at {b.confidence}",
        "ctcd.gate.checks": checks,
        "ctcd.gate.reasons": "-",
    }


def decision_tags(decision: GateDecision) -> dict[str, str]:
    """Every number for the run (`ctcd.gate.*`); the version's verdict (passed | first-model | rejected)."""
    b = decision.bootstrap
    checks = ", ".join(f"{c.name}={'pass' if c.passed else 'FAIL'}" for c in decision.checks)
    vs = f"champion v{decision.reference_version}" if decision.reference_kind == "champion" else "baseline"
    verdict = "first-model" if decision.chosen == "candidate" else "rejected"
    return {
        "ctcd.gate": "passed" if decision.passed else verdict,
        "ctcd.delta": f"{b.metric} {b.delta:+.4f} vs {vs}",
        "ctcd.gate.reference": f"{decision.reference_kind}:{decision.reference_version or '-'}",
        "ctcd.gate.primary_metric": decision.primary_metric,
        "ctcd.gate.candidate": f"{b.candidate:.6f}",
        "ctcd.gate.reference_value": f"{b.reference:.6f}",
        "ctcd.gate.delta": f"{b.delta:.6f}",
        "ctcd.gate.ci": f"[{b.low:.6f}, {b.high:.6f}] at {b.confidence}",
        "ctcd.gate.checks": checks[:4900],
        "ctcd.gate.reasons": "; ".join(decision.reasons)[:4900] or "-",
        "ctcd.gate.decided_at": decision.decided_at,
        "ctcd.gate.chosen": decision.chosen or "-",
    }
