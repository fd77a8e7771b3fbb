"""`ctcd backtest`: replay a history under several retraining policies and judge what each would have done.

Runs `tasks/replay.py` (the CT steps of `tasks/ct_steps.py` with a simulated clock and an in-memory
registry) once per policy, sharing fits between policies that train on the same window, then summarises
(`tasks/replay_scoring.py`): mean score per policy, trainings and their cost, gate outcomes, recovery, the
accuracy-vs-cost trade-off; and judges here: the frontier of fixed schedules (every k batches, k = 1..8)
and the acceptance targets. `ctcd/app/backtest_report.py` writes the table, JSON and plots. No Prefect,
MLflow or server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import yaml

from ctcd.config import CtcdConfig
from ctcd.errors import ConfigError, UsageError
from tasks import replay, replay_history, replay_registry, replay_rollout, training
from tasks import replay_scoring as scoring

History = Literal["auto", "stream", "sea", "source"]
# SEA's classic setting: four concepts in turn, abrupt switches, 10% label noise.
SEA_SCHEDULE = {1: 0, 11: 1, 21: 2, 31: 3}
SEA_NOISE = 0.1
SEA_SEED = 7
FRONTIER_K = range(1, 9)
ALPHAS = np.linspace(0.0, 0.1, 21)


def apply_overrides(cfg: CtcdConfig, overrides: list[str]) -> CtcdConfig:
    """The config with `key.path=value` overrides (values parsed as YAML), validated again."""
    data = cfg.model_dump(mode="python")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: write key.path=value, e.g. drift.accuracy_drop=0.03")
        node: Any = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise UsageError(f"--set {item!r}: the config has no section {part!r} there")
            node = node[part]
        if parts[-1] not in node and not isinstance(node, dict):
            raise UsageError(f"--set {item!r}: the config has no key {parts[-1]!r} there")
        node[parts[-1]] = yaml.safe_load(value)
    try:
        return CtcdConfig.model_validate(data)
    except ValueError as exc:
        first = str(exc).splitlines()
        raise ConfigError(f"--set: the overridden config is invalid: {' '.join(first[:3])}") from exc


def with_threads(cfg: CtcdConfig, threads: int) -> CtcdConfig:
    """XGBoost limited to `threads` threads unless the config sets `model.params.n_jobs`: many small fits
    on a shared machine run several times faster on one thread than spinning on all cores."""
    if cfg.model.flavor != "xgboost" or "n_jobs" in cfg.model.params or threads <= 0:
        return cfg
    params = {**cfg.model.params, "n_jobs": threads}
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"params": params})})


def scenario_for(
    cfg: CtcdConfig, history: History, batches: int | None, rows_per_batch: int | None
) -> replay_history.Scenario:
    """The history to replay: the built-in stream, river's SEA, or the batches of `dataset.source`."""
    if history == "auto":
        history = "source" if cfg.dataset.source is not None else "stream"
    if history == "stream":
        if cfg.stream is None:
            raise ConfigError("--history stream: the config has no `stream:` section")
        return replay_history.agrawal_scenario(
            cfg, batches or cfg.stream.days, rows_per_batch or cfg.stream.rows_per_day
        )
    if history == "sea":
        return replay_history.sea_scenario(
            cfg, batches or 40, rows_per_batch or 2000, SEA_SCHEDULE, SEA_NOISE, SEA_SEED
        )
    return replay_history.source_scenario(cfg, batches)


def expand_policies(names: list[str], with_frontier: bool) -> list[str]:
    """The policies to run: the ones asked for, plus `never` and every-1..8 for the frontier."""
    out = [replay.check_policy(n.strip()) for n in names if n.strip()]
    if with_frontier:
        out += ["never", *(f"every-{k}" for k in FRONTIER_K)]
    if "ctcd" not in out:
        out.append("ctcd")
    return list(dict.fromkeys(out))


