"""The training flow on a Prefect test server with the embedded MLflow store: CT cycles end to end.

`land_validated` and `write_config` are shared with test_mlflow_server.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ctcd import audit, registry, tracking
from ctcd.batches import BatchRecord, sha256_of
from ctcd.config import CtcdConfig
from ctcd.events import sent_alerts
from ctcd.stream.scenario import generate_day
from ctcd.workspace import Workspace
from tasks.model import final_estimator
from tests.live_stack import reporting_to
from tests.tasks.test_training import small_config

pytestmark = pytest.mark.integration


def write_config(cfg: CtcdConfig, path: Path) -> Path:
    """Write a config object as a YAML file a flow can load."""
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path


def land_validated(cfg: CtcdConfig, ws: Workspace, days: range) -> list[str]:
    """Put stream days into validated/ (with their batch records) and their labels into labels/."""
    ids = []
    for day in days:
        b = generate_day(cfg, day)
        path = ws.validated / f"{b.batch_id}.parquet"
        b.features.to_parquet(path, index=False)
        record = BatchRecord(
            batch_id=b.batch_id,
            status="validated",
            file=path.name,
            sha256=sha256_of(path),
            bytes=path.stat().st_size,
            rows=len(b.features),
            suite="written by the test",
            reason="passed",
            validated_at=datetime.now(UTC),
        )
        (ws.validated / f"{b.batch_id}.json").write_text(record.model_dump_json(), encoding="utf-8")
        b.labels.to_parquet(ws.labels / f"{b.batch_id}.parquet", index=False)
        ids.append(b.batch_id)
    return ids


@pytest.fixture(scope="module")
def prefect_server(shared_prefect):
    """The session's real Prefect server (tests/live_stack.py): each test reads back only its own runs."""
    with reporting_to(shared_prefect):
        yield


