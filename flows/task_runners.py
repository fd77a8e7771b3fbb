"""Task runners for flows that spread their tasks over a cluster (the `dask` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.distributed_training import require_dask

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

    from ctcd.config import CtcdConfig


def dask_task_runner(cfg: CtcdConfig, local_workers: int | None = None) -> DaskTaskRunner:
    """A `DaskTaskRunner` on `orchestration.dask_address`, or on a local cluster of `local_workers`
    (default `orchestration.dask_workers`) single-threaded worker processes."""
    require_dask("prefect_dask")
    from prefect_dask import DaskTaskRunner

    if cfg.orchestration.dask_address:
        return DaskTaskRunner(address=cfg.orchestration.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": local_workers or cfg.orchestration.dask_workers,
            "threads_per_worker": 1,
            "dashboard_address": None,
        }
    )
