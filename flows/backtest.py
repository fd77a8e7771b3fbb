"""`ctcd backtest`: replay a history under several retraining policies and report what each would have done.

Runs `flows/replay.py` (the CT steps of `tasks/ct_steps.py` with a simulated clock and an in-memory
registry) once per policy, sharing fits between policies that train on the same window, then summarises:
mean score per policy, trainings and their cost, gate outcomes, recovery, the accuracy-vs-cost trade-off,
the frontier of fixed schedules (every k batches, k = 1..8) and the acceptance targets. Outputs a text
table, JSON, and a timeline plot (PNG and HTML). No Prefect, MLflow or server.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from ctcd.config import CtcdConfig
from ctcd.errors import ConfigError, UsageError
from flows import replay
from tasks import training

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
) -> replay.Scenario:
    """The history to replay: the built-in stream, river's SEA, or the batches of `dataset.source`."""
    if history == "auto":
        history = "source" if cfg.dataset.source is not None else "stream"
    if history == "stream":
        if cfg.stream is None:
            raise ConfigError("--history stream: the config has no `stream:` section")
        return replay.agrawal_scenario(
            cfg, batches or cfg.stream.days, rows_per_batch or cfg.stream.rows_per_day
        )
    if history == "sea":
        return replay.sea_scenario(
            cfg, batches or 40, rows_per_batch or 2000, SEA_SCHEDULE, SEA_NOISE, SEA_SEED
        )
    return replay.source_scenario(cfg, batches)


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
    summaries: dict[str, replay.PolicySummary]
    tradeoff: dict[str, float]
    frontier: list[tuple[str, int, float]]
    targets: list[replay.TargetCheck]
    onsets: list[replay.Onset]
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
    scenario: replay.Scenario,
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
    cache = replay.FitCache()
    runs: dict[str, replay.PolicyRun] = {}
    done_by_every: dict[int, str] = {}
    for p in policies:
        every = replay.schedule_every(p, scenario.timeline)
        if every is not None and every in done_by_every:  # daily is every-1, weekly every-7 or every-1
            same = runs[done_by_every[every]]
            runs[p] = replay.PolicyRun(p, same.accuracy, same.metric, same.served_by, same.trainings)
            if progress:
                progress(p, len(scenario.days), f"same schedule as {done_by_every[every]}")
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
            done_by_every[every] = p
    levels = replay.reference_levels(runs.values(), scenario, metric)
    summaries = {p: replay.summarize(r, scenario, tolerance, levels, metric) for p, r in runs.items()}
    return BacktestResult(
        scenario=scenario.name,
        batches=[d.batch_id for d in scenario.days],
        metric=metric,
        warmup=warmup,
        label_delay=delay,
        runs=runs,
        summaries=summaries,
        tradeoff=replay.tradeoff(summaries, metric, ALPHAS),
        frontier=replay.frontier(summaries, metric),
        targets=replay.check_targets(summaries, scenario, metric) if "ctcd" in summaries else [],
        onsets=scenario.onsets,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- text


def _f(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table_rows(result: BacktestResult) -> tuple[list[str], list[list[str]]]:
    """The per-policy table: header and rows."""
    labels = [o.label for o in result.onsets]
    head = ["policy", f"mean {result.metric}"]
    other = "accuracy" if result.metric != "accuracy" else next(iter(result.summaries.values())).metric_name
    head += [f"mean {other}", "trainings", "train s", "CPU s", "GPU s", "cost", "promoted", "rejected"]
    head += ["worse promoted"] + [f"recov {lb}" for lb in labels] + ["recovery (detected)", "acc-α·cost AUC"]
    rows = []
    for p, s in result.summaries.items():
        mine = replay.judged(s, result.metric)
        theirs = s.mean_metric if result.metric == "accuracy" else s.mean_accuracy
        rec = [
            (
                "-"
                if s.pre_drift[lb] is None
                else ("not rec." if s.recovery[lb] is None else str(s.recovery[lb]))
            )
            for lb in labels
        ]
        episodes = (
            ", ".join(
                f"@{result.batches[e.onset - 1]}: {'not rec.' if e.recovery is None else e.recovery}"
                for e in s.episodes
            )
            or "-"
        )
        rows.append(
            [
                p,
                _f(mine),
                _f(theirs),
                str(s.trainings),
                _f(s.training_seconds, 1),
                _f(s.cpu_seconds, 1),
                _f(s.gpu_seconds, 1),
                _f(s.money, 5),
                str(s.promotions),
                str(s.rejected + s.failed),
                str(s.worse_promotions),
                *rec,
                episodes if p == "ctcd" else "-",
                _f(result.tradeoff[p]),
            ]
        )
    return head, rows


def text_report(result: BacktestResult) -> str:
    """The plain-text report: table, frontier, targets."""
    head, rows = table_rows(result)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = [
        f"{result.scenario}: {len(result.batches)} batches ({result.batches[0]} .. {result.batches[-1]}), "
        f"labels {result.label_delay} batch(es) late, first champion trained on batch {result.warmup}; "
        f"judged on mean {result.metric} per served batch",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    ctcd = result.summaries.get("ctcd")
    lines.append("")
    lines.append(f"frontier (fixed schedules, trainings -> mean {result.metric}):")
    for p, n, v in result.frontier:
        lines.append(f"  {p:<8} {n:>3} trainings  {v:.4f}")
    if ctcd is not None:
        lines.append(f"  ctcd     {ctcd.trainings:>3} trainings  {replay.judged(ctcd, result.metric):.4f}")
    lines.append("")
    lines.append("targets:")
    for t in result.targets:
        lines.append(f"  {'PASS' if t.passed else 'FAIL'}  {t.name}: {t.detail}")
    lines.append(
        "cost: training CPU/GPU seconds at training.cost_per_cpu_hour / cost_per_gpu_hour; "
        "acc-α·cost AUC: mean "
        f"of {result.metric} - α·(cost / the costliest policy's) over α in [0, 0.1]"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def write_plots(result: BacktestResult, out: Path) -> list[Path]:
    """timeline.png (matplotlib) and timeline.html (plotly): score per batch per policy, trainings and
    promotions marked, and the frontier of fixed schedules with ctcd on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out.mkdir(parents=True, exist_ok=True)
    main = [p for p in result.runs if not p.startswith("every-")] or list(result.runs)
    fig, (ax, fx) = plt.subplots(1, 2, figsize=(15, 5), gridspec_kw={"width_ratios": [3, 1]})
    html = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], subplot_titles=("timeline", "frontier"))
    for p in main:
        r = result.runs[p]
        values = replay.scores(r, result.metric)
        xs = sorted(values)
        (line,) = ax.plot(xs, [values[d] for d in xs], label=p, lw=2.2 if p == "ctcd" else 1.2)
        html.add_trace(
            go.Scatter(
                x=[result.batches[d - 1] for d in xs], y=[values[d] for d in xs], name=p, mode="lines"
            ),
            row=1,
            col=1,
        )
        for t in r.trainings:
            y = values.get(t.day + 1, values.get(t.day))
            if y is None:
                continue
            marker = "o" if t.served else "x"
            ax.plot([t.day], [y], marker, color=line.get_color(), ms=6 if t.served else 5)
        promoted = [t for t in r.trainings if t.served]
        rejected = [t for t in r.trainings if not t.served]
        for group, symbol, what in ((promoted, "circle", "promoted"), (rejected, "x", "not promoted")):
            pts = [(t, values.get(t.day + 1, values.get(t.day))) for t in group]
            pts = [(t, y) for t, y in pts if y is not None]
            if pts:
                html.add_trace(
                    go.Scatter(
                        x=[result.batches[t.day - 1] for t, _ in pts],
                        y=[y for _, y in pts],
                        mode="markers",
                        marker={"symbol": symbol, "size": 8},
                        name=f"{p}: trained, {what}",
                        text=[f"{t.reason}: {t.summary}" for t, _ in pts],
                    ),
                    row=1,
                    col=1,
                )
    for o in result.onsets:
        ax.axvline(o.day, color="grey", ls=":", lw=1)
        html.add_vline(x=result.batches[o.day - 1], line_dash="dot", line_color="grey", row=1, col=1)
    ax.set_xlabel("batch (o: trained and promoted, x: trained, not promoted)")
    ax.set_ylabel(result.metric)
    ax.set_title(result.scenario)
    ax.legend(fontsize=8)
    fx_x = [n for _, n, _ in result.frontier]
    fx_y = [v for _, _, v in result.frontier]
    fx.plot(fx_x, fx_y, "o-", color="grey", label="never / every k batches")
    for p, n, v in result.frontier:
        fx.annotate(p, (n, v), fontsize=7)
    html.add_trace(
        go.Scatter(
            x=fx_x, y=fx_y, mode="lines+markers+text", text=[p for p, _, _ in result.frontier], name="fixed"
        ),
        row=1,
        col=2,
    )
    if "ctcd" in result.summaries:
        s = result.summaries["ctcd"]
        fx.plot([s.trainings], [replay.judged(s, result.metric)], "*", ms=14, color="red", label="ctcd")
        html.add_trace(
            go.Scatter(
                x=[s.trainings],
                y=[replay.judged(s, result.metric)],
                mode="markers",
                marker={"size": 14, "symbol": "star"},
                name="ctcd (frontier)",
            ),
            row=1,
            col=2,
        )
    fx.set_xlabel("trainings")
    fx.set_ylabel(f"mean {result.metric}")
    fx.set_title("frontier")
    fx.legend(fontsize=8)
    fig.tight_layout()
    png, page = out / "timeline.png", out / "timeline.html"
    fig.savefig(png, dpi=110)
    plt.close(fig)
    html.update_layout(title=result.scenario, height=520)
    html.write_html(page, include_plotlyjs=True)
    return [png, page]


def write_json(result: BacktestResult, out: Path) -> Path:
    """backtest.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "backtest.json"
    path.write_text(json.dumps(result.to_json(), indent=2, default=str), encoding="utf-8")
    return path
