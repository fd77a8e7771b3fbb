"""Drift -> Prefect event -> a run of the training deployment, against a real (test harness) Prefect server.

A stand-in flow with the training flow's parameters is deployed as `training` with the trigger of
`ctcd.events.drift_trigger`; the real monitoring flow then runs over simulated days against a real MLflow
registry (SQLite in the workspace) and a prediction log written in its documented format.
"""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from ctcd import events
from ctcd.config import CtcdConfig, load_config
from ctcd.errors import DependencyUnavailable
from tests.ctcd.test_drift_report import drift_table
from tests.tasks.test_drift import make_rows

pytestmark = pytest.mark.integration

DAY1 = date(2026, 2, 1)
ROWS = 1000
STAND_IN = """
from prefect import flow


@flow(name="training")
def training_flow(
    config_path: str | None = None,
    reason: str = "manual",
    window_start: str | None = None,
    trigger: dict | None = None,
) -> str:
    return reason
"""
CONFIG = {
    "dataset": {
        "name": "toy-loans",
        "target": "label",
        "id_column": "row_id",
        "numerical_features": ["x1", "x2", "noise"],
        "categorical_features": ["colour"],
        "label_delay_batches": 1,
    },
    "gates": {"data": {"suite": "suite.json"}},
    "drift": {"min_labelled_rows": 500, "cooldown_batches": 2, "report_retention": 3},
}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> CtcdConfig:
    path = tmp_path_factory.mktemp("config") / "toy.yaml"
    path.write_text(yaml.safe_dump(CONFIG), encoding="utf-8")
    return load_config(path)


@pytest.fixture(scope="module")
def training_deployment(cfg: CtcdConfig, tmp_path_factory: pytest.TempPathFactory) -> UUID:
    """A Prefect test server with the stand-in training flow deployed under the real name and trigger."""
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    source = tmp_path_factory.mktemp("stand-in")
    (source / "stand_in.py").write_text(STAND_IN, encoding="utf-8")
    with prefect_test_harness(server_startup_timeout=90):
        stand_in = flow.from_source(str(source), "stand_in.py:training_flow")
        yield stand_in.to_deployment(name="training", triggers=[events.drift_trigger(cfg)]).apply()


