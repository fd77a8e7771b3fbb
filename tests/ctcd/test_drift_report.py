"""The Evidently seam: fast per-column tests agree with Evidently's Report; the HTML report; retention."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ctcd import drift_report

KINDS = {"a": "numerical", "b": "numerical", "grade": "categorical"}


def frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "a": rng.normal(shift, 1, n),
            "b": rng.normal(0, 1, n),
            "grade": rng.choice([1, 2, 3], n, p=[0.6, 0.3, 0.1] if not shift else [0.2, 0.3, 0.5]),
        }
    )


def drift_table(html: str) -> dict[str, str]:
    """The per-column table of a saved report as the page shows it: column -> Detected | Not Detected."""
    rows = re.findall(r'"column_name": "([^"]+)".{0,4000}?"data_drift": "([^"]+)"', html)
    return dict(rows)


@pytest.fixture(scope="module")
def snapshot():
    return drift_report.build_report(
        frame(1500, 1),
        frame(800, 2, shift=0.8),
        KINDS,
        {"numerical": "wasserstein", "categorical": "jensenshannon"},
        {"a": 0.1, "b": 0.1, "grade": 0.1},
        drift_share=0.3,
        extra={"b": ("numerical", "ks", 0.05)},
    )


@pytest.mark.parametrize(
    ("methods", "ref_rows", "expected"),
    [
        (
            {"numerical": "wasserstein", "categorical": "jensenshannon"},
            1500,
            ["wasserstein", "jensenshannon"],
        ),
        # "auto" below 1000 reference rows: Evidently picks p-value tests (drift when the p-value is low).
        ({"numerical": None, "categorical": None}, 600, ["ks", "chisquare"]),
    ],
)
def test_column_drift_matches_evidentlys_report(methods, ref_rows, expected):
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    reference, current = frame(ref_rows, 3), frame(700, 4, shift=0.8)
    thresholds = dict.fromkeys(KINDS) if methods["numerical"] is None else dict.fromkeys(KINDS, 0.1)
    fast = {c.column: c for c in drift_report.column_drift(reference, current, KINDS, methods, thresholds)}
    assert [fast["a"].method, fast["grade"].method] == expected
    assert {c for c, r in fast.items() if r.drifted} == {"a", "grade"}

    definition = DataDefinition(numerical_columns=["a", "b"], categorical_columns=["grade"])
    metrics = [ValueDrift(column=c, method=fast[c].method, threshold=fast[c].threshold) for c in KINDS]
    snap = Report(metrics, include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    values = [m["value"] for m in snap.dict()["metrics"]]
    assert values == pytest.approx([fast[c].score for c in KINDS])
    statuses = [t["status"] for t in snap.dict()["tests"]]
    assert statuses == ["FAIL" if fast[c].drifted else "SUCCESS" for c in KINDS]


def test_column_drift_skips_columns_without_values():
    current = frame(300, 5)
    current["b"] = np.nan
    tests = drift_report.column_drift(frame(300, 6), current, KINDS, {"numerical": "ks"}, {})
    assert [t.column for t in tests] == ["a", "grade"]


def test_report_html_shows_the_drifted_features(snapshot, tmp_path):
    path = drift_report.save_report(snapshot, tmp_path, datetime.now(UTC), keep=5)
    html = path.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith(("<html", "<!doctype html"))
    assert drift_table(html) == {"a": "Detected", "grade": "Detected", "b": "Not Detected"}
    assert "Drift is detected for 66.667% of columns (2 out of 3)." in html
    summary = drift_report.report_summary(snapshot)
    names = [m["metric"] for m in summary["metrics"]]
    assert any("DriftedColumnsCount" in n for n in names)
    assert any(n.startswith("ValueDrift(column=b,method=ks") for n in names)
    failed = {t["test"] for t in summary["tests"] if t["status"] == "FAIL"}
    assert any("column a" in t for t in failed) and any("column grade" in t for t in failed)


def test_retention_keeps_the_newest_reports(snapshot, tmp_path):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    (tmp_path / "unrelated.html").write_text("keep me")
    paths = [
        drift_report.save_report(snapshot, tmp_path, start + timedelta(hours=h), keep=2) for h in range(4)
    ]
    assert sorted(tmp_path.glob("drift-*.html")) == paths[2:]
    assert (tmp_path / "unrelated.html").exists()


def test_an_unknown_method_is_a_config_error():
    from ctcd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"drift\.numerical_method 'wassersteinn'"):
        drift_report.column_drift(frame(50, 1), frame(50, 2), KINDS, {"numerical": "wassersteinn"}, {})
