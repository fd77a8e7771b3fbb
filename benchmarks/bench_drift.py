"""Drift detection cost: ctcd's monitoring path vs raw scipy vs Evidently's preset, in one run.

100k reference x 100k current rows, 20 numerical + 5 int-coded categorical features, 3 + 1 of them shifted.
Peers, all computing the same per-column statistics (normed Wasserstein for numbers, Jensen-Shannon for
categories, drift at >= 0.1):
- raw scipy: `scipy.stats.wasserstein_distance` / `scipy.spatial.distance.jensenshannon` on numpy arrays;
- ctcd: `tasks.drift.covariate_shift` (Evidently's statistical tests, nothing else: what the policy needs);
- Evidently `DataDriftPreset` in a `Report` (plots, correlations, each column three times), without and
  with rendering the HTML (what a kept report costs).
Run: `.venv/bin/python benchmarks/bench_drift.py [--rows N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

# tasks/ is not packaged: it is found from the project root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ctcd.config import DatasetConfig, DriftPolicyConfig

NUMERICAL = [f"num_{i}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
SHIFTED = {"num_0", "num_1", "num_2", "cat_0"}
DATASET = DatasetConfig(
    name="bench",
    target="target",
    id_column="id",
    numerical_features=NUMERICAL,
    categorical_features=CATEGORICAL,
)
POLICY = DriftPolicyConfig()


def make_frame(rows: int, seed: int, shifted: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for col in NUMERICAL:
        data[col] = rng.normal(0.5 if shifted and col in SHIFTED else 0.0, 1.0, rows)
    for col in CATEGORICAL:
        p = [0.1, 0.2, 0.3, 0.4] if shifted and col in SHIFTED else [0.4, 0.3, 0.2, 0.1]
        data[col] = rng.choice(np.arange(4), rows, p=p)
    return pd.DataFrame(data)


def raw_scipy(reference: pd.DataFrame, current: pd.DataFrame) -> set[str]:
    """The same statistics with scipy directly on numpy arrays."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    drifted = set()
    for col in NUMERICAL:
        ref, cur = reference[col].to_numpy(), current[col].to_numpy()
        if wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001) >= 0.1:
            drifted.add(col)
    for col in CATEGORICAL:
        ref, cur = reference[col].to_numpy(), current[col].to_numpy()
        size = int(max(ref.max(), cur.max())) + 1
        p, q = np.bincount(ref, minlength=size) / len(ref), np.bincount(cur, minlength=size) / len(cur)
        if jensenshannon(p, q) >= 0.1:
            drifted.add(col)
    return drifted


def ctcd_path(reference: pd.DataFrame, current: pd.DataFrame) -> set[str]:
    """What the monitoring flow computes for the policy."""
    from tasks.drift import covariate_shift

    return set(covariate_shift(reference, current, DATASET, POLICY).drifted)


def evidently_preset(reference: pd.DataFrame, current: pd.DataFrame, html: bool) -> set[str]:
    """Evidently's DataDriftPreset, optionally rendered to HTML."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERICAL, categorical_columns=CATEGORICAL)
    report = Report(
        [DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon", threshold=0.1)],
        include_tests=True,
    )
    snap = report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    if html:
        with tempfile.TemporaryDirectory() as tmp:
            snap.save_html(str(Path(tmp) / "report.html"))
    metrics = snap.dict()["metrics"]
    return {m["config"]["column"] for m in metrics if "column" in m.get("config", {}) and m["value"] >= 0.1}


def timed(fn: Callable[[], set[str]], repeats: int) -> tuple[float, set[str]]:
    """Median wall time of `repeats` calls, and the last result."""
    times, result = [], set()
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    import evidently  # noqa: F401  (imported once, outside the timings: ~7 s here)

    print(f"import evidently: {time.perf_counter() - started:.1f} s (not in the timings below)")
    reference = make_frame(args.rows, 1, shifted=False)
    current = make_frame(args.rows, 2, shifted=True)
    print(
        f"{args.rows:,} reference x {args.rows:,} current rows, {len(NUMERICAL)} numerical + "
        f"{len(CATEGORICAL)} categorical columns, median of {args.repeats} runs (preset: 1 run)"
    )

    ctcd_path(reference.head(2000), current.head(2000))  # warm-up: lazy imports
    peers = [
        ("raw scipy (same statistics)", lambda: raw_scipy(reference, current), args.repeats),
        ("ctcd covariate_shift (Evidently tests)", lambda: ctcd_path(reference, current), args.repeats),
        ("Evidently DataDriftPreset, no HTML", lambda: evidently_preset(reference, current, False), 1),
        ("Evidently DataDriftPreset + save_html", lambda: evidently_preset(reference, current, True), 1),
    ]
    results = [(name, *timed(fn, repeats)) for name, fn, repeats in peers]
    base = results[0][1]
    print(f"{'peer':<42} {'seconds':>8} {'x raw':>7}  drifted columns")
    for name, seconds, drifted in results:
        same = "same" if drifted == SHIFTED else f"DIFFERENT: {sorted(drifted)}"
        print(f"{name:<42} {seconds:8.2f} {seconds / base:7.1f}  {same}")


if __name__ == "__main__":
    main()