def _task_states(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return {tr.name.rsplit("-", 1)[0]: tr.state.name for tr in runs if tr.state}


def _artifact_keys(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key for a in found if a.key}


def _info_lines(flow_run_id) -> list[str]:
    """The flow run's own INFO log lines (not its task runs'), as the Prefect UI's Logs tab lists them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all()  # the run's logs reach the server in the background: send what is queued
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs if log.level == 20 and log.task_run_id is None]


def test_ct_cycles_gate_register_promote_and_roll_back(prefect_server, default_config, workspace, tmp_path):
    from flows.training import training_flow

    cfg = small_config(default_config)
    path = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    ids = land_validated(cfg, workspace, range(1, 7))

    # 1. The first model must beat the baseline, then becomes champion with its evidence.
    state = training_flow(path, reason="first", trigger={"kind": "test"}, return_state=True)
    first = state.result()
    assert first.promoted and first.version == "1" and first.decision.reference_kind == "baseline"
    assert first.batches == ids[-cfg.training.window_batches :]
    assert first.device == "cpu"
    champ = registry.Registry(cfg, workspace).require_champion()
    assert champ.version == "1"
    # The version's row: a handful of tags and one line saying why, the gate's verdict and the outcome.
    window = f"{first.batches[0]}..{first.batches[-1]}"
    assert {k for k in champ.tags if k.startswith("ctcd.")} == {*tracking.VERSION_TAGS}, champ.tags
    assert champ.tags["ctcd.gate"] == "passed" and champ.tags["ctcd.delta"].endswith(" vs baseline")
    assert (champ.tags["ctcd.reason"], champ.tags["ctcd.trigger"], champ.tags["ctcd.window"]) == (
        "first",
        "-",
        window,
    )
    assert champ.tags["ctcd.rollout"].startswith("promoted ")
    assert champ.description == (
        f"xgboost trained on {window} (first); gate passed: {champ.tags['ctcd.delta']}; "
        f"{champ.tags['ctcd.rollout']}"
    )
    client = registry.Registry(cfg, workspace).client
    run = client.get_run(champ.run_id)
    tags = run.data.tags  # the run keeps every tag
    shas = {i: sha256_of(workspace.validated / f"{i}.parquet") for i in ids}
    assert tags["ctcd.data.batches"].split(",") == [f"{i}:{shas[i][:12]}" for i in first.batches]
    assert tags["ctcd.gate.reference"] == "baseline:-" and tags["ctcd.trigger.event"] == '{"kind": "test"}'
    assert float(tags["ctcd.gate.candidate"]) == pytest.approx(first.metrics["roc_auc"], abs=1e-6)
    assert tags["ctcd.device"] == "cpu" and tags["ctcd.promotion_reason"].startswith("first: gate passed")
    assert run.data.params["device"] == "cpu" and run.data.tags["ctcd.git_commit"]
    # the training's cost: CPU seconds of the fits, no GPU on cpu, the rows fitted on, money at the rates
    metrics = run.data.metrics
    assert metrics["cost_cpu_seconds"] > 0 and metrics["cost_gpu_seconds"] == 0
    assert metrics["cost_rows"] == first.rows["train"] + first.rows["validation"]
    assert metrics["cost_money"] == pytest.approx(
        metrics["cost_cpu_seconds"] / 3600 * cfg.training.cost_per_cpu_hour
    )
    assert first.cost == {k: pytest.approx(v) for k, v in metrics.items() if k.startswith("cost_")}
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == set(first.batches)
    assert {t.value for i in run.inputs.dataset_inputs for t in i.tags if t.key == "sha256"} == {
        shas[i] for i in first.batches
    }
    top = {a.path for a in client.list_artifacts(champ.run_id)}
    assert {"config.yaml", "evaluation.json", "gate", "reference", "plots", "feature_importance.json"} <= top
    plots = {Path(a.path).name for a in client.list_artifacts(champ.run_id, "plots")}
    assert plots == {"confusion_matrix.png", "calibration.png", "feature_importance.png"}
    decision = registry.Registry(cfg, workspace).load_decision(champ)
    assert decision["passed"] and decision["bootstrap"]["samples"] == cfg.gates.model.bootstrap_samples
    assert (
        yaml.safe_load(Path(client.download_artifacts(champ.run_id, "config.yaml")).read_text())["training"][
            "seed"
        ]
        == cfg.training.seed
    )
    reference = registry.Registry(cfg, workspace).load_reference(champ)
    assert {*cfg.dataset.features, cfg.dataset.target, "probability", "prediction"} == set(reference.columns)
    assert (
        registry.Registry(cfg, workspace).load_evaluation(champ)["metrics"]["roc_auc"]
        == first.metrics["roc_auc"]
    )
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{champ.run_id}'"
    )
    assert len(children) == cfg.model.search.budget
    assert {"training-metrics", "mlflow-run", "model-version", "model-gate"} <= _artifact_keys(
        state.state_details.flow_run_id
    )
    model = registry.Registry(cfg, workspace).load_model(champ)
    assert final_estimator(model).get_params()["device"] == "cpu"
    # The run's logs say what happened in one line: the version, the gate's verdict and the promotion.
    outcome = [m for m in _info_lines(state.state_details.flow_run_id) if m.startswith("training v")]
    assert outcome == [first.summary()], outcome
    assert outcome[0].startswith("training v1 (first): gate PASSED vs baseline: roc_auc ")
    assert outcome[0].endswith("; promoted: champion v1")

    # 2. Same data again: a challenger is registered, equal is not better, the champion stays.
    state = training_flow(path, reason="again", return_state=True)
    second = state.result()
    assert (second.version, second.promoted, second.champion_version) == ("2", False, "1")
    assert second.metrics == first.metrics
    assert _task_states(state.state_details.flow_run_id)["search"] == "Cached"
    assert registry.Registry(cfg, workspace).by_alias(registry.CHALLENGER).version == "2"
    equal = registry.Registry(cfg, workspace).version("2")
    assert equal.tags["ctcd.gate"] == "rejected" and "ctcd.rollout" not in equal.tags
    assert "; gate rejected: roc_auc +0.0000 vs champion v1" in equal.description

    # 3. A deliberately worse candidate (labels shuffled) is registered but never promoted.
    rng = np.random.default_rng(0)
    for i in ids:
        labels = pd.read_parquet(workspace.labels / f"{i}.parquet")
        labels[cfg.dataset.target] = rng.permutation(labels[cfg.dataset.target].to_numpy())
        labels.to_parquet(workspace.labels / f"{i}.parquet", index=False)
    worse = training_flow(path, reason="shuffled")
    assert (worse.version, worse.promoted) == ("3", False)
    assert registry.Registry(cfg, workspace).require_champion().version == "1"

    # 4. By hand: promote 2, roll back to 1; the history shows every move.
    runner = CliRunner()
    from ctcd.app.cli import app

    assert runner.invoke(app, ["promote", "2", "--reason", "try it", "-c", path]).exit_code == 0
    back = runner.invoke(app, ["rollback", "--reason", "back", "-c", path])
    assert back.exit_code == 0, back.output
    assert registry.Registry(cfg, workspace).require_champion().version == "1"
    moves = [(h["previous"], h["version"], h.get("action")) for h in audit.alias_history(workspace)]
    assert moves == [(None, "1", "promote"), ("1", "2", "promote"), ("2", "1", "rollback")]
    # Alerts: each rejected candidate once, and the rollback.
    alerts = [(a["kind"], a["episode"]) for a in sent_alerts(workspace)]
    assert alerts[:2] == [("candidate-rejected", "2"), ("candidate-rejected", "3")]
    assert [kind for kind, _ in alerts[2:]] == ["rollback"]


def test_ctcd_data_generate_then_ctcd_run_ends_with_a_champion(
    prefect_server, default_config, workspace, tmp_path
):
    from ctcd.app.cli import app

    small = small_config(default_config, rows_per_day=1000)  # the shipped suite warns outside 1000-3000
    assert small.stream is not None
    cfg = small.model_copy(update={"stream": small.stream.model_copy(update={"perturbation": 0.0})})
    path = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    runner = CliRunner()
    gen = runner.invoke(app, ["data", "generate", "--days", "5", "-c", path])
    assert gen.exit_code == 0, gen.output
    run = runner.invoke(app, ["run", "-c", path])
    assert run.exit_code == 0, f"{run.output}\n{run.exception!r}"
    assert "champion: version 1" in run.stdout
    champ = registry.Registry(cfg, workspace).require_champion()
    assert champ.tags["ctcd.reason"] == "ctcd run" and champ.tags["ctcd.gate"] == "passed"
    # The last day's labels have not arrived yet: it was validated but not trained on.
    run_tags = registry.Registry(cfg, workspace).client.get_run(champ.run_id).data.tags
    assert len(run_tags["ctcd.data.batches"].split(",")) == 4


def _first_model_config(default_config: CtcdConfig, floors: dict[str, float], **params: float) -> CtcdConfig:
    cfg = small_config(default_config, rows_per_day=1000)
    model = cfg.model.model_copy(
        update={
            "params": {**cfg.model.params, **params},
            "search": cfg.model.search.model_copy(update={"budget": 1, "space": {}}),
        }
    )
    gate = cfg.gates.model.model_copy(update={"floors": floors})
    return cfg.model_copy(update={"model": model, "gates": cfg.gates.model_copy(update={"model": gate})})


def test_with_no_champion_a_better_baseline_is_registered_and_served(
    prefect_server, default_config, workspace, tmp_path
):
    """A candidate that cannot split (min_child_weight 1e9: ROC AUC 0.5) under the floor, a baseline over it:
    the baseline becomes version 2 and champion, the candidate (version 1) stays the challenger."""
    from ctcd.app.cli import app

    cfg = _first_model_config(default_config, {"roc_auc": 0.52}, min_child_weight=1e9)
    path = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    land_validated(cfg, workspace, range(1, 5))
    result = CliRunner().invoke(app, ["train", "-c", path])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    assert "champion: version 2, the baseline (was none); version 1 stays the challenger" in result.stdout
    champ = registry.Registry(cfg, workspace).require_champion()
    assert champ.version == "2" and champ.tags["ctcd.gate"] == "first-model"
    assert champ.description.startswith("logistic_regression baseline trained on ")
    run_tags = registry.Registry(cfg, workspace).client.get_run(champ.run_id).data.tags
    assert run_tags["ctcd.role"] == "baseline" and run_tags["ctcd.model_kind"] == "logistic_regression"
    assert run_tags["ctcd.gate.chosen"] == "baseline"
    assert registry.Registry(cfg, workspace).version("1").tags["ctcd.gate"] == "rejected"
    assert registry.Registry(cfg, workspace).by_alias(registry.CHALLENGER).version == "1"
    decision = registry.Registry(cfg, workspace).load_decision(champ)
    assert decision["chosen"] == "baseline" and decision["reference_kind"] == "baseline"
    assert decision["passed"] is False  # the candidate's own verdict stays on record
    # The baseline is a model version like any other: it loads and scores.
    model = registry.Registry(cfg, workspace).load_model(champ)
    rows = generate_day(cfg, 5).features
    from tasks.model import features_frame, positive_proba

    proba = positive_proba(model, features_frame(rows, cfg.dataset))
    assert len(proba) == len(rows) and ((proba >= 0) & (proba <= 1)).all()


def test_with_no_model_clearing_the_floors_training_fails_in_one_line(
    prefect_server, default_config, workspace, tmp_path
):
    from ctcd.app.cli import app
    from ctcd.errors import WorkFailed

    cfg = _first_model_config(default_config, {"roc_auc": 0.999})
    path = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    land_validated(cfg, workspace, range(1, 5))
    result = CliRunner().invoke(app, ["train", "-c", path])
    assert isinstance(result.exception, WorkFailed) and result.exception.exit_code == 1, result.output
    message = str(result.exception)
    assert "\n" not in message
    assert message.startswith("no model cleared the floors roc_auc>=0.999: candidate roc_auc 0.")
    assert "(baseline roc_auc 0." in message and "lower gates.model.floors" in message
    assert registry.Registry(cfg, workspace).champion() is None
    # The candidate is registered with the decision that says why nothing serves.
    (candidate,) = registry.Registry(cfg, workspace).versions()
    assert candidate.tags["ctcd.gate"] == "rejected" and "gate rejected: roc_auc" in candidate.description


def test_after_a_drift_a_better_baseline_on_the_restarted_window_is_registered_and_served(
    prefect_server, default_config, workspace, tmp_path
):
    """A drift retraining on a window restarted at the onset: the candidate cannot split (ROC AUC 0.5), the
    baseline fitted on the new concept beats the champion (the first model's baseline, fitted before the
    drift) at the same gate, judged on accuracy (the trigger's `performance`): it becomes champion, and the
    policy reads the retraining as promoted."""
    from ctcd.config import ScenarioEvent
    from flows.training import training_flow
    from tasks.policy import training_outcome

    cfg = _first_model_config(default_config, {"roc_auc": 0.52}, min_child_weight=1e9)
    assert cfg.stream is not None
    drift = [ScenarioEvent(day=5, kind="concept_drift", function=2)]
    cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"events": drift})})
    path = str(write_config(cfg, tmp_path / "ctcd.yaml"))
    land_validated(cfg, workspace, range(1, 5))
    first = training_flow(path, reason="first")
    assert first.promoted and first.baseline_version == "2"

    after = land_validated(cfg, workspace, range(5, 8))
    trigger = {"event": "drift", "batch": after[-1], "signals": ["performance"]}
    report = training_flow(path, reason="drift: accuracy fell", window_start=after[0], trigger=trigger)
    d = report.decision
    assert report.batches == after
    assert d.bootstrap.metric == "accuracy" and d.reference_kind == "champion"
    assert not d.passed and d.chosen == "baseline", d.summary()
    assert d.baseline_decision is not None and d.baseline_decision.passed
    assert report.promoted and (report.version, report.baseline_version) == ("3", "4")
    assert report.previous_champion == "2" and report.champion_version == "4"
    champ = registry.Registry(cfg, workspace).require_champion()
    assert champ.version == "4" and champ.tags["ctcd.gate"] == "passed"
    assert champ.tags["ctcd.delta"].startswith("accuracy +") and champ.tags["ctcd.delta"].endswith(
        "vs champion v2"
    )
    assert champ.tags["ctcd.trigger"] == after[-1] and champ.description.startswith(
        "logistic_regression baseline"
    )
    assert registry.Registry(cfg, workspace).by_alias(registry.CHALLENGER).version == "3"
    champions = {e["version"] for e in audit.alias_history(workspace) if e.get("action") != "rollback"}
    found = [(ref.version, ref.tags) for ref in registry.Registry(cfg, workspace).versions()]
    assert training_outcome(found, champions, after[-1]) is True
