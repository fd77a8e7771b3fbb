"""The scale-out path: `xgboost.dask` training and prefect-dask's DaskTaskRunner on a real LocalCluster."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ctcd.config import CtcdConfig
from ctcd.workspace import Workspace
from tests.live_stack import PrefectServer, reporting_to

REPO = Path(__file__).resolve().parents[2]


def _frame(cfg: CtcdConfig, rows: int, seed: int) -> pd.DataFrame:
    """Rows with the dataset's columns whose target depends on the first two features."""
    rng = np.random.default_rng(seed)
    ds = cfg.dataset
    frame = pd.DataFrame({c: rng.normal(size=rows) for c in ds.numerical_features})
    for c in ds.categorical_features:
        frame[c] = rng.integers(0, 5, size=rows)
    a, b = ds.features[0], ds.features[1]
    signal = frame[a] + 0.5 * frame[b] + rng.normal(scale=0.3, size=rows)
    frame[ds.target] = np.where(signal > 0, ds.positive_label, 1 - ds.positive_label)
    frame[ds.id_column] = np.arange(rows)
    return frame


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A two-worker Dask cluster in this process (threads: cheap on 2 cores, same protocol as a real one)."""
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    pytest.importorskip("prefect_dask", reason="the dask extra is not installed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:
        yield local


@pytest.mark.integration
def test_xgboost_dask_trains_the_model_contracts_pipeline(cluster: Any, default_config: CtcdConfig) -> None:
    from distributed import Client
    from sklearn.metrics import roc_auc_score
    from xgboost import XGBClassifier

    from tasks.distributed_training import partition, train_on_dask
    from tasks.model import features_frame, final_estimator, positive_proba, target_vector

    cfg = default_config
    train, valid, test = (_frame(cfg, n, seed) for n, seed in ((3000, 1), (800, 2), (1000, 3)))
    with Client(cluster) as client:
        fit = train_on_dask(
            cfg,
            client,
            partition(train, 4),
            partition(valid, 2),
            params={"n_estimators": 60, "max_depth": 3},
        )
    # The Model contract: category encoding, then a plain XGBClassifier; no Dask needed to use it.
    assert isinstance(final_estimator(fit.model), XGBClassifier)
    assert (fit.workers, fit.partitions, fit.rows) == (2, 4, 3000)
    assert fit.best_iteration is not None and fit.best_iteration < 60
    assert final_estimator(fit.model).get_params()["max_depth"] == 3
    auc = roc_auc_score(
        target_vector(test, cfg.dataset), positive_proba(fit.model, features_frame(test, cfg.dataset))
    )
    assert auc > 0.9


@pytest.mark.integration
def test_dask_task_runner_runs_flow_tasks_on_the_cluster_workers(
    cluster: Any, default_config: CtcdConfig, workspace: Workspace, shared_prefect: PrefectServer
) -> None:
    from prefect import flow, task

    from flows.task_runners import dask_task_runner

    cfg = default_config.model_copy(
        update={
            "orchestration": default_config.orchestration.model_copy(
                update={"dask_address": cluster.scheduler_address}
            )
        }
    )

    @task
    def where_am_i(i: int) -> str:
        from distributed import get_worker

        return get_worker().address

    @flow(task_runner=dask_task_runner(cfg))
    def spread(n: int) -> list[str]:
        return [f.result() for f in where_am_i.map(range(n))]

    with reporting_to(shared_prefect):  # the session's real Prefect server (tests/live_stack.py)
        addresses = spread(8)
    assert set(addresses) <= {w.address for w in cluster.workers.values()}
    assert len(set(addresses)) == 2


def test_the_module_imports_and_explains_itself_without_dask() -> None:
    code = (
        "import sys\n"
        "for name in ('dask', 'dask.dataframe', 'distributed', 'prefect_dask'):\n"
        "    sys.modules[name] = None\n"
        "import tasks.distributed_training\n"
        "from flows.task_runners import dask_task_runner\n"
        "from ctcd.config import load_config\n"
        "try:\n"
        "    dask_task_runner(load_config())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("DependencyUnavailable")
    assert "pip install -e '.[dask]'" in out.stdout


@pytest.mark.integration
def test_xgboost_dask_learns_text_categories_like_training_in_memory(
    cluster: Any, default_config: CtcdConfig
) -> None:
    from distributed import Client
    from sklearn.metrics import roc_auc_score

    from tasks.distributed_training import partition, train_on_dask
    from tasks.model import build_model, features_frame, positive_proba, target_vector
    from tests.tasks.test_real_data_types import shop_config, shop_day

    cfg = shop_config(default_config)
    train = pd.concat([shop_day(500, d) for d in (1, 2, 3)], ignore_index=True)
    test = shop_day(500, 4)
    with Client(cluster) as client:
        fit = train_on_dask(cfg, client, partition(train, 3), params={"n_estimators": 60, "max_depth": 3})
    in_memory = build_model(cfg, "xgboost").fit(
        features_frame(train, cfg.dataset), target_vector(train, cfg.dataset)
    )
    codes = fit.model.steps[0][1].named_transformers_["cat"].categories_
    expected = in_memory.steps[0][1].named_transformers_["cat"].categories_
    assert [list(c) for c in codes] == [list(c) for c in expected]
    proba = positive_proba(fit.model, features_frame(test, cfg.dataset))
    assert roc_auc_score(target_vector(test, cfg.dataset), proba) > 0.9


@pytest.mark.integration
def test_the_training_step_searches_on_dask_when_it_is_configured(
    cluster: Any, default_config: CtcdConfig
) -> None:
    from ctcd.stream.scenario import generate_day
    from tasks import ct_steps, dataset, training
    from tests.tasks.test_training import small_config

    alone = small_config(default_config, rows_per_day=600)
    on_dask = alone.model_copy(
        update={
            "orchestration": alone.orchestration.model_copy(
                update={"dask_address": cluster.scheduler_address}
            )
        }
    )
    assert on_dask.orchestration.uses_dask and not alone.orchestration.uses_dask
    inputs = []
    for day in (1, 2, 3, 4):
        b = generate_day(alone, day)
        frame = dataset.join_labels(b.features, b.labels, alone.dataset)
        inputs.append(dataset.BatchInput(b.batch_id, "sha", f"{b.batch_id}.parquet", frame))
    split = ct_steps.training_split(inputs, alone)
    device = training.choose_device("cpu")

    before = cluster.scheduler.transition_counter
    fitted = ct_steps.fit(on_dask, split, device)
    assert cluster.scheduler.transition_counter > before  # the cluster did the fitting
    reference = ct_steps.fit(alone, split, device)

    assert [c.params for c in fitted.result.candidates] == [c.params for c in reference.result.candidates]
    for dask_fit, local_fit in zip(fitted.result.candidates, reference.result.candidates, strict=True):
        assert abs(dask_fit.validation_score - local_fit.validation_score) < 0.05
    best = ct_steps.evaluate(fitted, split, on_dask)
    assert best.report.metrics["roc_auc"] > 0.7
