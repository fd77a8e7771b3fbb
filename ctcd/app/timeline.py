"""The demo's timeline: live accuracy over the simulated days, with what happened marked (PNG + HTML)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ctcd.app.demo import DayRecord
    from ctcd.config import CtcdConfig


def drift_onsets(cfg: CtcdConfig) -> list[tuple[int, str]]:
    """(day, label) of every scheduled scenario event of the built-in stream."""
    if cfg.stream is None:
        return []
    return [(e.day, e.kind.replace("_", " ")) for e in cfg.stream.events]


def write_timeline(records: list[DayRecord], cfg: CtcdConfig, out_dir: Path) -> dict[str, Path]:
    """Write `timeline.png` and `timeline.html` into `out_dir`; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "timeline.png"
    days = [r.day for r in records]
    acc = [r.live_accuracy for r in records]
    fig, ax = plt.subplots(figsize=(11, 4.5), dpi=110)
    ax.plot(
        days, [a if a is not None else float("nan") for a in acc], marker="o", ms=3, label="live accuracy"
    )
    for day, label in drift_onsets(cfg):
        if days and day > max(days):
            continue
        ax.axvline(day, color="tab:red", ls="--", lw=1)
        ax.text(day + 0.1, 0.42, label, rotation=90, color="tab:red", fontsize=8, va="bottom")
    late = [r for r in records if r.accuracy_after_replay]
    if late:
        ax.scatter(
            [r.day for r in late],
            [r.live_accuracy for r in late],
            facecolors="white",
            edgecolors="tab:blue",
            zorder=6,
            label="scored with labels due after the replay",
        )
    for r in records:
        if r.batch == "QUARANTINED":
            ax.scatter([r.day], [0.45], marker="x", color="black", zorder=5)
        for t in r.trainings:
            promoted = t["promoted"]
            ax.scatter(
                [r.day],
                [1.01 if promoted else 0.99],
                marker="^" if promoted else "v",
                color="tab:green" if promoted else "tab:gray",
                zorder=5,
            )
    ax.scatter([], [], marker="x", color="black", label="batch quarantined")
    ax.scatter([], [], marker="^", color="tab:green", label="retrain: promoted")
    ax.scatter([], [], marker="v", color="tab:gray", label="retrain: champion kept")
    ax.set_ylim(0.4, 1.03)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("accuracy of served predictions")
    ax.set_title(f"ctcd demo: {cfg.dataset.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)

    page = out_dir / "timeline.html"
    page.write_text(_html(records, png), encoding="utf-8")
    return {"png": png, "html": page}


def _accuracy(r: DayRecord) -> str | None:
    if r.live_accuracy is None:
        return None
    return f"{r.live_accuracy:.3f}" + (" (labels due after the replay)" if r.accuracy_after_replay else "")


def _cell(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _html(records: list[DayRecord], png: Path) -> str:
    image = base64.b64encode(png.read_bytes()).decode("ascii")
    rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{_cell(v)}</td>"
            for v in (
                r.day,
                r.date,
                r.batch,
                r.served,
                r.champion,
                _accuracy(r),
                ", ".join(r.fired),
                r.action,
                "; ".join(
                    f"{t['reason']} -> v{t['version']} ({'promoted' if t['promoted'] else 'kept champion'})"
                    for t in r.trainings
                ),
            )
        )
        + "</tr>"
        for r in records
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>ctcd demo timeline</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}th{{background:#eee}}</style></head>
<body><h1>ctcd demo timeline</h1>
<img alt="live accuracy over the simulated days" src="data:image/png;base64,{image}">
<table><tr><th>day</th><th>date</th><th>batch</th><th>served</th><th>champion</th><th>live accuracy</th>
<th>signals</th><th>monitor action</th><th>trainings</th></tr>
{rows}
</table></body></html>
"""
