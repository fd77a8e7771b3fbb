"""A real `bentoml serve` of the champion: offline-equal answers, malformed input, API key, prediction log."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from ctcd import registry, tracking
from ctcd.config import CtcdConfig, load_config
from ctcd.net import free_port
from ctcd.prediction_log import read_predictions
from ctcd.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
API_KEY_ENV = "CTCD_TEST_SERVING_KEY"
CATEGORIES = (0, 1, 2)
NUMERIC_MAX = 100.0


def write_project(root: Path, port: int, **serving: object) -> Path:
    """A config like the default one, with a small data contract of our own and the given serving port."""
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text(encoding="utf-8"))
    ds = raw["dataset"]
    expectations = [
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": c, "min_value": 0.0, "max_value": NUMERIC_MAX},
        }
        for c in ds["numerical_features"]
    ] + [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": c, "value_set": list(CATEGORIES)}}
        for c in ds["categorical_features"]
    ]
    suite = root / "suite.json"
    suite.write_text(json.dumps({"name": "serving-test", "expectations": expectations}), encoding="utf-8")
    raw["gates"]["data"]["suite"] = str(suite)
    raw["serving"] = {**raw.get("serving", {}), "port": port, "api_key_env": API_KEY_ENV, **serving}
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def make_rows(cfg: CtcdConfig, n: int, seed: int) -> pd.DataFrame:
    """Valid feature rows (float64) for the config's dataset, inside the test contract."""
    rng = np.random.default_rng(seed)
    ds = cfg.dataset
    data = {c: rng.uniform(0, NUMERIC_MAX, n) for c in ds.numerical_features}
    data |= {c: rng.choice(CATEGORIES, n).astype("float64") for c in ds.categorical_features}
    return pd.DataFrame(data)[ds.features]


