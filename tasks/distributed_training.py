"""Scale-out training for data that outgrows one machine: XGBoost on a Dask cluster (the `dask` extra).

`train_on_dask` fits one model with `xgboost.dask` on data partitioned across the cluster's workers, then
returns it as the same Pipeline (category encoding, then a plain `XGBClassifier`) every other part of ctcd
uses (the Model contract of `tasks/model.py`), so evaluation, the registry and serving do not change.
`search_on_dask` is the training step's search when `orchestration.dask` is `local` or
`orchestration.dask_address` is set (`tasks/ct_steps.py:fit` chooses).
`flows/task_runners.py:dask_task_runner` gives a flow prefect-dask's `DaskTaskRunner` on the same cluster,
so independent tasks (the search's candidates) run on its workers. Dask is imported only inside the
functions: without the extra, ctcd works as before.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from ctcd.errors import DependencyUnavailable
from tasks import training
from tasks.dataset import Split
from tasks.evaluation import metric_value
from tasks.model import (
    Model,
    candidate_kind,
    category_codes,
    features_frame,
    positive_proba,
    target_vector,
    xgboost_params,
)

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

    from ctcd.config import CtcdConfig

INSTALL_HINT = "install the scale-out extra: pip install -e '.[dask]' (prefect-dask, dask[distributed])"


@dataclass(frozen=True)
class DistributedFit:
    """A model trained across a Dask cluster, and how the work was spread."""

    model: Model
    workers: int
    partitions: int
    rows: int
    best_iteration: int | None


def require_dask(*modules: str) -> None:
    """Raise DependencyUnavailable with the install command when the `dask` extra is missing (Dask, and
    the extra's `modules`, e.g. prefect_dask)."""
    import importlib

    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401

        for name in modules:
            importlib.import_module(name)
    except ImportError as exc:
        raise DependencyUnavailable(
            f"scale-out training needs Dask ({exc.name} is missing): {INSTALL_HINT}"
        ) from exc


@contextlib.contextmanager
def dask_client(cfg: CtcdConfig) -> Iterator[Client]:
    """A client of `orchestration.dask_address`, or of a local cluster of `orchestration.dask_workers`
    single-threaded worker processes (closed on exit)."""
    require_dask()
    from distributed import Client, LocalCluster

    orch = cfg.orchestration
    if orch.dask_address:
        with Client(orch.dask_address) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=orch.dask_workers, threads_per_worker=1, dashboard_address=None, processes=True
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def search_on_dask(cfg: CtcdConfig, split: Split, device: training.DeviceChoice) -> training.SearchResult:
    """The budgeted search with every XGBoost candidate fitted by `xgboost.dask` on the configured cluster
    (one partition per worker); other model flavors fit in this process as usual."""
    if candidate_kind(cfg) != "xgboost":
        return training.search(cfg, split, device)
    with dask_client(cfg) as client:
        fit_one = functools.partial(fit_candidate_on_dask, client=client)
        return training.search(cfg, split, device, fit_one=fit_one)


def fit_candidate_on_dask(
    cfg: CtcdConfig,
    split: Split,
    params: dict[str, Any],
    device: training.DeviceChoice,
    *,
    client: Client,
) -> training.Candidate:
    """`training.fit_candidate` on the cluster: fit on train with early stopping on validation, score on
    validation (here: one prediction pass)."""
    ds = cfg.dataset
    training.check_two_classes(cfg, split.train, target_vector(split.train, ds))
    parts = max(1, len(client.scheduler_info()["workers"]))
    start = time.perf_counter()
    fit = train_on_dask(
        cfg, client, partition(split.train, parts), partition(split.validation, parts), params, device.device
    )
    seconds = time.perf_counter() - start
    y_val = target_vector(split.validation, ds).to_numpy()
    proba = positive_proba(fit.model, features_frame(split.validation, ds))
    score = metric_value(cfg.gates.model.primary_metric, y_val, proba)
    return training.Candidate(dict(params), score, fit.best_iteration, seconds, fit.model)


def partition(frame: pd.DataFrame, partitions: int) -> dd.DataFrame:
    """Split an in-memory frame into a Dask DataFrame of `partitions` parts (on a real cluster, read the
    batches with `dask.dataframe.read_parquet` from storage every worker reaches instead)."""
    require_dask()
    import dask.dataframe as dd

    return dd.from_pandas(frame, npartitions=max(1, partitions))


def train_on_dask(
    cfg: CtcdConfig,
    client: Client,
    train: dd.DataFrame,
    valid: dd.DataFrame | None = None,
    params: dict[str, Any] | None = None,
    device: str = "cpu",
) -> DistributedFit:
    """Fit XGBoost with `xgboost.dask` on the cluster behind `client`; return a local Model (a Pipeline).

    `train` and `valid` hold the dataset's features and target (column names from `cfg.dataset`); with
    `valid`, training stops early after `model.early_stopping_rounds` rounds without improvement.
    """
    require_dask()
    from sklearn.pipeline import Pipeline
    from xgboost import XGBClassifier
    from xgboost import dask as dxgb

    ds = cfg.dataset
    full_params = xgboost_params(cfg, params, device)
    model = dxgb.DaskXGBClassifier(
        **full_params, early_stopping_rounds=cfg.model.early_stopping_rounds if valid is not None else None
    )
    model.client = client
    X = train.map_partitions(features_frame, ds)
    columns = _fit_codes(ds, X)
    meta = pd.DataFrame({c: pd.Series(dtype="float64") for c in ds.features})
    y = train.map_partitions(target_vector, ds)
    eval_set = None
    if valid is not None:
        X_valid = valid.map_partitions(features_frame, ds).map_partitions(columns.transform, meta=meta)
        eval_set = [(X_valid, valid.map_partitions(target_vector, ds))]
    model.fit(X.map_partitions(columns.transform, meta=meta), y, eval_set=eval_set, verbose=False)
    # The booster holds the classes and the best iteration; the constructor keeps the parameters.
    local = XGBClassifier(**full_params)
    local.load_model(bytearray(model.get_booster().save_raw("json")))
    return DistributedFit(
        model=Pipeline([("columns", columns), ("classifier", local)]),
        workers=len(client.scheduler_info()["workers"]),
        partitions=train.npartitions,
        rows=len(train),
        best_iteration=getattr(local, "best_iteration", None),
    )


def _fit_codes(ds: Any, X: dd.DataFrame) -> Any:
    """The category encoding step fitted on every category of the distributed frame (one pass per column):
    the same categories, in the same order, as fitting it on the whole frame in memory."""
    seen = {c: X[c].dropna().unique().compute().tolist() for c in ds.categorical_features}
    rows = max([1, *(len(v) for v in seen.values())])
    sample = pd.DataFrame({c: [0.0] * rows for c in ds.numerical_features})
    for c, values in seen.items():
        padded = (values or [float("nan")]) * rows
        sample[c] = pd.Series(padded[:rows], dtype="float64" if X[c].dtype == "float64" else object)
    return category_codes(ds).fit(sample[ds.features])
