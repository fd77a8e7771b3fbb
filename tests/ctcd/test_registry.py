"""The MLflow seam against the embedded SQLite store: aliases, loading, and the audit log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ctcd import registry
from ctcd.errors import NoChampion, UsageError


def _register(cfg, ws, seed: int) -> registry.ModelRef:
    import mlflow
    from mlflow.models import infer_signature

    registry.connect(cfg, ws)
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
            pip_requirements=registry.pip_requirements(),  # inferring them costs a subprocess per model
        )
    return registry.version(cfg, ws, info.registered_model_version)


def test_aliases_history_and_loading(default_config, workspace):
    with pytest.raises(NoChampion, match="ctcd run"):
        registry.require_champion(default_config, workspace)
    v1 = _register(default_config, workspace, 1)
    v2 = _register(default_config, workspace, 2)
    assert workspace.mlflow_db.exists()
    assert any(workspace.mlflow_artifacts.iterdir()), "artifacts must live in the workspace"

    registry.move_alias(default_config, workspace, registry.CHAMPION, v1, reason="first")
    registry.move_alias(default_config, workspace, registry.CHAMPION, v2, reason="better")
    champ = registry.require_champion(default_config, workspace)
    assert champ.version == v2.version
    assert champ.tags["ctcd.promotion_reason"] == "better"

    history = registry.alias_history(workspace)
    assert [(h["version"], h["previous"]) for h in history] == [(v1.version, None), (v2.version, v1.version)]

    model = registry.load_model(default_config, workspace, champ)
    assert model.predict_proba(pd.DataFrame({"a": [1.0], "b": [0.0]})).shape == (1, 2)
    assert [r.version for r in registry.versions(default_config, workspace)] == [v2.version, v1.version]


def _candidate(cfg, seed: int, reason: str = "test") -> registry.CandidateRun:
    """A small real candidate with everything a training run logs."""
    ds = cfg.dataset
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(80, len(ds.features))), columns=ds.features)
    y = (x[ds.features[0]] > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    batch = x.assign(**{ds.id_column: range(80), ds.target: y})
    return registry.CandidateRun(
        model=model,
        params={"C": 1.0, "search": {"budget": 2}},
        metrics={"test_roc_auc": 0.9 + seed / 100},
        evaluation={"metrics": {"roc_auc": 0.9}, "slices": {}},
        reference=x.assign(**{ds.target: y, "probability": 0.5, "prediction": 1}),
        input_example=x.head(3),
        batches=[
            registry.LoggedBatch(f"2026-01-0{seed}", f"{seed:064x}", f"/data/2026-01-0{seed}.parquet", batch)
        ],
        config_yaml="dataset: {name: x}\n",
        tags={"ctcd.reason": reason, "ctcd.trigger": "{}"},
        json_artifacts={"search.json": {"best": 0}},
        children=[registry.ChildRun("candidate-0", {"C": 1.0}, {"validation_roc_auc": 0.9})],
        run_name=f"train-{seed}",
    )


def test_log_candidate_registers_a_challenger_with_lineage_and_artifacts(default_config, workspace):
    import mlflow

    cfg, ws = default_config, workspace
    ref = registry.log_candidate(cfg, ws, _candidate(cfg, 1, reason="drift"))
    assert ref.version == "1" and registry.CHALLENGER in ref.aliases
    assert registry.champion(cfg, ws) is None, "registering never makes a champion"
    t = ref.tags
    assert t["ctcd.reason"] == "drift"
    assert t["ctcd.data.batches"] == f"2026-01-01:{1:064x}"[:23]
    assert t["ctcd.metric.test_roc_auc"] == "0.910000"
    assert len(t["ctcd.config_sha256"]) == 64 and t["ctcd.run_id"] == ref.run_id

    client = registry.connect(cfg, ws)
    run = client.get_run(ref.run_id)
    assert run.data.params["C"] == "1.0" and run.data.params["search"] == '{"budget": 2}'
    assert run.data.tags["ctcd.data.digest"] == t["ctcd.data.digest"]
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "2026-01-01"
    assert {tag.key: tag.value for tag in inp.tags}["sha256"] == f"{1:064x}"
    files = {a.path for a in client.list_artifacts(ref.run_id)}
    assert {"config.yaml", "evaluation.json", "search.json", "reference"} <= files
    children = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{ref.run_id}'"
    )
    assert len(children) == 1
    assert len(registry.load_reference(cfg, ws, ref)) == 80
    assert registry.load_evaluation(cfg, ws, ref)["metrics"]["roc_auc"] == 0.9
    model = registry.load_model(cfg, ws, ref)
    assert model.predict_proba(
        pd.DataFrame(np.zeros((1, len(cfg.dataset.features))), columns=cfg.dataset.features)
    ).shape == (1, 2)
    assert registry.alias_history(ws, registry.CHALLENGER)[-1]["version"] == "1"


def test_decisions_promotions_and_rollbacks_are_recorded(default_config, workspace):
    cfg, ws = default_config, workspace
    v1 = registry.log_candidate(cfg, ws, _candidate(cfg, 1))
    v2 = registry.log_candidate(cfg, ws, _candidate(cfg, 2))
    assert registry.load_decision(cfg, ws, v1) is None
    registry.record_decision(cfg, ws, v1, {"passed": True, "checks": []}, {"ctcd.gate.passed": "true"})
    assert registry.load_decision(cfg, ws, v1) == {"passed": True, "checks": []}
    assert registry.version(cfg, ws, "1").tags["ctcd.gate.passed"] == "true"

    with pytest.raises(UsageError, match="no earlier champion"):
        registry.rollback(cfg, ws, "nothing yet")
    registry.promote(cfg, ws, v1, "first", actor="ci")
    registry.promote(cfg, ws, v2, "better", actor="ci")
    assert registry.champion_stack(ws) == ["1", "2"]
    entry = registry.rollback(cfg, ws, "v2 misbehaves", actor="ops")
    assert (entry["version"], entry["from"], entry["actor"], entry["action"]) == ("1", "2", "ops", "rollback")
    assert registry.require_champion(cfg, ws).version == "1"
    assert registry.champion_stack(ws) == ["1"]
    with pytest.raises(UsageError):
        registry.rollback(cfg, ws, "again")
    moves = [(h["version"], h.get("action")) for h in registry.alias_history(ws)]
    assert moves == [("1", "promote"), ("2", "promote"), ("1", "rollback")]


def test_log_monitoring_is_a_run_of_the_same_experiment(default_config, workspace, tmp_path):
    cfg, ws = default_config, workspace
    report = tmp_path / "drift.html"
    report.write_text("<html></html>")
    run_id = registry.log_monitoring(
        cfg,
        ws,
        {"drift_share": 0.4},
        model_version="3",
        tags={"ctcd.verdict": "retrain"},
        artifacts={"reports": report},
    )
    run = registry.connect(cfg, ws).get_run(run_id)
    assert run.data.metrics == {"drift_share": 0.4}
    assert run.data.tags["ctcd.kind"] == "monitoring" and run.data.tags["ctcd.model_version"] == "3"


def test_connection_errors_retry_then_say_which_server(default_config, workspace):
    from ctcd.errors import DependencyUnavailable

    calls = []

    def refused() -> None:
        calls.append(1)
        raise ConnectionError("Connection refused")

    with pytest.raises(DependencyUnavailable, match="MLflow at http://x"):
        registry.with_retries(refused, "MLflow at http://x", attempts=3, delay_s=0.01)
    assert len(calls) == 3
    with pytest.raises(ValueError):
        registry.with_retries(lambda: (_ for _ in ()).throw(ValueError("bad")), "MLflow", delay_s=0.01)


def test_only_xgboost_and_sklearn_types_are_trusted():
    from xgboost import XGBClassifier

    x = pd.DataFrame({"a": [0.0, 1.0, 0.0, 1.0]})
    found = registry.trusted_types(XGBClassifier(n_estimators=2, n_jobs=1).fit(x, [0, 1, 0, 1]))
    assert "xgboost.sklearn.XGBClassifier" in found
