"""The online gate end to end, with a real `bentoml serve`, a real MLflow store and a Prefect test harness.

A candidate goes to shadow through the delivery flow; a replayed day of requests is served (the champion
answers, both models score every row); the day's labels arrive; the monitoring flow runs the online gate.
A candidate that is better on the live labels is promoted (alias moved, the live server answers with it);
a worse one is rejected and never answers a request.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from ctcd import registry, rollout, tracking
from ctcd.config import CtcdConfig, load_config
from ctcd.net import free_port
from ctcd.prediction_log import read_predictions
from ctcd.workspace import Workspace
from tests.integration.test_serving import API_KEY_ENV, NUMERIC_MAX, json_rows, make_rows, write_project

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

KEY = "online-key"
ROWS = 300


def truth(cfg: CtcdConfig, x: pd.DataFrame) -> np.ndarray:
    """The labels of the live traffic: the first numerical feature above the middle of its range."""
    return (x[cfg.dataset.numerical_features[0]] > NUMERIC_MAX / 2).to_numpy().astype("int64")


def register(
    cfg: CtcdConfig, ws: Workspace, seed: int, feature: int, flip: bool = False
) -> registry.ModelRef:
    """A small model that learned "feature `feature` above the middle" (inverted with `flip`), registered
    with the reference sample and evaluation every version carries (ARCHITECTURE.md)."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    registry.Registry.open(cfg, ws)
    ds = cfg.dataset
    x = make_rows(cfg, 400, seed)
    y = (x[ds.numerical_features[feature]] > NUMERIC_MAX / 2).to_numpy().astype("int64")
    y = 1 - y if flip else y
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    proba = model.predict_proba(x)[:, 1]
    with mlflow.start_run():
        folder = Path(tempfile.mkdtemp())
        reference = x.assign(
            **{
                ds.id_column: [f"ref-{i}" for i in range(len(x))],
                ds.target: y,
                "probability": proba,
                "prediction": (proba >= 0.5).astype("int64"),
            }
        )
        reference.to_parquet(folder / Path(tracking.REFERENCE_ARTIFACT).name)
        mlflow.log_artifact(str(folder / Path(tracking.REFERENCE_ARTIFACT).name), artifact_path="reference")
        mlflow.log_dict({"metrics": {"accuracy": float(((proba >= 0.5) == y).mean())}}, "evaluation.json")
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=cfg.registered_model_name,
            signature=infer_signature(x, y),
            pip_requirements=["scikit-learn"],
        )
    return registry.Registry(cfg, ws).version(info.registered_model_version)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """A live server on the config's port serving champion v1 (it learned the wrong feature), in shadow
    mode, inside a Prefect test harness."""
    from prefect.testing.utilities import prefect_test_harness

    from ctcd.serving.server import start_server

    root = tmp_path_factory.mktemp("online")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        mp.setenv("PREFECT_HOME", str(root / "prefect"))
        mp.setenv(API_KEY_ENV, KEY)
        config = write_project(root, free_port(), log_flush_seconds=0.5, rollout="shadow")
        raw = yaml.safe_load(config.read_text(encoding="utf-8"))
        raw["gates"]["online"] = {"min_labelled_rows": 200}
        config.write_text(yaml.safe_dump(raw), encoding="utf-8")
        cfg = load_config(config)
        ws = Workspace.open(root / "home")
        v1 = register(cfg, ws, seed=1, feature=1)
        registry.Registry(cfg, ws).move_alias(registry.CHAMPION, v1, reason="first")
        handle = start_server(cfg, ws, cfg.serving.port)
        try:
            with prefect_test_harness(server_startup_timeout=180):
                yield config, cfg, ws, handle
        finally:
            handle.stop()


def serve_day(cfg: CtcdConfig, url: str, day: str, seed: int) -> tuple[list[dict], pd.DataFrame]:
    """Replay one day: ROWS single-row requests dated `day`; returns the answers and the rows sent."""
    x = make_rows(cfg, ROWS, seed)
    ids = [f"{day}-{i}" for i in range(ROWS)]
    answers = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        for row in json_rows(cfg, x, ids=ids):
            r = client.post("/predict", json={"rows": [{**row, "as_of": day}]})
            assert r.status_code == 200, r.text
            answers.extend(r.json())
    return answers, x.assign(**{cfg.dataset.id_column: ids})


def logged(ws: Workspace, answers: list[dict]) -> pd.DataFrame:
    """The log rows of `answers`, once the server has written them all."""
    wanted = {a["request_id"] for a in answers}
    for _ in range(300):
        log = read_predictions(ws)
        if wanted <= set(log["request_id"]):
            return log[log["request_id"].isin(wanted)]
        time.sleep(0.2)
    raise AssertionError("the server did not log every answer")


def labels_arrive(cfg: CtcdConfig, ws: Workspace, day: str, sent: pd.DataFrame) -> None:
    ds = cfg.dataset
    ws.labels.mkdir(parents=True, exist_ok=True)
    labels = pd.DataFrame({ds.id_column: sent[ds.id_column], ds.target: truth(cfg, sent)})
    labels.to_parquet(ws.labels / f"{day}.parquet")


def live_version(url: str) -> str:
    return str(httpx.get(f"{url}/model", headers={"Authorization": f"Bearer {KEY}"}).json()["version"])