def register_version(cfg: CtcdConfig, ws: Workspace, seed: int, classes: tuple[int, int] = (0, 1)):
    """Log and register a small scikit-learn model on the config's features; return its ModelRef."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    registry.Registry.open(cfg, ws)
    x = make_rows(cfg, 300, seed)
    noise = np.random.default_rng(seed).normal(0, 20, len(x))
    y = np.where(x[cfg.dataset.numerical_features[0]] + noise > NUMERIC_MAX / 2, classes[1], classes[0])
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05 * seed)).fit(x, y)
    with mlflow.start_run():
        # The reference sample every version carries (ARCHITECTURE.md); the smoke test scores it.
        reference = x.assign(**{cfg.dataset.id_column: range(len(x)), cfg.dataset.target: y})
        folder = Path(tempfile.mkdtemp())
        reference.to_parquet(folder / Path(tracking.REFERENCE_ARTIFACT).name)
        mlflow.log_artifact(str(folder / Path(tracking.REFERENCE_ARTIFACT).name), artifact_path="reference")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=cfg.registered_model_name,
            signature=infer_signature(x, y),
            pip_requirements=["scikit-learn"],  # skips MLflow's slow requirement inference
        )
    return registry.Registry(cfg, ws).version(info.registered_model_version)


def json_rows(cfg: CtcdConfig, frame: pd.DataFrame, ids: list[str] | None = None) -> list[dict]:
    """Request rows: categorical values as JSON ints, an optional id per row."""
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        row = {k: (int(v) if k in cfg.dataset.categorical_features else float(v)) for k, v in record.items()}
        if ids is not None:
            row[cfg.dataset.id_column] = ids[i]
        rows.append(row)
    return rows


def offline(cfg: CtcdConfig, ws: Workspace, ref, frame: pd.DataFrame) -> np.ndarray:
    """The registered model's probability of the positive label, in this process."""
    model = registry.Registry(cfg, ws).load_model(ref)
    column = list(model.classes_).index(cfg.dataset.positive_label)
    return model.predict_proba(frame.astype("float64"))[:, column]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A champion in a fresh workspace and a real server for it (flushes its log only on shutdown)."""
    from ctcd.serving.server import start_server

    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        mp.setenv(API_KEY_ENV, "s3cret-key")
        config = write_project(root, free_port(), log_flush_seconds=3600, log_flush_rows=100_000)
        cfg = load_config(config)
        ws = Workspace.open(root / "home")
        ref = register_version(cfg, ws, seed=1)
        registry.Registry(cfg, ws).move_alias(registry.CHAMPION, ref, reason="test")
        handle = start_server(cfg, ws, cfg.serving.port)
        try:
            yield cfg, ws, ref, handle
        finally:
            handle.stop()


AUTH = {"Authorization": "Bearer s3cret-key"}


def test_answers_equal_offline_predictions_via_client_and_http(served):
    import bentoml

    cfg, ws, ref, handle = served
    frame = make_rows(cfg, 25, seed=7)
    expected = offline(cfg, ws, ref, frame)

    with bentoml.SyncHTTPClient(handle.url, token="s3cret-key") as client:
        via_client = client.predict(rows=json_rows(cfg, frame))
    plain = httpx.post(f"{handle.url}/predict_batch", json={"rows": json_rows(cfg, frame)}, headers=AUTH)
    assert plain.status_code == 200, plain.text
    for answers in (via_client, plain.json()):
        answers = [a if isinstance(a, dict) else a.model_dump() for a in answers]
        np.testing.assert_allclose([a["probability"] for a in answers], expected, rtol=0, atol=1e-9)
        assert {a["model_version"] for a in answers} == {ref.version}
        assert [a["prediction"] for a in answers] == [int(p >= 0.5) for p in expected]
        assert len({a["request_id"] for a in answers}) == len(frame)


def test_probes_and_model_endpoint_answer(served):
    cfg, _, ref, handle = served
    assert httpx.get(f"{handle.url}/healthz").status_code == 200
    assert httpx.get(f"{handle.url}/readyz").status_code == 200
    info = httpx.get(f"{handle.url}/model").json()
    assert (info["version"], info["pinned"], info["reload_error"]) == (ref.version, False, None)
    httpx.post(f"{handle.url}/predict", json={"rows": json_rows(cfg, make_rows(cfg, 1, 3))}, headers=AUTH)
    metrics = httpx.get(f"{handle.url}/metrics")
    assert metrics.status_code == 200 and "ctcd_scoring_batch_rows_count" in metrics.text


def _valid_row(cfg: CtcdConfig) -> dict:
    return json_rows(cfg, make_rows(cfg, 1, seed=11))[0]


def _malformed_cases(cfg: CtcdConfig) -> dict[str, tuple[dict, bytes | None, int]]:
    num, cat = cfg.dataset.numerical_features[0], cfg.dataset.categorical_features[0]
    row = _valid_row(cfg)
    missing = {k: v for k, v in row.items() if k != num}
    as_json = {"content-type": "application/json", **AUTH}

    def body(rows_text: str) -> bytes:
        return ('{"rows": [' + rows_text + "]}").encode()

    row_text = json.dumps({k: v for k, v in row.items() if k != num})[1:-1]
    return {
        "missing field": (as_json, json.dumps({"rows": [missing]}).encode(), 400),
        "wrong type": (as_json, json.dumps({"rows": [{**row, num: "lots"}]}).encode(), 400),
        "NaN": (as_json, body("{" + f'"{num}": NaN, ' + row_text + "}"), 400),
        "infinity": (as_json, body("{" + f'"{num}": Infinity, ' + row_text + "}"), 400),
        "huge number": (as_json, body("{" + f'"{num}": 1e999, ' + row_text + "}"), 400),
        "unknown category": (as_json, json.dumps({"rows": [{**row, cat: 99}]}).encode(), 400),
        "out of contract range": (
            as_json,
            json.dumps({"rows": [{**row, num: NUMERIC_MAX * 10}]}).encode(),
            400,
        ),
        "unknown field": (as_json, json.dumps({"rows": [{**row, "surprise": 1}]}).encode(), 400),
        "empty rows": (as_json, b'{"rows": []}', 400),
        "not json": (as_json, b"this is not json", 400),
        "json but not an object": (as_json, b"[1, 2, 3]", 400),
        "too many rows": (
            as_json,
            json.dumps({"rows": [row] * (cfg.serving.max_batch_size + 1)}).encode(),
            400,
        ),
        "10 MB body": (as_json, b'{"rows": ["' + b"x" * 10_000_000 + b'"]}', 413),
        "form instead of json": ({"content-type": "multipart/form-data", **AUTH}, b"a=1", 415),
        "no API key": ({"content-type": "application/json"}, json.dumps({"rows": [row]}).encode(), 401),
        "wrong API key": (
            {"content-type": "application/json", "Authorization": "Bearer nope"},
            json.dumps({"rows": [row]}).encode(),
            401,
        ),
    }


def test_malformed_input_answers_4xx_and_the_server_keeps_answering(served):
    cfg, ws, ref, handle = served
    before = httpx.get(f"{handle.url}/model").json()["worker_pid"]
    failures = []
    for name, (headers, content, status) in _malformed_cases(cfg).items():
        response = httpx.post(f"{handle.url}/predict", content=content, headers=headers, timeout=60)
        if response.status_code != status or "error" not in response.json():
            failures.append(f"{name}: {response.status_code} {response.text[:200]}")
    assert not failures, failures

    frame = make_rows(cfg, 3, seed=5)
    good = httpx.post(f"{handle.url}/predict", json={"rows": json_rows(cfg, frame)}, headers=AUTH)
    assert good.status_code == 200
    np.testing.assert_allclose(
        [a["probability"] for a in good.json()], offline(cfg, ws, ref, frame), atol=1e-9
    )
    assert httpx.get(f"{handle.url}/model").json()["worker_pid"] == before


def test_a_request_refused_for_invalid_input_is_one_warning_line_in_the_server_log(served):
    import time

    cfg, _, _, handle = served
    rows = json_rows(cfg, make_rows(cfg, 50, seed=6))
    for row in rows:
        row[cfg.dataset.numerical_features[0]] = "not a number"
    response = httpx.post(f"{handle.url}/predict_batch", json={"rows": rows}, headers=AUTH, timeout=60)
    assert response.status_code == 400
    wanted = "/predict_batch [POST]: 400, 50 validation error(s), first rows.0."
    deadline = time.monotonic() + 10
    while wanted not in handle.log_path.read_text(encoding="utf-8") and time.monotonic() < deadline:
        time.sleep(0.2)
    log = handle.log_path.read_text(encoding="utf-8")
    assert wanted in log, log[-2000:]
    lines = log.splitlines()
    at = next(i for i, line in enumerate(lines) if wanted in line)
    assert "[WARNING]" in lines[at]
    assert at + 1 == len(lines) or not lines[at + 1].startswith("Traceback"), "no traceback follows it"


def test_admin_reload_needs_the_api_key(served):
    _, _, ref, handle = served
    refused = httpx.post(f"{handle.url}/admin/reload", json={"version": ref.version})
    assert refused.status_code == 401
    done = httpx.post(f"{handle.url}/admin/reload", json={"version": ref.version}, headers=AUTH, timeout=60)
    assert done.status_code == 200 and done.json()["version"] == ref.version
    unknown = httpx.post(f"{handle.url}/admin/reload", json={"version": "999"}, headers=AUTH, timeout=60)
    assert unknown.status_code == 409 and "999" in unknown.json()["error"]
    assert httpx.get(f"{handle.url}/model").json()["version"] == ref.version


def test_served_predictions_are_in_the_log_after_shutdown(served):
    cfg, ws, ref, handle = served
    frame = make_rows(cfg, 40, seed=9)
    ids = [f"app-{i}" for i in range(len(frame))]
    rows = json_rows(cfg, frame, ids)
    for row in rows[:20]:
        row["as_of"] = "2026-01-08"
    answers = httpx.post(f"{handle.url}/predict_batch", json={"rows": rows}, headers=AUTH).json()
    single = httpx.post(f"{handle.url}/predict", json={"rows": rows[:1]}, headers=AUTH).json()
    handle.stop()  # graceful: the writer flushes its buffer on shutdown (its interval is an hour here)
    assert not handle.alive()

    log = read_predictions(ws).set_index("request_id")
    for answer in [*answers, *single]:
        assert answer["request_id"] in log.index
    mine = log.loc[[a["request_id"] for a in answers]]
    assert set(mine["model_version"]) == {ref.version}
    assert list(mine[cfg.dataset.id_column]) == ids
    np.testing.assert_allclose(mine["probability"], [a["probability"] for a in answers])
    np.testing.assert_allclose(mine[cfg.dataset.features].to_numpy(), frame.to_numpy())
    replayed = read_predictions(ws, start="2026-01-08", end="2026-01-08")
    assert set(replayed["request_id"]) == {a["request_id"] for a in answers[:20]} | {single[0]["request_id"]}
    assert os.listdir(ws.predictions)  # partitions exist on disk, one folder per day


def test_a_kept_smoke_server_is_reloaded_for_each_candidate_and_stopped_by_down(served):
    from ctcd.app import stack
    from ctcd.serving import deploy
    from ctcd.serving.server import SMOKE_PID_FILE, running_server

    cfg, ws, ref, _ = served
    kept = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"keep_smoke_server": True})})
    other = register_version(cfg, ws, seed=2)
    frame = make_rows(cfg, 50, seed=9)

    first = deploy.smoke_test(kept, ws, ref, frame)
    standby = running_server(ws, SMOKE_PID_FILE)
    assert first.passed and first.version == ref.version, first.error
    assert standby is not None and standby.alive(), "the smoke-test server stays up as a standby"
    second = deploy.smoke_test(kept, ws, other, frame)
    assert second.passed and second.version == other.version, second.error
    assert second.max_abs_difference is not None and second.max_abs_difference <= deploy.SMOKE_TOLERANCE
    assert running_server(ws, SMOKE_PID_FILE).pid == standby.pid, "reloaded to the candidate, not restarted"

    stack.down(ws)
    assert running_server(ws, SMOKE_PID_FILE) is None and not standby.alive()
