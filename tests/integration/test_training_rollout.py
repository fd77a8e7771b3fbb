"""The training flow with `serving.rollout: shadow`: a blessed candidate is not promoted; it becomes the
challenger and the report asks the delivery for a shadow rollout (the online gate decides later)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctcd import audit, registry
from tests.integration.test_training_flow import land_validated, write_config
from tests.live_stack import reporting_to
from tests.tasks.test_training import small_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def prefect_server(shared_prefect):
    """The session's real Prefect server (tests/live_stack.py)."""
    with reporting_to(shared_prefect):
        yield


def test_a_blessed_candidate_goes_to_shadow_instead_of_being_promoted(
    prefect_server, default_config, workspace, tmp_path
):
    from flows.training import training_flow

    base = small_config(default_config)
    # The first champion learns shuffled labels (no floors, so it serves): any real candidate beats it.
    no_floors = base.gates.model.model_copy(update={"floors": {}})
    first_cfg = base.model_copy(update={"gates": base.gates.model_copy(update={"model": no_floors})})
    ids = land_validated(first_cfg, workspace, range(1, 7))
    truth = {i: pd.read_parquet(workspace.labels / f"{i}.parquet") for i in ids}
    rng = np.random.default_rng(0)
    for i, labels in truth.items():
        shuffled = labels.assign(
            **{base.dataset.target: rng.permutation(labels[base.dataset.target].to_numpy())}
        )
        shuffled.to_parquet(workspace.labels / f"{i}.parquet", index=False)
    first = training_flow(str(write_config(first_cfg, tmp_path / "first.yaml")), reason="first")
    champion = registry.Registry(first_cfg, workspace).require_champion().version
    assert first.promoted and first.rollout is None  # no champion yet: promoted at once

    for i, labels in truth.items():
        labels.to_parquet(workspace.labels / f"{i}.parquet", index=False)
    shadow_cfg = base.model_copy(update={"serving": base.serving.model_copy(update={"rollout": "shadow"})})
    report = training_flow(str(write_config(shadow_cfg, tmp_path / "shadow.yaml")), reason="drift: test")

    assert report.decision.passed, report.decision.summary()
    assert (report.promoted, report.rollout, report.rollout_version) == (False, "shadow", report.version)
    reg = registry.Registry(shadow_cfg, workspace)
    assert reg.require_champion().version == champion
    assert reg.by_alias(registry.CHALLENGER).version == report.version
    last = audit.alias_history(workspace, registry.CHALLENGER)[-1]
    assert last["version"] == report.version and last["reason"].startswith("shadow rollout: drift: test")
