"""Benchmark: how one daily CT cycle's cost grows with the batch size (seconds and peak RSS per stage).

Run: `.venv/bin/python benchmarks/bench_scale.py [--sizes 10000 100000 1000000] [--window 7] [--n-jobs 1]
[--dask local]`.

For each size N (rows per daily batch) the default Agrawal stream (`configs/default.yaml`, no events)
writes `window + 1` daily batches and their labels as Parquet (untimed: the generator is not ctcd's cost).
Then each stage of one daily cycle runs in a fresh Python process, so its peak RSS is its own:

- land:    ctcd's reader (`read_batch`) on the day's file, then `file_batch` moves it to validated/
- gate:    the data gate (`DataGate.validate`, GX BOOLEAN_ONLY checkpoint) on the day's batch
- train:   read the window's N x window rows + join labels, time split, budgeted XGBoost search, baseline,
           holdout evaluation, reference sample (the training flow's steps, no Prefect/MLflow)
- model gate: the candidate vs the champion (the previous model) on the holdout: paired bootstrap, floors
- monitor: the champion scores the day's batch; covariate/prediction/prior shift vs the bounded reference
           sample, and performance on the previous day's labelled predictions

With `--dask local` (the `dask` extra), three more stages run beside them, and their ratios are printed:

- train_dask:  the train stage with `orchestration.dask: local` (the search on `xgboost.dask`, a LocalCluster
               of `--dask-workers` single-threaded worker processes; cluster start-up timed apart)
- gate_all:    the data gate on every one of the window + 1 batches, one after the other, in one process
- gate_dask:   the same batches in parallel on a LocalCluster, one attached gate per worker (as the ingest
               flow's Dask path does; cluster start-up and the workers' gate opening timed apart)

The Dask stages' peak RSS adds the largest worker's (`RUSAGE_CHILDREN`, after the cluster closed).

Seconds are the stage's own work (imports and reading inputs the stage does not own are not timed; the
train stage times its reads). Peak RSS is the process's maximum resident set (`ru_maxrss`), imports
included; "base" is the RSS after imports, before the stage. The growth exponent between two sizes is the
log-log slope d log(seconds) / d log(N): 1.0 is linear. Small sizes are dominated by fixed costs, so the
exponent from 100k up is the one that matters.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STAGES = ("land", "gate", "train", "model_gate", "monitor")
DASK_STAGES = ("train_dask", "gate_all", "gate_dask")


def _rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _config(rows: int, n_jobs: int, dask_workers: int = 0):
    from ctcd.config import load_config

    base = load_config(REPO / "configs" / "default.yaml")
    assert base.stream is not None
    params = {**base.model.params, **({"n_jobs": n_jobs} if n_jobs else {})}
    orch = {"dask": "local", "dask_workers": dask_workers} if dask_workers else {}
    return base.model_copy(
        update={
            "stream": base.stream.model_copy(update={"rows_per_day": rows, "events": []}),
            "training": base.training.model_copy(update={"device": "cpu"}),
            "model": base.model.model_copy(update={"params": params}),
            "orchestration": base.orchestration.model_copy(update=orch),
        }
    )


def _bench_suite(cfg, rows: int) -> dict:
    from ctcd import gx_gate

    suite = gx_gate.load_suite(cfg.gates.data.suite)
    for e in suite["expectations"]:
        if e["type"] == "expect_table_row_count_to_be_between" and e["severity"] == "warning":
            e["kwargs"] = {"min_value": rows // 2, "max_value": rows * 2}
    return suite


_WORKER_GATE: list = []


def _gate_on_worker(cfg, ws, suite: dict, path: Path) -> bool:
    """One batch through this worker process's attached gate (opened on its first batch)."""
    from ctcd import gx_gate
    from ctcd.batches import read_batch
    from tasks import validation

    if not _WORKER_GATE:
        _WORKER_GATE.append(gx_gate.DataGate(ws, suite, keep_results=sys.maxsize, attach=True))
    frame = read_batch(path, cfg)
    run = _WORKER_GATE[0].validate(frame, path.stem)
    return validation.judge(run.result, path.stem, rows=len(frame)).accepted


def prepare(root: Path, rows: int, window: int, n_jobs: int) -> None:
    """Write window + 1 days of features and labels (the last day is the one the cycle lands)."""
    from ctcd.stream.scenario import generate_day

    cfg = _config(rows, n_jobs)
    src = root / "source"
    src.mkdir(parents=True, exist_ok=True)
    for day in range(1, window + 2):
        b = generate_day(cfg, day)
        b.features.to_parquet(src / f"{b.batch_id}.parquet", index=False)
        b.labels.to_parquet(src / f"{b.batch_id}.labels.parquet", index=False)
    (root / "days.json").write_text(json.dumps(sorted(p.name[:10] for p in src.glob("*.labels.parquet"))))


