"""Text categories and a yes/no target end to end: train -> register in MLflow -> a real `bentoml serve`
answers rows with text categories -> the prediction log keeps them -> monitoring signals on arrived labels.

The shop dataset (tests/tasks/test_real_data_types.py) has a feature named `day`, text categories (color,
store), an int-coded one (channel) and the target `bought` with positive_label "yes".
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from ctcd import model_ref, registry, tracking
from ctcd.config import CtcdConfig, load_config
from ctcd.net import free_port
from ctcd.prediction_log import read_predictions
from ctcd.workspace import Workspace
from tasks import drift, evaluation, training
from tasks.model import features_frame
from tests.tasks.test_real_data_types import CHANNELS, COLORS, STORES, shop_config, shop_day, shop_split

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

API_KEY_ENV = "CTCD_TEST_SHOP_KEY"
AUTH = {"Authorization": "Bearer shop-key"}


def write_suite(path: Path) -> Path:
    """The data contract: the allowed categories and the price range."""
    sets = {"color": list(COLORS), "store": list(STORES), "channel": list(CHANNELS)}
    expectations = [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": c, "value_set": v}}
        for c, v in sets.items()
    ] + [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "price", "min_value": 0, "max_value": 100},
        }
    ]
    path.write_text(json.dumps({"name": "shop", "expectations": expectations}), encoding="utf-8")
    return path


def write_config(cfg: CtcdConfig, path: Path) -> CtcdConfig:
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return load_config(path)


def train_and_register(cfg: CtcdConfig, ws: Workspace) -> tuple[registry.ModelRef, pd.DataFrame]:
    """Fit a candidate on the shop days, register it and make it champion; return it and the test rows."""
    split = shop_split(cfg)
    best = training.search(cfg, split, training.choose_device("cpu")).best
    report, _ = evaluation.evaluate(best.model, split.test, cfg)
    run = tracking.CandidateRun(
        model=best.model,
        params={"model.kind": "xgboost"},
        metrics=evaluation.flat_metrics(report),
        evaluation=report.model_dump(mode="json"),
        reference=evaluation.reference_sample(best.model, split.train, cfg, cfg.training.reference_rows),
        input_example=features_frame(split.test.head(5), cfg.dataset),
        batches=[],
        config_yaml=yaml.safe_dump(cfg.model_dump(mode="json")),
    )
    ref = registry.Registry(cfg, ws).log_candidate(run)
    registry.Registry(cfg, ws).move_alias(registry.CHAMPION, ref, reason="test")
    return ref, split.test


def request_rows(frame: pd.DataFrame) -> list[dict]:
    """JSON rows as a client copies them from a data file: with the target and timestamp columns too."""
    rows = []
    for r in frame.to_dict("records"):
        rows.append(
            {
                "visit_id": r["visit_id"],
                "visited_at": pd.Timestamp(r["visited_at"]).isoformat(),
                "price": float(r["price"]),
                "day": int(r["day"]),
                "color": str(r["color"]),
                "store": str(r["store"]),
                "channel": int(r["channel"]),
                "bought": r["bought"],
            }
        )
    return rows


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, default_config: CtcdConfig):
    """A champion trained on the shop data in a fresh workspace, and a real server for it."""
    from ctcd.serving.server import start_server

    root = tmp_path_factory.mktemp("shop")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        mp.setenv(API_KEY_ENV, "shop-key")
        base = shop_config(default_config, suite=str(write_suite(root / "suite.json")))
        serving = base.serving.model_copy(
            update={"port": free_port(), "api_key_env": API_KEY_ENV, "log_flush_seconds": 3600}
        )
        cfg = write_config(base.model_copy(update={"serving": serving}), root / "shop.yaml")
        ws = Workspace.open(root / "home")
        ref, test = train_and_register(cfg, ws)
        handle = start_server(cfg, ws, cfg.serving.port)
        try:
            yield cfg, ws, ref, test, handle, root
        finally:
            handle.stop()


def test_the_registered_model_takes_text_categories(shop):
    cfg, ws, ref, _, _, _ = shop
    assert registry.Registry(cfg, ws).text_categories(ref) == {"color": True, "store": True, "channel": False}
    model = registry.Registry(cfg, ws).load_model(ref)
    assert model_ref.positive_class_index(cfg, ref, model) == 1


def test_rows_with_unknown_categories_are_refused_naming_column_and_value(shop):
    _, _, _, test, handle, _ = shop
    row = request_rows(test.head(1))[0]
    unknown = httpx.post(
        f"{handle.url}/predict", json={"rows": [{**row, "color": "purple"}]}, headers=AUTH, timeout=60
    )
    assert unknown.status_code == 400
    assert "color" in unknown.text and "purple" in unknown.text, unknown.text
    extra = httpx.post(f"{handle.url}/predict", json={"rows": [{**row, "coupon": "x"}]}, headers=AUTH)
    assert extra.status_code == 400 and "coupon" in extra.text
    as_number = httpx.post(f"{handle.url}/predict", json={"rows": [{**row, "color": 3}]}, headers=AUTH)
    assert as_number.status_code == 400


def test_served_text_categories_reach_the_log_and_monitoring(shop):
    cfg, ws, ref, test, handle, _ = shop
    ds = cfg.dataset
    live = pd.concat([test, shop_day(300, 9)], ignore_index=True)
    rows = request_rows(live)
    response = httpx.post(f"{handle.url}/predict_batch", json={"rows": rows}, headers=AUTH, timeout=120)
    assert response.status_code == 200, response.text
    answers = response.json()

    model = registry.Registry(cfg, ws).load_model(ref)
    expected = model.predict_proba(features_frame(live, ds))[:, 1]
    np.testing.assert_allclose([a["probability"] for a in answers], expected, atol=1e-6)
    assert [a["prediction"] for a in answers] == [int(p >= 0.5) for p in expected]
    assert [a["visit_id"] for a in answers] == live["visit_id"].tolist()

    handle.stop()  # flushes the prediction log
    log = read_predictions(ws)
    assert len(log) == len(live)
    assert log["color"].tolist() == live["color"].tolist() and log["store"].dtype == object
    assert log["channel"].tolist() == live["channel"].astype(float).tolist()
    assert log["day"].tolist() == live["day"].astype(float).tolist()
    assert "bought" not in log and "visited_at" not in log  # accepted and ignored

    labels = live[["visit_id", "bought"]]
    labelled = drift.labelled_predictions(log, labels, ds)
    assert len(labelled) == len(live)
    today = datetime.now(UTC).date()
    evaluation_metrics = registry.Registry(cfg, ws).load_evaluation(ref)["metrics"]
    baseline = {k: v for k, v in evaluation_metrics.items() if isinstance(v, int | float)}
    policy = cfg.drift.model_copy(update={"min_labelled_rows": 100})
    signals = drift.compute_signals(
        registry.Registry(cfg, ws).load_reference(ref),
        log,
        labelled,
        baseline,
        ds,
        policy,
        (str(today), str(today)),
        ref.version,
    )
    truth = (live["bought"] == "yes").astype(int)
    accuracy = float(((expected >= 0.5).astype(int) == truth).mean())
    assert signals.performance.evaluated
    assert signals.performance.metrics["accuracy"] == pytest.approx(accuracy)
    assert accuracy > 0.85 and not signals.performance.fired
    assert signals.prior_shift.evaluated and abs(signals.prior_shift.change) < 0.1
    assert {c.column for c in signals.covariate_shift.columns} == set(ds.features)
    assert signals.prediction_drift.evaluated
    assert isinstance(date.fromisoformat(str(signals.window_end)), date)


def test_warn_policy_serves_an_unknown_category_and_logs_it(shop):
    from ctcd.serving.server import start_server

    cfg, ws, ref, test, _, root = shop
    serving = cfg.serving.model_copy(update={"port": free_port(), "unknown_category": "warn"})
    warn_cfg = write_config(cfg.model_copy(update={"serving": serving}), root / "shop-warn.yaml")
    handle = start_server(warn_cfg, ws, warn_cfg.serving.port, version=ref.version, log_predictions=False)
    try:
        row = request_rows(test.head(1))[0]
        response = httpx.post(
            f"{handle.url}/predict", json={"rows": [{**row, "color": "purple"}]}, headers=AUTH, timeout=60
        )
        assert response.status_code == 200, response.text
        assert 0.0 <= response.json()[0]["probability"] <= 1.0
        wanted = "outside the data contract"
        deadline = time.monotonic() + 10
        while wanted not in handle.log_path.read_text(encoding="utf-8") and time.monotonic() < deadline:
            time.sleep(0.2)
        log = handle.log_path.read_text(encoding="utf-8")
        line = next((x for x in log.splitlines() if wanted in x), "")
        assert "color" in line and "purple" in line, log[-2000:]
    finally:
        handle.stop()