def test_a_better_candidate_in_shadow_is_promoted_once_its_labels_arrive(live):
    from flows.delivery import delivery_flow
    from flows.monitoring import monitoring_flow

    config, cfg, ws, handle = live
    v2 = register(cfg, ws, seed=2, feature=0)  # learned the feature the labels follow
    registry.Registry(cfg, ws).move_alias(registry.CHALLENGER, v2, reason="gate passed")  # the training flow
    report = delivery_flow(str(config), version=v2.version, rollout="shadow", build=False)
    assert report.rollout == "shadow", report.message
    assert rollout.read_rollout(ws).candidate_version == v2.version

    day = "2026-03-02"
    answers, sent = serve_day(cfg, handle.url, day, seed=10)
    assert {a["model_version"] for a in answers} == {"1"}  # shadow: the champion answers
    log = logged(ws, answers)
    assert (log["candidate_version"].astype(str) == v2.version).all()
    assert log["candidate_probability"].notna().all() and log["champion_probability"].notna().all()

    waiting = monitoring_flow(str(config), batch=day)  # no label yet
    assert waiting.online is not None and waiting.online.action == "wait", waiting.online
    assert registry.Registry(cfg, ws).require_champion().version == "1"

    labels_arrive(cfg, ws, day, sent)
    outcome = monitoring_flow(str(config), batch=day)
    verdict = outcome.online
    assert verdict is not None and verdict.action == "promote", verdict
    assert verdict.labelled_rows == ROWS and verdict.ci_low > 0
    assert registry.Registry(cfg, ws).require_champion().version == v2.version
    assert rollout.read_rollout(ws) is None
    assert live_version(handle.url) == v2.version
    after, _ = serve_day(cfg, handle.url, "2026-03-03", seed=11)
    assert {a["model_version"] for a in after} == {v2.version}
    promoted = registry.Registry(cfg, ws).version(v2.version)
    assert promoted.tags["ctcd.rollout"].startswith("promoted")
    run_tags = registry.Registry(cfg, ws).client.get_run(promoted.run_id).data.tags
    assert run_tags["ctcd.rollout"].startswith("online gate: promote")


def test_a_worse_candidate_is_rejected_and_never_answers(live):
    from flows.delivery import delivery_flow
    from flows.monitoring import monitoring_flow

    config, cfg, ws, handle = live
    champion = registry.Registry(cfg, ws).require_champion().version
    v3 = register(cfg, ws, seed=3, feature=0, flip=True)  # the opposite of the labels
    registry.Registry(cfg, ws).move_alias(registry.CHALLENGER, v3, reason="gate passed")
    report = delivery_flow(str(config), version=v3.version, rollout="shadow", build=False)
    assert report.rollout == "shadow", report.message

    day = "2026-03-04"
    answers, sent = serve_day(cfg, handle.url, day, seed=12)
    log = logged(ws, answers)
    assert (log["candidate_version"].astype(str) == v3.version).all()
    labels_arrive(cfg, ws, day, sent)
    outcome = monitoring_flow(str(config), batch=day)
    verdict = outcome.online
    assert verdict is not None and verdict.action == "reject", verdict
    assert verdict.ci_high < 0
    assert registry.Registry(cfg, ws).require_champion().version == champion
    assert registry.Registry(cfg, ws).by_alias(registry.CHALLENGER) is None
    assert rollout.read_rollout(ws) is None
    after, _ = serve_day(cfg, handle.url, "2026-03-05", seed=13)
    # The worse candidate never answered: not in shadow, not after its rejection.
    served = [a["model_version"] for a in answers + after]
    assert set(served) == {champion}
    everything = read_predictions(ws)
    assert v3.version not in set(everything["model_version"].astype(str))
    assert "candidate" not in set(everything["answered_by"].dropna())


def test_a_canary_holds_without_labels_and_steps_up_on_evidence(live):
    from flows.delivery import delivery_flow
    from flows.monitoring import monitoring_flow

    config, cfg, ws, handle = live
    champion = registry.Registry(cfg, ws).require_champion().version
    v4 = register(cfg, ws, seed=4, feature=0)
    report = delivery_flow(str(config), version=v4.version, rollout="canary", build=False)
    assert report.rollout == "canary", report.message
    first = rollout.read_rollout(ws)
    assert (first.step, first.fraction) == (0, cfg.serving.canary_steps[0])

    day = "2026-03-06"
    answers, sent = serve_day(cfg, handle.url, day, seed=14)
    assert {a["model_version"] for a in answers} <= {champion, v4.version}
    logged(ws, answers)
    outcome = monitoring_flow(str(config), batch=day)  # its labels have not arrived: no evidence to step on
    assert outcome.online is not None and outcome.online.action == "wait", outcome.online
    held = rollout.read_rollout(ws)
    assert (held.step, held.fraction) == (0, cfg.serving.canary_steps[0])
    # A quarter of min_labelled_rows (200) arrive: enough to step up, too few for a verdict.
    labels_arrive(cfg, ws, day, sent.iloc[:60])
    outcome = monitoring_flow(str(config), batch=day)
    assert outcome.online is not None and outcome.online.action == "wait", outcome.online
    assert outcome.online.labelled_rows == 60 and outcome.online.delta is not None
    stepped = rollout.read_rollout(ws)
    assert (stepped.step, stepped.fraction) == (1, cfg.serving.canary_steps[1])
    assert registry.Registry(cfg, ws).require_champion().version == champion
