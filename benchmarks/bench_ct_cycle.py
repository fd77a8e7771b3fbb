"""Benchmark: one CT cycle (training flow) on ~100k labelled rows vs. the same steps as plain library calls.

Run: `.venv/bin/python benchmarks/bench_ct_cycle.py [--rows N] [--device cpu|auto|cuda] [--repeat 3]
[--heartbeat] [--profile FILE]`.

The cycle is window -> read + join labels -> time split -> budgeted search (default config: 3 candidates,
early stopping) -> baseline -> holdout evaluation -> gate -> register -> promote. The peer runs the same
`tasks/` functions in-process (read with pandas, no Prefect, no MLflow, decision kept in memory). The flow
adds Prefect task runs, the MLflow run (params, metrics, inputs, artifacts, plots, reference sample,
nested search runs, registered model) and the promotion. The flow runs as the scheduled cycle runs it, a
subflow without a heartbeat thread of its own; `--heartbeat` times top-level runs, which Prefect ends by
joining their heartbeat thread (it sleeps in 1 s steps: 0-1 s of waiting per run). Prefect's server start
and the creation of the MLflow database are one-off costs paid before timing; the search is not served
from Prefect's cache.
Plain and flow runs alternate `--repeat` times (later flow runs gate against the champion); the ratio
compares the best of each, since a shared machine's load only ever adds time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its children (Prefect's server): on a shared machine the
    wall-clock ratio follows the load, the CPU ratio much less."""
    import psutil

    me = psutil.Process()
    total = 0.0
    for proc in (me, *me.children(recursive=True)):
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="labelled rows in the training window")
    parser.add_argument("--device", default="cpu", choices=["cpu", "auto", "cuda"])
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each; the best counts")
    parser.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="XGBoost threads (0: all cores); 1 keeps OpenMP spin-waits on a busy machine out of the timings",
    )
    parser.add_argument(
        "--heartbeat",
        action="store_true",
        help="time top-level flow runs, with Prefect's heartbeat thread (joined at a run's end: 0-1 s idle)",
    )
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="also profile the flow runs' calling thread with cProfile (pstats dump in FILE; prints the top)",
    )
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="ctcd-bench-"))
    # A private workspace, Prefect home and no cache hits for the timed flow run.
    os.environ.update(
        CTCD_HOME=str(home / "ctcd"),
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_TASKS_REFRESH_CACHE="true",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        MLFLOW_DISABLE_TELEMETRY="true",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    import yaml

    from ctcd.batches import BatchRecord, sha256_of
    from ctcd.config import load_config
    from ctcd.stream.scenario import generate_day
    from ctcd.workspace import Workspace

    base = load_config(REPO / "configs" / "default.yaml")
    days = base.training.window_batches
    assert base.stream is not None
    cfg = base.model_copy(
        update={
            "stream": base.stream.model_copy(update={"rows_per_day": -(-args.rows // days), "events": []}),
            "training": base.training.model_copy(update={"device": args.device}),
            "model": base.model.model_copy(
                update={"params": {**base.model.params, **({"n_jobs": args.n_jobs} if args.n_jobs else {})}}
            ),
        }
    )
    config_path = home / "ctcd.yaml"
    config_path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    ws = Workspace.open()
    # One more day than the window: its labels have not arrived, as in production.
    for day in range(1, days + 2):
        b = generate_day(cfg, day)
        path = ws.validated / f"{b.batch_id}.parquet"
        b.features.to_parquet(path, index=False)
        record = BatchRecord(
            batch_id=b.batch_id,
            status="validated",
            file=path.name,
            sha256=sha256_of(path),
            bytes=path.stat().st_size,
            rows=len(b.features),
            suite="bench",
            reason="passed",
            validated_at=datetime.now(UTC),
        )
        (ws.validated / f"{b.batch_id}.json").write_text(record.model_dump_json())
        if day <= days:
            b.labels.to_parquet(ws.labels / f"{b.batch_id}.parquet", index=False)

    def plain() -> tuple[float, float, str]:
        """The same steps as the flow, as plain calls: no Prefect, no MLflow."""
        import pandas as pd

        from ctcd.batches import read_batch, validated_batches
        from tasks import dataset, evaluation, model_gate, training
        from tasks.model import target_vector

        start, cpu = time.perf_counter(), cpu_seconds()
        records = {r.batch_id: r for r in validated_batches(ws)}
        labelled = {b for b in records if (ws.labels / f"{b}.parquet").is_file()}
        window = dataset.select_window(list(records), labelled, cfg.training.window_batches)
        inputs = [
            dataset.BatchInput(
                b,
                records[b].sha256,
                str(records[b].path(ws)),
                dataset.join_labels(
                    read_batch(records[b].path(ws), cfg),
                    pd.read_parquet(ws.labels / f"{b}.parquet"),
                    cfg.dataset,
                ),
            )
            for b in window
        ]
        split = dataset.time_split(dataset.training_frame(inputs, cfg.dataset), cfg.training)
        result = training.search(cfg, split, training.choose_device(cfg.training.device))
        baseline = training.fit_baseline(cfg, split)
        report, proba = evaluation.evaluate(result.best.model, split.test, cfg)
        _, base_proba = evaluation.evaluate(baseline, split.test, cfg)
        y = target_vector(split.test, cfg.dataset).to_numpy()
        decision = model_gate.decide(
            cfg,
            split.test,
            y,
            proba,
            base_proba,
            report.metrics,
            evaluation.classification_metrics(y, base_proba),
            "baseline",
        )
        return (
            time.perf_counter() - start,
            cpu_seconds() - cpu,
            f"rows {split.rows}, {decision.summary()[:50]}",
        )

    def warm_up() -> None:
        """Start Prefect's ephemeral server and create the MLflow database (one-off costs)."""
        from prefect import flow

        from ctcd import registry

        flow(lambda: None, name="warm-up")()
        registry.Registry.open(cfg, ws)

    profiler = cProfile.Profile() if args.profile else None

    def orchestrated(profiled: bool) -> tuple[float, float, str]:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from flows.training import training_flow

        # As the scheduled cycle runs it: a subflow of `ctcd_pipeline`, no heartbeat thread of its own
        # (flows/pipeline.py); --heartbeat: as a top-level run (`ctcd train`, the training deployment).
        heartbeat = {} if args.heartbeat else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        start, cpu = time.perf_counter(), cpu_seconds()
        if profiled:
            profiler.enable()
        try:
            with temporary_settings(heartbeat):
                report = training_flow(str(config_path), reason="benchmark")
        finally:
            if profiled:
                profiler.disable()
        return (
            time.perf_counter() - start,
            cpu_seconds() - cpu,
            f"version {report.version} on {report.device}, promoted {report.promoted}",
        )

    print(
        f"one CT cycle on {args.rows} labelled rows ({days} daily batches), device={args.device}, "
        f"XGBoost n_jobs={args.n_jobs or 'all cores'}, flow-run heartbeat {'on' if args.heartbeat else 'off'}"
    )
    warm_up()
    plain_s, flow_s, plain_cpu, flow_cpu = [], [], [], []
    for i in range(args.repeat):
        seconds, cpu, what = plain()
        plain_s.append(seconds)
        plain_cpu.append(cpu)
        print(f"[{i + 1}] plain library calls     {seconds:8.2f} s  cpu {cpu:6.2f} s  ({what})", flush=True)
        # The first flow run pays one-off imports (skops, mlflow.sklearn, matplotlib): profiled only alone.
        seconds, cpu, what = orchestrated(profiler is not None and (i > 0 or args.repeat == 1))
        flow_s.append(seconds)
        flow_cpu.append(cpu)
        print(f"[{i + 1}] Prefect flow + MLflow   {seconds:8.2f} s  cpu {cpu:6.2f} s  ({what})", flush=True)
    best_plain, best_flow = min(plain_s), min(flow_s)
    print(f"best plain {best_plain:.2f} s, best flow {best_flow:.2f} s")
    print(
        f"ratio flow / plain      {best_flow / best_plain:8.2f} x   "
        f"(overhead {best_flow - best_plain:+.2f} s; aim <= 1.3 x)"
    )
    print(
        f"CPU ratio flow / plain  {min(flow_cpu) / min(plain_cpu):8.2f} x   (best CPU s of this process "
        f"and Prefect's server: plain {min(plain_cpu):.2f} s, flow {min(flow_cpu):.2f} s)"
    )
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(
            f"cProfile of the flow runs after the first (calling thread) in {args.profile}; top by own time:"
        )
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
