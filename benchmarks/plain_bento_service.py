"""A plain batched BentoML service: the framework's own floor for `bench_serving.py`.

The same model as ctcd's service, loaded from `BENCH_MODEL_URI`, and the same JSON request shape
(`{"rows": [{feature: number, ...}]}`), but no data contract, no API key guard, no prediction log: one
pydantic model of plain floats, one DataFrame per batch, `predict_proba`, a list of probabilities back.
`BENCH_FEATURES` lists the feature names (comma-separated), `BENCH_MAX_BATCH` the batch size.
"""

from __future__ import annotations

import os

import bentoml
import numpy as np
from pydantic import create_model

FEATURES = os.environ["BENCH_FEATURES"].split(",")
Row = create_model("Row", **{name: (float, ...) for name in FEATURES})  # type: ignore[call-overload]


@bentoml.service(name="plain", workers=1, traffic={"timeout": 60})
class PlainService:
    """Scores rows with the model at `BENCH_MODEL_URI`, nothing else."""

    def __init__(self) -> None:
        import mlflow

        self.model = mlflow.sklearn.load_model(os.environ["BENCH_MODEL_URI"])

    @bentoml.api(
        batchable=True, max_batch_size=int(os.environ.get("BENCH_MAX_BATCH", "64")), max_latency_ms=5000
    )
    def predict(self, rows: list[Row]) -> list[float]:  # type: ignore[valid-type]
        import pandas as pd

        frame = pd.DataFrame([r.model_dump() for r in rows], columns=FEATURES, dtype="float64")
        return np.asarray(self.model.predict_proba(frame))[:, 1].tolist()