def run_stage(
    stage: str, root: Path, rows: int, window: int, n_jobs: int, dask_workers: int = 2
) -> dict[str, float]:
    """One stage, in this process; returns its seconds and the process's RSS before and at its peak."""
    import numpy as np
    import pandas as pd

    from ctcd import columns
    from ctcd.batches import file_batch, read_batch, sha256_of, validated_batches
    from ctcd.workspace import Workspace
    from tasks import dataset, drift, evaluation, model_gate, training, validation
    from tasks.model import target_vector

    cfg = _config(rows, n_jobs, dask_workers if stage == "train_dask" else 0)
    ds = cfg.dataset
    os.environ["CTCD_HOME"] = str(root / "ws")
    ws = Workspace.open()
    ws.ensure()
    src = root / "source"
    days = json.loads((root / "days.json").read_text())
    today, history = days[-1], days[:-1]
    seconds = 0.0
    parts: dict[str, float] = {}

    if stage == "land":
        # The window's earlier days were filed by earlier cycles (untimed); time today's landing.
        outcome = validation.ValidationOutcome(
            batch_id="x", suite="bench", accepted=True, gx_success=True, reason="passed"
        )
        for day in history:
            path = ws.landing / f"{day}.parquet"
            path.write_bytes((src / f"{day}.parquet").read_bytes())
            file_batch(ws, path, outcome.model_copy(update={"batch_id": day}), sha256=sha256_of(path))
            (ws.labels / f"{day}.parquet").write_bytes((src / f"{day}.labels.parquet").read_bytes())
        path = ws.landing / f"{today}.parquet"
        path.write_bytes((src / f"{today}.parquet").read_bytes())
        base = _rss_mb()
        t0 = time.perf_counter()
        frame = read_batch(path, cfg)
        assert len(frame) == rows
        file_batch(ws, path, outcome.model_copy(update={"batch_id": today}), sha256=sha256_of(path))
        seconds = time.perf_counter() - t0

    elif stage == "gate":
        from ctcd import gx_gate

        gx_gate._gx()
        gate = gx_gate.DataGate(ws, _bench_suite(cfg, rows))
        frame = read_batch(ws.validated / f"{today}.parquet", cfg)
        base = _rss_mb()
        t0 = time.perf_counter()
        run = gate.validate(frame, today)
        outcome = validation.judge(run.result, today, rows=len(frame))
        seconds = time.perf_counter() - t0
        assert outcome.accepted, outcome.reason

    elif stage in ("gate_all", "gate_dask"):
        from ctcd import gx_gate

        gx_gate._gx()
        suite = _bench_suite(cfg, rows)
        gate = gx_gate.DataGate(ws, suite, keep_results=sys.maxsize)  # stores the checkpoints
        files = [ws.validated / f"{day}.parquet" for day in days]
        base = _rss_mb()
        if stage == "gate_all":
            t0 = time.perf_counter()
            accepted = [_gate_on_worker(cfg, ws, suite, path) for path in files]
            seconds = time.perf_counter() - t0
        else:
            from distributed import Client, LocalCluster

            t0 = time.perf_counter()
            with (
                LocalCluster(n_workers=dask_workers, threads_per_worker=1, dashboard_address=None) as cluster,
                Client(cluster) as client,
            ):
                parts["cluster"] = time.perf_counter() - t0
                t1 = time.perf_counter()
                client.run(_gate_on_worker, cfg, ws, suite, files[0])  # each worker opens its gate
                parts["open gates"] = time.perf_counter() - t1
                t1 = time.perf_counter()
                accepted = client.gather(
                    client.map(
                        _gate_on_worker,
                        [cfg] * len(files),
                        [ws] * len(files),
                        [suite] * len(files),
                        files,
                        pure=False,
                    )
                )
                seconds = time.perf_counter() - t1
        assert all(accepted), accepted
        del gate

    elif stage in ("train", "train_dask"):
        base = _rss_mb()
        t0 = time.perf_counter()
        records = {r.batch_id: r for r in validated_batches(ws)}
        labelled = {b for b in records if (ws.labels / f"{b}.parquet").is_file()}
        ids = dataset.select_window(list(records), labelled, window)
        inputs = [
            dataset.BatchInput(
                b,
                records[b].sha256,
                str(records[b].path(ws)),
                dataset.join_labels(
                    read_batch(records[b].path(ws), cfg), pd.read_parquet(ws.labels / f"{b}.parquet"), ds
                ),
            )
            for b in ids
        ]
        split = dataset.time_split(dataset.training_frame(inputs, ds), cfg.training)
        del inputs
        parts["read+split"] = time.perf_counter() - t0
        if stage == "train_dask":
            from tasks import distributed_training

            t1 = time.perf_counter()
            with distributed_training.dask_client(cfg) as client:
                parts["cluster"] = time.perf_counter() - t1
                fit_one = functools.partial(distributed_training.fit_candidate_on_dask, client=client)
                result = training.search(cfg, split, training.choose_device("cpu"), fit_one=fit_one)
                t0 += parts["cluster"]  # start-up is reported apart, not in the stage's seconds
        else:
            result = training.search(cfg, split, training.choose_device("cpu"))
        parts["search"] = time.perf_counter() - t0 - sum(v for k, v in parts.items() if k != "cluster")
        baseline = training.fit_baseline(cfg, split)
        parts["baseline"] = time.perf_counter() - t0 - sum(v for k, v in parts.items() if k != "cluster")
        report, proba = evaluation.evaluate(result.best.model, split.test, cfg)
        _, base_proba = evaluation.evaluate(baseline, split.test, cfg)
        reference = evaluation.reference_sample(
            result.best.model, split.train, cfg, max_rows=cfg.training.reference_rows
        )
        seconds = time.perf_counter() - t0
        parts["evaluate"] = seconds - sum(v for k, v in parts.items() if k != "cluster")
        with (root / "model.pkl").open("wb") as f:
            pickle.dump(
                {"model": result.best.model, "baseline": baseline, "metrics": report.metrics}, f, protocol=5
            )
        split.test.to_parquet(root / "test.parquet", index=False)
        np.save(root / "proba.npy", proba)
        np.save(root / "base_proba.npy", base_proba)
        reference.to_parquet(root / "reference.parquet", index=False)

    elif stage == "model_gate":
        test = pd.read_parquet(root / "test.parquet")
        with (root / "model.pkl").open("rb") as f:
            saved = pickle.load(f)
        proba, base_proba = np.load(root / "proba.npy"), np.load(root / "base_proba.npy")
        base = _rss_mb()
        t0 = time.perf_counter()
        # The champion here is the baseline (the first model's rival); the bootstrap dominates either way.
        y = target_vector(test, ds).to_numpy()
        decision = model_gate.decide(
            cfg,
            test,
            y,
            proba,
            base_proba,
            saved["metrics"],
            evaluation.classification_metrics(y, base_proba),
            "champion",
        )
        seconds = time.perf_counter() - t0
        assert decision.summary()

    elif stage == "monitor":
        from tasks.model import features_frame, positive_proba

        with (root / "model.pkl").open("rb") as f:
            champion = pickle.load(f)
        reference = pd.read_parquet(root / "reference.parquet")
        yesterday = history[-1]
        base = _rss_mb()
        t0 = time.perf_counter()

        def served(day: str) -> pd.DataFrame:
            frame = read_batch(ws.validated / f"{day}.parquet", cfg)
            p = positive_proba(champion["model"], features_frame(frame, ds))
            return frame.assign(
                **{
                    columns.PROBABILITY: p,
                    columns.PREDICTION: (p >= 0.5).astype("int64"),
                    columns.BATCH: day,
                }
            )

        current = served(today)
        labelled = drift.labelled_predictions(
            served(yesterday), pd.read_parquet(ws.labels / f"{yesterday}.parquet"), ds
        )
        signals = drift.compute_signals(
            reference,
            current.drop(columns=[columns.BATCH]),
            labelled,
            {k: v for k, v in champion["metrics"].items() if v is not None},
            ds,
            cfg.drift,
            (today, today),
        )
        seconds = time.perf_counter() - t0
        assert signals.current_rows == rows
    else:
        raise SystemExit(f"unknown stage {stage}")
    return {
        "seconds": seconds,
        "base_mb": base,
        "peak_mb": _rss_mb() + (_rss_mb(resource.RUSAGE_CHILDREN) if stage.endswith("_dask") else 0.0),
        **{f"part:{k}": v for k, v in parts.items()},
    }


