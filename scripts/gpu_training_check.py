"""Check the GPU-pool training path on a machine with an NVIDIA GPU.

It runs ctcd's own training task (`tasks.training.search`, XGBoost with `device="cuda"` when
`training.device: auto` finds a GPU) on the default stream, trains the same search on the CPU for
comparison, and checks that the GPU-trained model serves on a CPU-only process with the same answers
(the registered model must serve on CPU). Prints one JSON document (and writes it to $OUT if set).

    .venv/bin/python scripts/gpu_training_check.py [--days 20] [--big-rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctcd.config import load_config
from ctcd.stream.scenario import generate_day
from tasks import dataset, training
from tasks.model import features_frame, positive_proba, target_vector

CPU_PREDICT = """
import pickle, sys
import numpy as np
model = pickle.load(open(sys.argv[1], "rb"))
X = pickle.load(open(sys.argv[2], "rb"))
np.save(sys.argv[3], model.predict_proba(X)[:, 1])
"""


def stream_split(cfg, days: int) -> dataset.Split:
    """Days 1..`days` of the default stream, labels joined, split in time order."""
    inputs = []
    for day in range(1, days + 1):
        batch = generate_day(cfg, day)
        frame = dataset.join_labels(batch.features, batch.labels, cfg.dataset)
        inputs.append(dataset.BatchInput(batch.batch_id, "-", "generated", frame))
    return dataset.time_split(dataset.training_frame(inputs, cfg.dataset), cfg.training)


def auc_on_test(cfg, model, split: dataset.Split) -> float:
    from sklearn.metrics import roc_auc_score

    X, y = features_frame(split.test, cfg.dataset), target_vector(split.test, cfg.dataset)
    return float(roc_auc_score(y, positive_proba(model, X)))


def timed_search(cfg, split, device: training.DeviceChoice) -> tuple[training.SearchResult, float]:
    start = time.perf_counter()
    result = training.search(cfg, split, device)
    return result, time.perf_counter() - start


def serves_on_cpu(cfg, model, split) -> float:
    """Max |difference| between in-process answers and a CPU-only process's answers."""
    X = features_frame(split.test, cfg.dataset)
    with tempfile.TemporaryDirectory() as tmp:
        m, x, out = Path(tmp, "m.pkl"), Path(tmp, "x.pkl"), Path(tmp, "p.npy")
        m.write_bytes(pickle.dumps(model))
        x.write_bytes(pickle.dumps(X))
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        subprocess.run([sys.executable, "-c", CPU_PREDICT, m, x, out], check=True, env=env)
        served = np.load(out)
    return float(np.max(np.abs(served - positive_proba(model, X))))


def big_fit(cfg, rows: int, device: str) -> float:
    """Seconds to fit the configured XGBoost (no early stopping) on `rows` generated rows."""
    from xgboost import XGBClassifier

    from tasks.model import xgboost_params

    per_day = 50_000
    frames = [
        generate_day(
            cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"rows_per_day": per_day})}), d
        )
        for d in range(1, rows // per_day + 1)
    ]
    frame = pd.concat([dataset.join_labels(b.features, b.labels, cfg.dataset) for b in frames])
    X, y = features_frame(frame, cfg.dataset), target_vector(frame, cfg.dataset)
    model = XGBClassifier(**xgboost_params(cfg, {"n_estimators": 300, "max_depth": 8}, device))
    start = time.perf_counter()
    model.fit(X, y)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    args = parser.parse_args()

    cfg = load_config()
    chosen = training.choose_device("auto")
    split = stream_split(cfg, args.days)
    gpu, gpu_s = timed_search(cfg, split, chosen)
    cpu, cpu_s = timed_search(cfg, split, training.choose_device("cpu"))
    report = {
        "gpus": list(training.visible_gpus()),
        "auto_device": chosen.device,
        "auto_reason": chosen.reason,
        "rows": split.rows,
        "search_seconds": {"auto": round(gpu_s, 2), "cpu": round(cpu_s, 2)},
        "test_auc": {
            "auto": auc_on_test(cfg, gpu.best.model, split),
            "cpu": auc_on_test(cfg, cpu.best.model, split),
        },
        "model_device_after_training": gpu.best.model.get_params()["device"],
        "cpu_process_max_abs_diff": serves_on_cpu(cfg, gpu.best.model, split),
    }
    if args.big_rows:
        cuda = big_fit(cfg, args.big_rows, chosen.device)
        cpu_big = big_fit(cfg, args.big_rows, "cpu")
        report["big_fit"] = {
            "rows": args.big_rows,
            f"{chosen.device}_seconds": round(cuda, 2),
            "cpu_seconds": round(cpu_big, 2),
            "cpu_over_auto": round(cpu_big / cuda, 2),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu-check.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