@dataclass
class BacktestResult:
    """Everything a backtest measured."""

    scenario: str
    batches: list[str]
    metric: str
    warmup: int
    label_delay: int
    runs: dict[str, replay.PolicyRun] = field(repr=False)
    summaries: dict[str, scoring.PolicySummary]
    tradeoff: dict[str, float]
    frontier: list[tuple[str, int, float]]
    targets: list[TargetCheck]
    onsets: list[replay_history.Onset]
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The result as JSON-ready data (per-batch series, trainings, summaries, targets)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, dict):
                return {str(k): clean(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [clean(x) for x in v]
            return v

        runs = {}
        for p, r in self.runs.items():
            runs[p] = {
                "accuracy": {self.batches[d - 1]: v for d, v in r.accuracy.items()},
                self.summaries[p].metric_name: {self.batches[d - 1]: v for d, v in r.metric.items()},
                "served_by": {self.batches[d - 1]: v for d, v in r.served_by.items()},
                "trainings": [
                    {k: v for k, v in asdict(t).items() if k not in ("decision",)} for t in r.trainings
                ],
                "monitoring": [{k: v for k, v in asdict(m).items() if k != "state"} for m in r.monitoring],
                "online": [asdict(o) for o in r.online],
                "rollout_served": {self.batches[d - 1]: v for d, v in r.rollout_served.items()},
            }
        return clean(
            {
                "scenario": self.scenario,
                "metric": self.metric,
                "warmup": self.warmup,
                "label_delay_batches": self.label_delay,
                "batches": self.batches,
                "onsets": [asdict(o) for o in self.onsets],
                "summaries": {p: asdict(s) for p, s in self.summaries.items()},
                "tradeoff_auc": self.tradeoff,
                "frontier": [{"policy": p, "trainings": n, "score": v} for p, n, v in self.frontier],
                "targets": [asdict(t) for t in self.targets],
                "seconds": self.seconds,
                "runs": runs,
            }
        )


def run_backtest(
    cfg: CtcdConfig,
    scenario: replay_history.Scenario,
    policies: list[str],
    warmup: int | None = None,
    metric: str = "accuracy",
    tolerance: float = 0.02,
    progress: Callable[[str, int, str], None] | None = None,
) -> BacktestResult:
    """Replay `scenario` under each policy (sharing fits) and summarise. `progress(policy, batch, msg)`."""
    import time

    started = time.perf_counter()
    delay = scenario.cfg.dataset.label_delay_batches
    warmup = warmup or max(4, delay + 1)
    device = training.choose_device(cfg.training.device)
    cache = replay_registry.FitCache()
    runs: dict[str, replay.PolicyRun] = {}
    done_by_every: dict[tuple[int, str], str] = {}
    for p in policies:
        every = replay.schedule_every(p, scenario.timeline)
        key = (every or 0, replay_rollout.split_policy(p)[1])
        if every is not None and key in done_by_every:  # daily is every-1, weekly every-7 or every-1
            same = runs[done_by_every[key]]
            runs[p] = replay.PolicyRun(
                p, same.accuracy, same.metric, same.served_by, same.trainings, online=same.online
            )
            if progress:
                progress(p, len(scenario.days), f"same schedule as {done_by_every[key]}")
            continue
        runs[p] = replay.replay(
            scenario,
            p,
            warmup,
            cache,
            device,
            on_day=(lambda d, m, p=p: progress(p, d, m)) if progress else None,
        )
        if every is not None:
            done_by_every[key] = p
    levels = scoring.reference_levels(runs.values(), scenario, metric)
    summaries = {p: scoring.summarize(r, scenario, tolerance, levels, metric) for p, r in runs.items()}
    return BacktestResult(
        scenario=scenario.name,
        batches=[d.batch_id for d in scenario.days],
        metric=metric,
        warmup=warmup,
        label_delay=delay,
        runs=runs,
        summaries=summaries,
        tradeoff=scoring.tradeoff(summaries, metric, ALPHAS),
        frontier=frontier(summaries, metric),
        targets=check_targets(summaries, scenario, metric) if "ctcd" in summaries else [],
        onsets=scenario.onsets,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetCheck:
    """One acceptance target, judged on the ctcd policy."""

    name: str
    passed: bool
    detail: str


def frontier(summaries: dict[str, scoring.PolicySummary], metric: str) -> list[tuple[str, int, float]]:
    """(policy, trainings, mean score) of `never` and every fixed schedule, fewest trainings first."""
    fixed = [p for p in summaries if p == "never" or replay.EVERY_K.match(p)]
    # daily and weekly only where no every-k of the same trainings and score stands for them
    seen = {(summaries[p].trainings, scoring.judged(summaries[p], metric)) for p in fixed}
    fixed += [
        p
        for p in ("daily", "weekly")
        if p in summaries and (summaries[p].trainings, scoring.judged(summaries[p], metric)) not in seen
    ]
    return sorted(
        ((p, summaries[p].trainings, scoring.judged(summaries[p], metric)) for p in fixed),
        key=lambda x: (x[1], x[0]),
    )


def check_targets(
    summaries: dict[str, scoring.PolicySummary],
    scenario: replay_history.Scenario,
    metric: str,
    max_training_share: float = 0.15,
) -> list[TargetCheck]:
    """The acceptance targets for `ctcd`: vs every-batch retraining and concept-drift recovery (histories
    with known onsets), above the frontier of fixed schedules, and no worse model promoted."""
    ctcd = summaries["ctcd"]
    mine = scoring.judged(ctcd, metric)
    checks: list[TargetCheck] = []
    every1 = summaries.get("every-1") or summaries.get("daily")
    if scenario.onsets and every1 is not None:
        share = ctcd.trainings / every1.trainings if every1.trainings else math.inf
        checks.append(
            TargetCheck(
                "metric and trainings vs every batch",
                mine >= scoring.judged(every1, metric) and share <= max_training_share,
                f"mean {metric} {mine:.4f} vs {scoring.judged(every1, metric):.4f} (must be >=), "
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