def training_runs(deployment_id: UUID, expected: int, settle: float = 3.0) -> list:
    """The deployment's flow runs once `expected` exist (and no more arrived meanwhile), in no promised order.

    Runs that automations create close together may come back in any order (by `created` or by start
    time): callers match runs by their parameters or ids, never by position.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    def read() -> list:
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
            )

    deadline = time.monotonic() + 60
    runs = read()
    while len(runs) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        runs = read()
    time.sleep(settle)  # a storm would show up here
    return read()


def new_runs(runs: list, before: list) -> list:
    """The runs of `runs` that were not in `before` (matched by id, not by position)."""
    known = {r.id for r in before}
    return [r for r in runs if r.id not in known]


def test_drift_event_starts_the_training_deployment_with_its_parameters(cfg, training_deployment):
    before = training_runs(training_deployment, 0, settle=0)
    payload = {
        "reason": "drift: accuracy fell",
        "window_start": "2026-01-20",
        "trigger": {"signals": ["performance"], "performance_drop": 0.4},
    }
    event = events.emit_drift_event(cfg, payload, model_version="7")
    assert event.resource.id == "ctcd.model.toy-loans"
    assert event.resource["ctcd.model.version"] == "7"
    events.emit_drift_event(cfg, {"reason": "drift: prior", "window_start": None, "trigger": {"x": 1}})

    runs = new_runs(training_runs(training_deployment, len(before) + 2), before)
    assert sorted((r.parameters for r in runs), key=lambda p: p["reason"]) == [
        {"reason": "drift: accuracy fell", "window_start": "2026-01-20", "trigger": payload["trigger"]},
        {"reason": "drift: prior", "window_start": None, "trigger": {"x": 1}},
    ]


def test_an_event_nobody_accepts_raises():
    from prefect.settings import PREFECT_API_KEY, PREFECT_API_URL, temporary_settings

    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "default.yaml")
    with pytest.raises(ValueError, match="window_start"):
        events.emit_drift_event(cfg, {"reason": "x", "trigger": {}})
    # emit_event returns None instead of raising when it cannot send: that must not pass silently.
    with (
        temporary_settings(updates={PREFECT_API_URL: None, PREFECT_API_KEY: "set"}),
        pytest.raises(DependencyUnavailable, match="retraining was not triggered"),
    ):
        events.emit_drift_event(cfg, {"reason": "x", "window_start": None, "trigger": {}})


def test_drift_trigger_spec_is_the_prefect_yaml_shape(cfg):
    from prefect.events import DeploymentEventTrigger

    spec = events.drift_trigger_spec(cfg)
    assert spec["expect"] == ["ctcd.drift.detected"]
    assert spec["match"] == {"prefect.resource.id": "ctcd.model.toy-loans"}
    assert spec["parameters"]["window_start"] == "{{ event.payload.window_start }}"
    # The YAML form round-trips into the same trigger the code deploys.
    from_yaml = DeploymentEventTrigger(**{k: v for k, v in yaml.safe_load(yaml.safe_dump(spec)).items()})
    assert from_yaml == events.drift_trigger(cfg)


# --------------------------------------------------------------------------- the monitoring flow, end to end


def register_champion(cfg: CtcdConfig, ws, reference) -> str:
    """A champion in the workspace's MLflow registry with the reference and evaluation monitoring reads."""
    import mlflow
    from sklearn.linear_model import LogisticRegression

    from ctcd import registry

    registry.Registry.open(cfg, ws)
    features = reference[cfg.dataset.features].astype("float64")
    model = LogisticRegression().fit(features, reference[cfg.dataset.target])
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=cfg.registered_model_name)
        path = ws.root / "reference.parquet"
        reference.to_parquet(path)
        mlflow.log_artifact(str(path), artifact_path="reference")
        mlflow.log_dict({"metrics": {"accuracy": 0.95, "roc_auc": 0.99, "log_loss": None}}, "evaluation.json")
    ref = registry.Registry(cfg, ws).version(info.registered_model_version)
    registry.Registry(cfg, ws).move_alias(registry.CHAMPION, ref, reason="test champion")
    return ref.version


def serve_day(cfg: CtcdConfig, ws, day: int, version: str, **kind) -> None:
    """Log one day of predictions in the prediction log; its labels land the next day."""
    from ctcd.prediction_log import PredictionLogWriter

    rows = make_rows(ROWS, seed=100 + day, day=DAY1 + timedelta(days=day - 1), version=version, **kind)
    writer = PredictionLogWriter(ws.predictions)
    writer.append(rows.drop(columns=[cfg.dataset.target]))
    writer.close()
    batch = (DAY1 + timedelta(days=day - 1)).isoformat()
    rows[[cfg.dataset.id_column, cfg.dataset.target]].to_parquet(ws.labels / f"{batch}.parquet")


def monitor(cfg: CtcdConfig, day: int):
    from flows.monitoring import monitoring_flow

    state = monitoring_flow(str(cfg.source), (DAY1 + timedelta(days=day - 1)).isoformat(), return_state=True)
    return state.result(), state.state_details.flow_run_id


def run_artifacts(flow_run_id: UUID) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        return client.read_artifacts(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))


