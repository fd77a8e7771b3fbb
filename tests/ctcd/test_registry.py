"""The MLflow seam against the embedded SQLite store: aliases, loading, and the audit log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ctcd import registry
from ctcd.errors import NoChampion


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