def _sub(args: list[str]) -> str:
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"stage {args} failed (exit {proc.returncode})")
    return proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--window", type=int, default=7, help="batches in the training window")
    parser.add_argument("--n-jobs", type=int, default=1, help="XGBoost threads (0: all cores)")
    parser.add_argument("--dask", choices=["local"], help="also run the Dask stages on a LocalCluster")
    parser.add_argument("--dask-workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--stage", choices=STAGES + DASK_STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    if args.prepare:
        prepare(args.root, args.rows, args.window, args.n_jobs)
        return
    if args.stage:
        out = run_stage(args.stage, args.root, args.rows, args.window, args.n_jobs, args.dask_workers)
        print(json.dumps(out))
        return

    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print(f"window {args.window} batches, XGBoost n_jobs={args.n_jobs or 'all cores'}, sizes {args.sizes}")
    results: dict[int, dict[str, dict[str, float]]] = {}
    for n in args.sizes:
        root = Path(tempfile.mkdtemp(prefix=f"ctcd-scale-{n}-"))
        common = [
            "--rows",
            str(n),
            "--root",
            str(root),
            "--window",
            str(args.window),
            "--n-jobs",
            str(args.n_jobs),
            "--dask-workers",
            str(args.dask_workers),
        ]
        t0 = time.perf_counter()
        _sub(["--prepare", *common])
        print(
            f"{n:>9,} rows/batch: generated {args.window + 1} batches in {time.perf_counter() - t0:.1f} s",
            flush=True,
        )
        results[n] = {}
        for stage in STAGES + (DASK_STAGES if args.dask else ()):
            out = json.loads(_sub(["--stage", stage, *common]).strip().splitlines()[-1])
            results[n][stage] = out
            print(
                f"{n:>9,}  {stage:<11} {out['seconds']:9.2f} s  peak {out['peak_mb']:7.0f} MB "
                f"(base {out['base_mb']:.0f})"
                + "".join(f", {k[5:]} {v:.2f} s" for k, v in out.items() if k.startswith("part:")),
                flush=True,
            )
        total = sum(results[n][s]["seconds"] for s in STAGES)
        peak = max(results[n][s]["peak_mb"] for s in STAGES)
        print(f"{n:>9,}  cycle total {total:9.2f} s  max peak RSS {peak:.0f} MB", flush=True)
        subprocess.run(["rm", "-rf", str(root)], check=False)

    print_table(results)


def print_table(results: dict[int, dict[str, dict[str, float]]]) -> None:
    """The markdown table: seconds / peak RSS per stage and size, and the growth exponents."""
    sizes = list(results)
    pairs = list(itertools.pairwise(sizes))
    rows: dict[str, dict[int, tuple[float, float]]] = {}
    for stage in STAGES:
        rows[stage] = {n: (results[n][stage]["seconds"], results[n][stage]["peak_mb"]) for n in sizes}
    rows["cycle"] = {
        n: (sum(results[n][s]["seconds"] for s in STAGES), max(results[n][s]["peak_mb"] for s in STAGES))
        for n in sizes
    }
    for stage in DASK_STAGES:
        if all(stage in results[n] for n in sizes):
            rows[stage] = {n: (results[n][stage]["seconds"], results[n][stage]["peak_mb"]) for n in sizes}
    print()
    cols = [f"{n:,} rows: s / peak MB" for n in sizes] + [f"exponent {a:,}->{b:,}" for a, b in pairs]
    print("| stage | " + " | ".join(cols) + " |")
    print("|---" * (1 + len(cols)) + "|")
    for stage, by_size in rows.items():
        cells = [f"{s:.2f} / {m:.0f}" for s, m in by_size.values()]
        exps = [
            f"{math.log(max(by_size[b][0], 1e-6) / max(by_size[a][0], 1e-6)) / math.log(b / a):.2f}"
            for a, b in pairs
        ]
        print(f"| {stage} | " + " | ".join(cells + exps) + " |")

    if "train_dask" not in rows:
        return
    print()
    print(
        "| size | train s: one process / Dask | ratio | gate, window + 1 batches: 1 process / Dask | ratio |"
    )
    print("|---|---|---|---|---|")
    for n in sizes:
        t1, td = results[n]["train"]["seconds"], results[n]["train_dask"]["seconds"]
        g1, gd = results[n]["gate_all"]["seconds"], results[n]["gate_dask"]["seconds"]
        print(f"| {n:,} | {t1:.2f} / {td:.2f} | {t1 / td:.2f}x | {g1:.2f} / {gd:.2f} | {g1 / gd:.2f}x |")


if __name__ == "__main__":
    main()
