"""Training: device choice, a small budgeted random search with early stopping, and the baseline."""

from __future__ import annotations

import functools
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from ctcd.config import CtcdConfig
from ctcd.errors import WorkFailed
from tasks.dataset import Split
from tasks.evaluation import GREATER_IS_BETTER, metric_value
from tasks.model import (
    Model,
    baseline_kind,
    build_model,
    candidate_kind,
    features_frame,
    final_estimator,
    positive_proba,
    target_vector,
)

Device = Literal["cpu", "cuda"]


# Training rows the baseline (a logistic regression or a prior) is fitted on at most.
BASELINE_MAX_ROWS = 200_000


@dataclass(frozen=True)
class DeviceChoice:
    """Where XGBoost trains, what was asked for, and why."""

    device: Device
    requested: str
    reason: str


@dataclass
class Candidate:
    """One fitted model of the search with its validation score."""

    params: dict[str, Any]
    validation_score: float
    best_iteration: int | None
    fit_seconds: float
    model: Model = field(repr=False)


@dataclass
class SearchResult:
    """Every candidate of the search and the best one by the primary metric on validation."""

    metric: str
    candidates: list[Candidate]
    best_index: int
    device: DeviceChoice

    @property
    def best(self) -> Candidate:
        return self.candidates[self.best_index]


@functools.lru_cache(maxsize=1)
def visible_gpus() -> tuple[str, ...]:
    """The GPUs `nvidia-smi -L` lists, if XGBoost was built with CUDA (empty otherwise)."""
    import xgboost

    if not xgboost.build_info().get("USE_CUDA"):
        return ()
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(line.strip() for line in out.stdout.splitlines() if line.startswith("GPU "))


def choose_device(requested: str) -> DeviceChoice:
    """Resolve `training.device` (auto | cpu | cuda) to the device XGBoost will use."""
    if requested == "cpu":
        return DeviceChoice("cpu", requested, "configured")
    gpus = visible_gpus()
    if requested == "cuda":
        if not gpus:
            raise WorkFailed(
                "training.device is 'cuda' but no GPU is visible (nvidia-smi -L lists none): "
                "set training.device to auto or cpu"
            )
        return DeviceChoice("cuda", requested, f"configured; {gpus[0]}")
    if gpus:
        return DeviceChoice("cuda", requested, f"auto: {gpus[0]}")
    return DeviceChoice("cpu", requested, "auto: no GPU visible")


def candidate_params(cfg: CtcdConfig) -> list[dict[str, Any]]:
    """The search's parameter sets: the configured params first, then random draws from the space."""
    search = cfg.model.search
    budget = search.budget if search.space and cfg.model.flavor == "xgboost" else 1
    rng = np.random.default_rng(cfg.training.seed)
    out: list[dict[str, Any]] = [{}]
    for _ in range(budget - 1):
        draw: dict[str, Any] = {}
        for name, (low, high) in sorted(search.space.items()):
            if isinstance(low, int) and isinstance(high, int):
                draw[name] = int(rng.integers(low, high + 1))
            else:
                draw[name] = round(float(rng.uniform(low, high)), 6)
        out.append(draw)
    return out


def _is_better(metric: str, a: float, b: float) -> bool:
    if np.isnan(b):
        return not np.isnan(a)
    return a > b if GREATER_IS_BETTER[metric] else a < b


def check_two_classes(cfg: CtcdConfig, train: pd.DataFrame, y_train: pd.Series) -> None:
    """WorkFailed (saying what to change) when the training target holds one class only."""
    ds = cfg.dataset
    if y_train.nunique() < 2:
        seen = train[ds.target].dropna().unique().tolist()
        if y_train.sum() == 0 and len(seen) > 1:
            shown = ", ".join(repr(v) for v in seen[:5])
            raise WorkFailed(
                f"no training label equals dataset.positive_label {ds.positive_label!r} (labels seen: "
                f'{shown}): set positive_label to one of them (quote text, e.g. "yes")'
            )
        raise WorkFailed("the training rows hold one class only: widen training.window_batches")


def fit_candidate(cfg: CtcdConfig, split: Split, params: dict[str, Any], device: DeviceChoice) -> Candidate:
    """Fit one candidate on train, early-stopping on validation, and score it on validation."""
    ds = cfg.dataset
    X_train, y_train = features_frame(split.train, ds), target_vector(split.train, ds)
    X_val, y_val = features_frame(split.validation, ds), target_vector(split.validation, ds)
    check_two_classes(cfg, split.train, y_train)
    kind = candidate_kind(cfg)
    start = time.perf_counter()
    if kind == "xgboost":
        model = build_model(cfg, kind, params, device.device)
        # The encoding step learns the categories on train only; the validation set early stopping
        # watches goes through the same fitted step.
        columns, clf = model.steps[0][1], final_estimator(model)
        clf.set_params(early_stopping_rounds=cfg.model.early_stopping_rounds)
        X_fit = columns.fit_transform(X_train)
        clf.fit(X_fit, y_train, eval_set=[(columns.transform(X_val), y_val)], verbose=False)
        best_iteration = int(clf.best_iteration) if hasattr(clf, "best_iteration") else None
        # The registered model must serve on CPU whatever it was trained on, and refit without a
        # validation set; predictions keep using the best iteration.
        clf.set_params(device="cpu", early_stopping_rounds=None)
    else:
        model = build_model(cfg, kind, {**cfg.model.params, **params})
        model.fit(X_train, y_train)
        best_iteration = None
    seconds = time.perf_counter() - start
    score = metric_value(cfg.gates.model.primary_metric, y_val.to_numpy(), positive_proba(model, X_val))
    return Candidate(dict(params), score, best_iteration, seconds, model)


FitOne = Callable[[CtcdConfig, Split, dict[str, Any], DeviceChoice], Candidate]


def search(
    cfg: CtcdConfig, split: Split, device: DeviceChoice, fit_one: FitOne = fit_candidate
) -> SearchResult:
    """Fit every candidate of the budgeted search (each with `fit_one`) and pick the best on validation."""
    metric = cfg.gates.model.primary_metric
    candidates = [fit_one(cfg, split, p, device) for p in candidate_params(cfg)]
    best = 0
    for i, c in enumerate(candidates[1:], start=1):
        if _is_better(metric, c.validation_score, candidates[best].validation_score):
            best = i
    return SearchResult(metric=metric, candidates=candidates, best_index=best, device=device)


def fit_baseline(cfg: CtcdConfig, split: Split) -> Model:
    """The baseline the first champion must beat, fitted on the same training rows (a fixed-seed sample of
    `BASELINE_MAX_ROWS` of them on larger windows: its dense one-hot frame grew with the window)."""
    ds = cfg.dataset
    train = split.train
    if len(train) > BASELINE_MAX_ROWS:  # bounded work: a linear baseline gains nothing from millions of rows
        train = train.sample(BASELINE_MAX_ROWS, random_state=cfg.training.seed).sort_index()
    model = build_model(cfg, baseline_kind(cfg))
    model.fit(features_frame(train, ds), target_vector(train, ds))
    return model
