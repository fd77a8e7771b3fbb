"""Benchmark: the data gate (GX checkpoint) on 1M rows x the default suite vs. pandas doing the same checks.

Run: `.venv/bin/python benchmarks/bench_data_gate.py [--rows N] [--repeat K]`.

Both sides evaluate every expectation of `configs/expectations/agrawal-loans.json` (the row-count bounds are
scaled to the batch size, since the shipped suite expects ~2000 rows a day). The pandas peer interprets the
same suite dict with vectorized operations. Times are the best of K runs, in one process, on one batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent


def _within(x: Any, kw: dict[str, Any]) -> Any:
    """x inside [min_value, max_value]; a None bound is open (as in GX)."""
    low = -np.inf if kw.get("min_value") is None else kw["min_value"]
    high = np.inf if kw.get("max_value") is None else kw["max_value"]
    return (x >= low) & (x <= high)


def pandas_checks(df: pd.DataFrame, suite: dict[str, Any]) -> list[bool]:
    """Every expectation of the suite as a vectorized pandas check (the peer); True where it passes."""
    out = []
    for e in suite["expectations"]:
        kind, kw = e["type"], e["kwargs"]
        col = df[kw["column"]] if "column" in kw and kw["column"] in df.columns else None
        if kind == "expect_table_columns_to_match_set":
            ok = set(df.columns) == set(kw["column_set"])
        elif kind == "expect_table_row_count_to_be_between":
            ok = _within(len(df), kw)
        elif col is None:
            ok = False
        elif kind == "expect_column_values_to_be_in_type_list":
            ok = any(col.dtype == _dtype(t) for t in kw["type_list"] if _dtype(t) is not None)
        elif kind == "expect_column_values_to_be_of_type":
            ok = isinstance(col.dtype, pd.DatetimeTZDtype)
        elif kind == "expect_column_values_to_not_be_null":
            ok = 1 - col.isna().mean() >= kw.get("mostly", 1.0)
        elif kind == "expect_column_values_to_be_unique":
            ok = not col.dropna().duplicated().any()
        elif kind == "expect_column_values_to_be_in_set":
            ok = bool(col.dropna().isin(kw["value_set"]).mean() >= kw.get("mostly", 1.0))
        elif kind == "expect_column_values_to_be_between":
            v = col.to_numpy(dtype="float64", na_value=np.nan)
            v = v[~np.isnan(v)]
            ok = bool(_within(v, kw).mean() >= kw.get("mostly", 1.0)) if len(v) else True
        elif kind == "expect_column_mean_to_be_between":
            ok = kw["min_value"] <= col.mean() <= kw["max_value"]
        elif kind == "expect_column_stdev_to_be_between":
            ok = kw["min_value"] <= col.std() <= kw["max_value"]
        else:
            raise ValueError(f"no pandas peer for {kind}")
        out.append(bool(ok))
    return out


def _dtype(name: str) -> Any:
    try:
        return np.dtype(name)
    except TypeError:
        cls = getattr(pd, name, None)
        try:
            return cls() if cls is not None else None
        except TypeError:
            return None


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of `repeat` timed calls, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def alternate(repeat: int, first: Callable[[], Any], second: Callable[[], Any]) -> tuple[Any, ...]:
    """Time two calls in turn `repeat` times: the fastest of each, and their last results."""
    best = [float("inf"), float("inf")]
    results: list[Any] = [None, None]
    for _ in range(repeat):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            results[i] = fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], results[0], best[1], results[1]


def gx_own_paths(gate: Any, frame: pd.DataFrame) -> bool:
    """What `DataGate.validate` did before ctcd's per-run patches: the same checkpoint, GX's freshness
    checks, expectation configurations and result serialization, the Data Docs URL through the context."""
    from great_expectations.validator.validator import Validator

    patched = Validator.graph_validate
    Validator.graph_validate = patched.__wrapped__  # GX's own: configurations built on every access
    try:
        gate.prune(gate.keep_results - 1)
        run = gate.gate.run(batch_parameters={"dataframe": frame})  # outside validate: GX's freshness checks
        identifier, result = next(iter(run.run_results.items()))
        result.to_json_dict()
        gate.context.get_docs_sites_urls(
            resource_identifier=identifier, site_name="local_site", only_if_exists=False
        )
    finally:
        Validator.graph_validate = patched
    return bool(run.success)


def main() -> None:
    """Time both sides and print the times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from ctcd.config import load_config
    from ctcd.stream.scenario import generate_day
    from ctcd.workspace import Workspace

    cfg = load_config(REPO / "configs" / "default.yaml")
    big = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"rows_per_day": args.rows})})
    t0 = time.perf_counter()
    clean = generate_day(big, 2).features
    took = time.perf_counter() - t0
    print(f"batch: {len(clean):,} rows x {clean.shape[1]} columns (generated in {took:.1f} s)")

    suite = json.loads(cfg.gates.data.suite.read_text(encoding="utf-8"))
    for e in suite["expectations"]:
        if e["type"] == "expect_table_row_count_to_be_between" and e["severity"] == "warning":
            e["kwargs"] = {"min_value": args.rows // 2, "max_value": args.rows * 2}
    print(f"suite: {len(suite['expectations'])} expectations ({cfg.gates.data.suite.name}, row count scaled)")
    broken = clean.copy()
    broken.loc[broken.index[::3], "commission"] = np.nan

    t0 = time.perf_counter()
    from ctcd import gx_gate

    gx = gx_gate._gx()
    print(f"import great_expectations: {time.perf_counter() - t0:.1f} s (once per process, not per batch)")
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp))
        t0 = time.perf_counter()
        gate = gx_gate.DataGate(ws, copy.deepcopy(suite), keep_results=50)
        print(f"open the gate (file context, suite, checkpoints): {time.perf_counter() - t0:.2f} s")

        t_pd, ok_pd = best_of(args.repeat, lambda: pandas_checks(clean, suite))
        # The gate as shipped and the same checkpoint through GX's own per-run paths (before ctcd's
        # per-run patches), alternating so that both see the same load.
        t_gate, run, t_before, before = alternate(
            args.repeat, lambda: gate.validate(clean, "clean"), lambda: gx_own_paths(gate, clean)
        )
        assert all(ok_pd) and run.success and before, "the clean batch must pass"
        t_pd_bad, ok_bad = best_of(args.repeat, lambda: pandas_checks(broken, suite))
        t_gate_bad, run_bad = best_of(args.repeat, lambda: gate.validate(broken, "broken"))
        assert not all(ok_bad) and not run_bad.success and run_bad.detailed

        t_basic, _ = best_of(args.repeat, lambda: gate.details.run(batch_parameters={"dataframe": clean}))
        t0 = time.perf_counter()
        gate.publish_docs()
        t_docs = time.perf_counter() - t0

        import great_expectations.util as gx_util

        shim = gx_util.does_ndarray_contain_decimal_dtype
        gx_util.does_ndarray_contain_decimal_dtype = shim.__closure__[0].cell_contents  # GX's own scan
        try:
            t_noshim, _ = best_of(1, lambda: gate.validate(clean, "no-shim"))
        finally:
            gx_util.does_ndarray_contain_decimal_dtype = shim
        del gx

    print()
    print(f"{'':44}{'seconds':>9}{'x pandas':>10}")
    rows = [
        ("pandas, same checks (clean batch)", t_pd, t_pd),
        ("gate: GX checkpoint BOOLEAN_ONLY (clean)", t_gate, t_pd),
        ("  same, through GX's own per-run paths", t_before, t_pd),
        ("  BASIC details checkpoint, run bare", t_basic, t_pd),
        ("  gate without the Decimal-scan shim", t_noshim, t_pd),
        ("pandas, same checks (failing batch)", t_pd_bad, t_pd_bad),
        ("gate: BOOLEAN_ONLY + BASIC details (failing)", t_gate_bad, t_pd_bad),
        ("Data Docs for the run's pages (once per run)", t_docs, t_pd),
    ]
    for name, t, base in rows:
        print(f"{name:44}{t:9.3f}{t / base:9.1f}x")
    print()
    print(f"ratio gate/pandas on a clean batch: {t_gate / t_pd:.1f}x (target <= 3x)")


if __name__ == "__main__":
    main()
