"""The backtest's report (`ctcd backtest`): the per-policy table, the frontier and the PASS/FAIL targets as
text, the timeline and frontier plot (PNG with matplotlib, HTML with plotly), and backtest.json.
"""

from __future__ import annotations

import math
from pathlib import Path

from ctcd.app.backtest import BacktestResult
from ctcd.workspace import write_json_atomic
from tasks import replay_scoring as scoring


def _f(v: float | None, digits: int = 4) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table_rows(result: BacktestResult) -> tuple[list[str], list[list[str]]]:
    """The per-policy table: header and rows."""
    labels = [o.label for o in result.onsets]
    head = ["policy", f"mean {result.metric}"]
    other = "accuracy" if result.metric != "accuracy" else next(iter(result.summaries.values())).metric_name
    head += [f"mean {other}", "trainings", "train s", "CPU s", "GPU s", "cost", "promoted", "rejected"]
    head += ["worse promoted"] + [f"recov {lb}" for lb in labels] + ["recovery (detected)", "acc-α·cost AUC"]
    rolling = any(s.rollouts for s in result.summaries.values())
    if rolling:
        head += ["rollouts", "online promoted", "online rejected", "replaced", "promotion delay"]
    rows = []
    for p, s in result.summaries.items():
        mine = scoring.judged(s, result.metric)
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
                episodes if s.episodes else "-",
                _f(result.tradeoff[p]),
            ]
        )
        if rolling:
            rows[-1] += [
                str(s.rollouts),
                str(s.online_promotions),
                str(s.online_rejections),
                str(s.rollouts_replaced),
                "-" if s.promotion_delay is None else f"{s.promotion_delay:.1f}",
            ]
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
        lines.append(f"  ctcd     {ctcd.trainings:>3} trainings  {scoring.judged(ctcd, result.metric):.4f}")
    lines += online_lines(result)
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


def online_lines(result: BacktestResult) -> list[str]:
    """The online gate's decided verdicts of the rollout policies (+shadow, +canary), one line each."""
    lines: list[str] = []
    for p, r in result.runs.items():
        decided = [o for o in r.online if o.action in ("promote", "reject")]
        if not r.online:
            continue
        lines += ["", f"online gate ({p}): {len(decided)} decided, {len(r.online)} verdicts"]
        for o in decided:
            delta = "-" if o.delta is None else f"{o.delta:+.4f}"
            lines.append(
                f"  {o.batch}: {o.action} v{o.candidate} vs v{o.champion} ({o.mode}, trained on "
                f"{result.batches[o.started - 1]}, {o.day - o.started} batches later) on {o.labelled_rows} "
                f"labelled rows, delta {delta}"
            )
    if lines:
        lines.append(
            "promotion delay: mean batches from a rolled-out candidate's training to its online promotion "
            "(a direct promotion serves from the batch after its training)"
        )
    return lines


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
        values = scoring.scores(r, result.metric)
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
            marker = "s" if t.rollout else ("o" if t.served else "x")
            ax.plot([t.day], [y], marker, color=line.get_color(), ms=6 if t.served else 5)
        promoted = [t for t in r.trainings if t.served and not t.rollout]
        rejected = [t for t in r.trainings if not t.served]
        for o in r.online:
            y = values.get(o.day + 1, values.get(o.day))
            if o.action in ("promote", "reject") and y is not None:
                ax.plot([o.day], [y], "^" if o.action == "promote" else "v", color=line.get_color(), ms=8)
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
    ax.set_xlabel(
        "batch (o: trained and promoted, x: trained, not promoted; rollouts: s started, "
        "^ promoted, v rejected online)"
    )
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
        fx.plot([s.trainings], [scoring.judged(s, result.metric)], "*", ms=14, color="red", label="ctcd")
        html.add_trace(
            go.Scatter(
                x=[s.trainings],
                y=[scoring.judged(s, result.metric)],
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
    return write_json_atomic(out / "backtest.json", result.to_json())