def test_monitoring_flow_emits_one_event_per_drift_episode(cfg, training_deployment, workspace):
    import mlflow

    from ctcd.policy_state import decision_log

    before = training_runs(training_deployment, 0, settle=0)
    reference = make_rows(3000, seed=1).drop(columns=["served_at", "model_version", "request_id", "row_id"])
    version = register_champion(cfg, workspace, reference)

    # Day 1, stable: nothing fires, no event.
    serve_day(cfg, workspace, 1, version)
    stable, _ = monitor(cfg, 1)
    assert stable.decision.action == "none" and stable.event_id is None

    # Days 2-3, one covariate-shift episode: one retraining.
    serve_day(cfg, workspace, 2, version, shift=1.0)
    shifted, shifted_run = monitor(cfg, 2)
    assert shifted.decision.action == "retrain" and shifted.event_id
    assert shifted.signals.covariate_shift.drifted == ["noise", "colour"]
    serve_day(cfg, workspace, 3, version, shift=1.0)
    again, _ = monitor(cfg, 3)
    assert again.decision.action == "alert" and again.event_id is None
    assert "already started a retraining" in again.decision.reason

    # Days 4-5, concept drift: features look normal, the labels of day 4 show the accuracy drop on day 5.
    serve_day(cfg, workspace, 4, version, concept=True)
    serve_day(cfg, workspace, 5, version, concept=True)
    concept, _ = monitor(cfg, 5)
    assert concept.decision.action == "retrain"
    assert "performance" in concept.decision.triggering
    assert concept.signals.covariate_shift.drifted == []
    assert concept.decision.window_start == (DAY1 + timedelta(days=3)).isoformat()

    runs = new_runs(training_runs(training_deployment, len(before) + 2), before)
    assert len(runs) == 2, "one training run per drift episode"
    # Both runs may be created within the same instant: match each to its episode by its parameters.
    covariate = [r for r in runs if r.parameters["reason"].startswith("drift: 2 of 4 features drifted")]
    assert len(covariate) == 1, [r.parameters["reason"] for r in runs]
    shift_run = covariate[0]
    (concept_run,) = [r for r in runs if r.id != shift_run.id]
    assert shift_run.parameters["reason"].startswith("drift: 2 of 4 features drifted (noise, colour)")
    assert shift_run.parameters["window_start"] is None
    assert shift_run.parameters["trigger"]["drifted_columns"] == ["noise", "colour"]
    assert concept_run.parameters["window_start"] == "2026-02-04"
    assert concept_run.parameters["trigger"]["performance_drop"] > 0.3

    # The report the event links to opens and shows the drifted features; its link is on the Prefect run.
    report = Path(shifted.report)
    html = report.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith(("<html", "<!doctype html"))
    detected = {c for c, status in drift_table(html).items() if status == "Detected"}
    assert detected == {"noise", "colour"}
    assert shift_run.parameters["trigger"]["report"] == report.as_uri()
    markdown = [a.data for a in run_artifacts(shifted_run) if a.type == "markdown"]
    assert (
        len(markdown) == 1 and report.as_uri() in markdown[0] and "| covariate shift | FIRED |" in markdown[0]
    )
    assert len(list(workspace.reports.glob("drift-*.html"))) == 3, "report_retention keeps the newest 3"

    # The policy's memory and the MLflow summary against the champion's version.
    log = [json.loads(line) for line in decision_log(workspace).read_text().splitlines()]
    assert [e["action"] for e in log] == ["none", "retrain", "alert", "retrain"]
    # One drift alert per episode (day 3 alerts inside day 2's episode: not again).
    drift_alerts = [a for a in events.sent_alerts(workspace) if a["kind"] == "drift"]
    episodes = [shifted.decision.episode_started, concept.decision.episode_started]
    assert [a["episode"] for a in drift_alerts] == [f"drift:{e}" for e in episodes]
    assert episodes[0] != episodes[1]
    found = mlflow.search_runs(
        experiment_names=[cfg.experiment_name], filter_string="tags.`ctcd.kind` = 'monitoring'"
    )
    assert sorted(found["tags.ctcd.monitoring.action"]) == ["alert", "none", "retrain", "retrain"]
    assert set(found["tags.ctcd.model_version"]) == {version}

    # `ctcd monitor --json` runs the same flow once and prints the verdict: the open episode only alerts.
    from typer.testing import CliRunner

    from ctcd.app.cli import app

    serve_day(cfg, workspace, 6, version, concept=True)
    result = CliRunner().invoke(app, ["monitor", "--json", "--today", "2026-02-06", "-c", str(cfg.source)])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["decision"]["action"] == "alert" and printed["event_id"] is None
    assert len(new_runs(training_runs(training_deployment, len(before) + 2), before)) == 2
    assert len([a for a in events.sent_alerts(workspace) if a["kind"] == "drift"]) == 2
