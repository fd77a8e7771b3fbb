"""The MLflow seam against the embedded SQLite store: aliases, loading, tracking, the audit log, and the
connection made once per process."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ctcd import tracking
from ctcd.errors import NoChampion, UsageError
from ctcd.mlflow_connection import with_retries
from ctcd.registry import CHALLENGER, CHAMPION, ModelRef, Registry
from ctcd.workspace import Workspace


def _register(cfg, ws, seed: int) -> ModelRef:
    import mlflow
    from mlflow.models import infer_signature

    reg = Registry.open(cfg, ws)
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(50, 2)), columns=["a", "b"])
    y = (x["a"] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=cfg.registered_model_name,
            signature=infer_signature(x, y),
            pip_requirements=tracking.pip_requirements(),  # inferring them costs a subprocess per model
        )
    return reg.version(info.registered_model_version)


def test_aliases_history_and_loading(default_config, workspace):
    reg = Registry(default_config, workspace)
    with pytest.raises(NoChampion, match="ctcd run"):
        reg.require_champion()
    v1 = _register(default_config, workspace, 1)
    v2 = _register(default_config, workspace, 2)
    assert workspace.mlflow_db.exists()
    assert any(workspace.mlflow_artifacts.iterdir()), "artifacts must live in the workspace"

    reg.move_alias(CHAMPION, v1, reason="first")
    reg.move_alias(CHAMPION, v2, reason="better")
    champ = reg.require_champion()
    assert champ.version == v2.version
    assert reg.client.get_run(champ.run_id).data.tags["ctcd.promotion_reason"] == "better"
    assert champ.tags["ctcd.rollout"].startswith("promoted ") and champ.description.endswith(
        champ.tags["ctcd.rollout"]
    )

    history = reg.alias_history()
    assert [(h["version"], h["previous"]) for h in history] == [(v1.version, None), (v2.version, v1.version)]

    model = reg.load_model(champ)
    assert model.predict_proba(pd.DataFrame({"a": [1.0], "b": [0.0]})).shape == (1, 2)
    assert [r.version for r in reg.versions()] == [v2.version, v1.version]


def _candidate(cfg, seed: int, reason: str = "test") -> tracking.CandidateRun:
    """A small real candidate with everything a training run logs."""
    ds = cfg.dataset
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(80, len(ds.features))), columns=ds.features)
    y = (x[ds.features[0]] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    batch = x.assign(**{ds.id_column: range(80), ds.target: y})
    return tracking.CandidateRun(
        model=model,
        params={"C": 1.0, "search": {"budget": 2}},
        metrics={"test_roc_auc": 0.9 + seed / 100},
        evaluation={"metrics": {"roc_auc": 0.9}, "slices": {}},
        reference=x.assign(**{ds.target: y, "probability": 0.5, "prediction": 1}),
        input_example=x.head(3),
        batches=[
            tracking.LoggedBatch(f"2026-01-0{seed}", f"{seed:064x}", f"/data/2026-01-0{seed}.parquet", batch)
        ],
        config_yaml="dataset: {name: x}\n",
        tags={"ctcd.reason": reason, "ctcd.trigger": "-", "ctcd.model_kind": "logistic_regression"},
        json_artifacts={"search.json": {"best": 0}},
        children=[tracking.ChildRun("candidate-0", {"C": 1.0}, {"validation_roc_auc": 0.9})],
        run_name=f"train-{seed}",
    )


def test_log_candidate_registers_a_challenger_with_lineage_and_artifacts(default_config, workspace):
    import mlflow

    reg = Registry(default_config, workspace)
    ref = reg.log_candidate(_candidate(default_config, 1, reason="drift"))
    assert ref.version == "1" and CHALLENGER in ref.aliases
    assert reg.champion() is None, "registering never makes a champion"
    # The version shows why it was trained and on what; its run carries the lineage.
    assert ref.tags == {"ctcd.reason": "drift", "ctcd.trigger": "-", "ctcd.window": "2026-01-01"}
    assert ref.description == "logistic_regression trained on 2026-01-01 (drift); not judged yet"

    client = reg.client
    run = client.get_run(ref.run_id)
    assert run.data.params["C"] == "1.0" and run.data.params["search"] == '{"budget": 2}'
    t = run.data.tags
    assert t["ctcd.data.batches"] == f"2026-01-01:{1:064x}"[:23]
    assert run.data.metrics == {"test_roc_auc": 0.91}
    assert len(t["ctcd.config_sha256"]) == 64 and t["ctcd.data.digest"] and t["ctcd.kind"] == "training"
    assert t["ctcd.reason"] == "drift"
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "2026-01-01"
    assert {tag.key: tag.value for tag in inp.tags}["sha256"] == f"{1:064x}"
    files = {a.path for a in client.list_artifacts(ref.run_id)}
    assert {"config.yaml", "evaluation.json", "search.json", "reference"} <= files
    children = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{ref.run_id}'"
    )
    assert len(children) == 1
    assert children["tags.mlflow.runName"].tolist() == ["candidate-0"]
    assert children["tags.ctcd.kind"].tolist() == ["search-candidate"]
    assert children["params.C"].tolist() == ["1.0"] and children["metrics.validation_roc_auc"].tolist() == [
        0.9
    ]
    assert run.info.experiment_id == reg.experiment_id
    assert len(reg.load_reference(ref)) == 80
    assert reg.load_evaluation(ref)["metrics"]["roc_auc"] == 0.9
    model = reg.load_model(ref)
    features = default_config.dataset.features
    assert model.predict_proba(pd.DataFrame(np.zeros((1, len(features))), columns=features)).shape == (1, 2)
    assert reg.alias_history(CHALLENGER)[-1]["version"] == "1"


def test_decisions_promotions_and_rollbacks_are_recorded(default_config, workspace):
    cfg = default_config
    reg = Registry(cfg, workspace)
    v1 = reg.log_candidate(_candidate(cfg, 1))
    v2 = reg.log_candidate(_candidate(cfg, 2))
    assert reg.load_decision(v1) is None
    verdict = {"ctcd.gate": "passed", "ctcd.delta": "roc_auc +0.0100 vs baseline", "ctcd.gate.ci": "[0, 1]"}
    reg.record_decision(v1, {"passed": True, "checks": []}, verdict)
    assert reg.load_decision(v1) == {"passed": True, "checks": []}
    judged = reg.version("1")
    assert reg.client.get_run(v1.run_id).data.tags["ctcd.gate.ci"] == "[0, 1]", "the run keeps every number"
    assert "ctcd.gate.ci" not in judged.tags and judged.tags["ctcd.gate"] == "passed"
    assert judged.description.endswith("; gate passed: roc_auc +0.0100 vs baseline")

    with pytest.raises(UsageError, match="no earlier champion"):
        reg.rollback("nothing yet")
    reg.promote(v1, "first", actor="ci")
    reg.promote(v2, "better", actor="ci")
    assert reg.champion_stack() == ["1", "2"]
    entry = reg.rollback("v2 misbehaves", actor="ops")
    assert (entry["version"], entry["from"], entry["actor"], entry["action"]) == ("1", "2", "ops", "rollback")
    assert reg.require_champion().version == "1"
    assert reg.champion_stack() == ["1"]
    with pytest.raises(UsageError):
        reg.rollback("again")
    moves = [(h["version"], h.get("action")) for h in reg.alias_history()]
    assert moves == [("1", "promote"), ("2", "promote"), ("1", "rollback")]
    # Each version's row in the registry says how its rollout ended, in a handful of tags and one line.
    assert reg.version("2").tags["ctcd.rollout"].endswith(": v2 misbehaves")
    assert reg.version("2").description.startswith("logistic_regression trained on 2026-01-02 (test); ")
    assert "rolled back" in reg.version("2").description
    assert reg.version("1").tags["ctcd.rollout"].startswith("champion again ")
    reg.record_rollout(v2, "shadow: rejected by the online gate")
    assert reg.version("2").description.endswith("; not judged yet; shadow: rejected by the online gate")
    for ref in reg.versions():
        assert len([k for k in ref.tags if k.startswith("ctcd.")]) <= 6 and "\n" not in ref.description
    assert reg.describe(v2, "by hand") == "by hand" and reg.version("2").description == "by hand"


def test_log_monitoring_is_a_run_of_the_same_experiment(default_config, workspace, tmp_path):
    reg = Registry(default_config, workspace)
    report = tmp_path / "drift.html"
    report.write_text("<html></html>")
    run_id = reg.log_monitoring(
        {"drift_share": 0.4},
        model_version="3",
        tags={"ctcd.verdict": "retrain"},
        artifacts={"reports": report},
    )
    run = reg.client.get_run(run_id)
    assert run.data.metrics == {"drift_share": 0.4}
    assert run.data.tags["ctcd.kind"] == "monitoring" and run.data.tags["ctcd.model_version"] == "3"
    assert run.info.experiment_id == reg.experiment_id


def test_the_registry_connects_once_per_process_and_store(default_config, workspace, tmp_path, monkeypatch):
    """Every method after the first reuses the connection: no experiment lookup, no global URI reset."""
    import mlflow
    from mlflow import MlflowClient

    counts = {"set_tracking_uri": 0, "get_experiment_by_name": 0}
    set_tracking_uri, get_experiment_by_name = mlflow.set_tracking_uri, MlflowClient.get_experiment_by_name

    def counted_set_tracking_uri(uri):  # MLflow's own function, called through: only counted
        counts["set_tracking_uri"] += 1
        return set_tracking_uri(uri)

    def counted_get_experiment_by_name(self, name):
        counts["get_experiment_by_name"] += 1
        return get_experiment_by_name(self, name)

    monkeypatch.setattr(mlflow, "set_tracking_uri", counted_set_tracking_uri)
    monkeypatch.setattr(MlflowClient, "get_experiment_by_name", counted_get_experiment_by_name)

    cfg = default_config
    reg = Registry(cfg, workspace)
    assert counts == {"set_tracking_uri": 0, "get_experiment_by_name": 0}, (
        "making a Registry connects nothing"
    )
    assert reg.champion() is None
    ref = reg.log_candidate(_candidate(cfg, 1))
    reg.record_decision(ref, {"passed": True}, {"ctcd.gate": "passed"})
    reg.promote(ref, "first", expected_champion=None)
    assert Registry(cfg, workspace).require_champion().version == ref.version  # a new object, same connection
    assert [r.version for r in reg.versions()] == [ref.version]
    assert len(reg.load_reference(ref)) == 80 and reg.load_decision(ref) == {"passed": True}
    assert hasattr(reg.load_model(ref), "predict_proba")
    reg.log_monitoring({"drift_share": 0.1}, model_version=ref.version)
    assert counts == {"set_tracking_uri": 1, "get_experiment_by_name": 1}
    assert Registry(cfg, workspace).client is reg.client

    # A second store in the same process connects once too; coming back repoints MLflow, reconnects nothing.
    other = Registry(cfg, Workspace.open(tmp_path / "other-home"))
    assert other.versions() == [] and other.champion() is None
    assert counts == {"set_tracking_uri": 2, "get_experiment_by_name": 2}
    assert reg.require_champion().version == ref.version
    assert mlflow.get_tracking_uri() == reg.uri
    assert counts == {"set_tracking_uri": 3, "get_experiment_by_name": 2}


def test_connection_errors_retry_then_say_which_server(default_config, workspace):
    from ctcd.errors import DependencyUnavailable

    calls = []

    def refused() -> None:
        calls.append(1)
        raise ConnectionError("Connection refused")

    with pytest.raises(DependencyUnavailable, match="MLflow at http://x"):
        with_retries(refused, "MLflow at http://x", attempts=3, delay_s=0.01)
    assert len(calls) == 3
    with pytest.raises(ValueError):
        with_retries(lambda: (_ for _ in ()).throw(ValueError("bad")), "MLflow", delay_s=0.01)


def test_only_xgboost_and_sklearn_types_are_trusted():
    from xgboost import XGBClassifier

    x = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0]})
    found = tracking.trusted_types(XGBClassifier(n_estimators=2, n_jobs=1).fit(x, [0, 1, 0, 1]))
    assert "xgboost.sklearn.XGBClassifier" in found


def test_importing_the_registry_loads_neither_mlflow_nor_skops():
    """Commands that never log a model do not pay for skops (seconds per fresh process) or MLflow."""
    import subprocess
    import sys
    from pathlib import Path

    heavy = ("mlflow", "skops", "sklearn")
    code = f"import sys, ctcd.registry, ctcd.tracking; print([m for m in {heavy!r} if m in sys.modules])"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
