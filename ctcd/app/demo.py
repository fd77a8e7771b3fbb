"""`ctcd demo`: replay a drifting month through the real pipeline with an accelerated clock.

The demo starts the local stack (`ctcd up`: Prefect server, work pools and workers, MLflow server, the
deployments of prefect.yaml), then plays each simulated day as production would live it:
1. the day's loan applications are scored live by the BentoML server (and logged);
2. the daily CT/CD cycle (`flows/pipeline.py`) lands and validates the day's batch, then monitors;
3. when the retraining policy fires, the monitoring flow emits the drift event, Prefect's trigger starts
   the `retrain` deployment on the GPU pool's worker, and the demo waits for that run (train -> gate ->
   promote -> smoke test -> zero-downtime reload);
4. on the training schedule's days (its cron, on the simulated calendar) the `retrain` deployment runs
   with reason `scheduled`.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ctcd.config import CtcdConfig, load_config
from ctcd.errors import UsageError
from ctcd.workspace import Workspace

RETRAIN_DEPLOYMENT = "ctcd-pipeline/retrain"
TRIGGER_APPEAR_SECONDS = 60.0
WAIT_FOR_RUN_SECONDS = 600.0
TRAFFIC_CHUNK = 200
# The accelerated clock: workers ask for runs every second, so a drift-triggered retrain starts at once.
DEMO_WORKER_POLL_SECONDS = 1.0
WAIT_POLL_SECONDS = 0.5


@dataclass
class DayRecord:
    """What happened on one simulated day: the demo's progress line and the timeline's data point."""

    day: int
    date: date
    batch: str = "-"
    served: int = 0
    refused: int = 0
    champion: str | None = None
    live_accuracy: float | None = None
    fired: list[str] = field(default_factory=list)
    action: str = "-"
    trainings: list[dict[str, Any]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    labelled_day: int | None = None
    labelled_accuracy: float | None = None
    accuracy_after_replay: bool = False  # scored with labels due after the last replayed day
    seconds: float = 0.0

    def line(self) -> str:
        """One progress line (the accuracy is that of the day whose labels arrived today)."""
        acc = (
            "  -  "
            if self.labelled_accuracy is None
            else f"{self.labelled_accuracy:.3f} (day {self.labelled_day})"
        )
        trained = "; ".join(
            f"{t['reason'].split(':')[0]} -> v{t['version']} {'PROMOTED' if t['promoted'] else 'kept'}"
            for t in self.trainings
        )
        return (
            f"day {self.day:>2} {self.date}  batch {self.batch:<11} served {self.served:>5}"
            f"{f' (refused {self.refused})' if self.refused else ''}  champion v{self.champion or '-'}"
            f"  live acc {acc}  signals {','.join(self.fired) or '-'}  action {self.action}"
            + (f"  | {trained}" if trained else "")
            + f"  ({self.seconds:.0f} s)"
        )


@dataclass(frozen=True)
class DemoOptions:
    """How much of the scenario to replay."""

    days: int | None = None
    rows_per_day: int | None = None
    fast: bool = False
    keep_running: bool = False


def prepare_workspace(ws: Workspace, echo: Callable[[str], None]) -> None:
    """Start from an empty workspace; an earlier one is moved aside (never deleted)."""
    if ws.root.exists() and any(p.is_file() for p in ws.root.rglob("*")):
        from ctcd.app import stack

        stack.down(ws)
        aside = ws.root.with_name(f"{ws.root.name}.prev-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        shutil.move(str(ws.root), aside)
        echo(f"moved the previous workspace aside to {aside}")
    ws.ensure()


def write_demo_config(cfg: CtcdConfig, ws: Workspace, options: DemoOptions) -> Path:
    """The config the demo's flows, workers and servers share, written into the workspace."""
    if cfg.stream is None:
        raise UsageError(f"{cfg.source}: the demo replays the built-in stream: the config needs a `stream`")
    raw = yaml.safe_load(Path(cfg.source).read_text(encoding="utf-8")) if cfg.source else {}
    raw["gates"]["data"]["suite"] = str(cfg.gates.data.suite)
    stream = raw.setdefault("stream", {})
    if options.fast:
        raw.setdefault("model", {}).setdefault("search", {})["budget"] = 1
        raw["model"].setdefault("params", {})["n_estimators"] = 100
    stream["days"] = options.days or default_days(cfg)
    # Blue/green: the smoke-test server stays up between deliveries (`ctcd down` stops it).
    raw.setdefault("serving", {})["keep_smoke_server"] = True
    orchestration = raw.setdefault("orchestration", {})
    orchestration["worker_poll_seconds"] = min(
        float(orchestration.get("worker_poll_seconds", DEMO_WORKER_POLL_SECONDS)), DEMO_WORKER_POLL_SECONDS
    )
    path = ws.root / "demo-config.yaml"
    if options.rows_per_day and options.rows_per_day != cfg.stream.rows_per_day:
        # The reviewed suite bounds the row count of a default day: bootstrap one for this volume.
        stream["rows_per_day"] = options.rows_per_day
        raw["gates"]["data"]["suite"] = str(_bootstrap_suite(cfg, raw, ws))
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def default_days(cfg: CtcdConfig) -> int:
    """The demo's default length: through the first day served by the model retrained after the last drift.

    The last drift's labels arrive `label_delay_batches` days after its onset (the stream's batches are
    days), the drift-triggered retraining runs that day and its model serves from the next: onset + label
    delay + 1 (day 22 of the default scenario), never past the stream's own `days` (`--days` replays more,
    up to the whole month).
    """
    assert cfg.stream is not None
    onsets = [e.day for e in cfg.stream.events if e.kind != "corrupt_batch"]
    if not onsets:
        return cfg.stream.days
    return min(cfg.stream.days, max(onsets) + cfg.dataset.label_delay_batches + 1)


def _bootstrap_suite(cfg: CtcdConfig, raw: dict[str, Any], ws: Workspace) -> Path:
    """A suite made from day 1 of the stream at the demo's volume (the way `ctcd suite init` does)."""
    from ctcd.config import CtcdConfig as Config
    from ctcd.stream.scenario import generate_day
    from tasks.suite import bootstrap_suite, dump_suite

    demo_cfg = Config.model_validate({**raw, "source": cfg.source})
    first = generate_day(demo_cfg, 1).features
    suite = bootstrap_suite(first, cfg.dataset, cfg.gates.data, cfg.gates.data.suite.stem)
    path = ws.root / f"{cfg.gates.data.suite.stem}-demo.json"
    path.write_text(dump_suite(suite), encoding="utf-8")
    return path


def scheduled_training_days(cfg: CtcdConfig, start: date, days: int) -> set[date]:
    """Simulated dates on which the training schedule's cron fires."""
    from cronsim import CronSim

    schedule = cfg.orchestration.schedules.get("training")
    if schedule is None or schedule.cron is None:
        return set()
    first = datetime.combine(start, datetime.min.time())
    fired = set()
    for moment in CronSim(schedule.cron, first):
        if moment.date() >= start + timedelta(days=days):
            break
        fired.add(moment.date())
    return fired


def send_traffic(cfg: CtcdConfig, ws: Workspace, url: str, batch_id: str, day: date) -> tuple[int, int]:
    """Score the day's applications through the live server; return (served, refused) row counts."""
    import httpx
    import pandas as pd

    from ctcd.serving.deploy import api_headers, request_rows
    from ctcd.stream.landing import stream_dir

    try:
        frame = pd.read_parquet(stream_dir(ws) / "features" / f"{batch_id}.parquet")
    except Exception:
        return 0, 0  # an unreadable file carries no requests either
    rows = request_rows(cfg, frame)
    for row in rows:
        row["as_of"] = day.isoformat()
        for key, value in row.items():
            if isinstance(value, float) and value != value:
                row[key] = None  # a missing value travels as JSON null (the server refuses it)
    served = refused = 0
    with httpx.Client(base_url=url, headers=api_headers(cfg), timeout=60.0) as client:
        for start in range(0, len(rows), TRAFFIC_CHUNK):
            chunk = rows[start : start + TRAFFIC_CHUNK]
            try:
                response = client.post("/predict_batch", json={"rows": chunk})
            except (httpx.HTTPError, ValueError):
                refused += len(chunk)
                continue
            if response.status_code == 200:
                served += len(chunk)
            else:
                refused += len(chunk)
    return served, refused


def live_accuracy(cfg: CtcdConfig, ws: Workspace, day: date, labels: Path | None = None) -> float | None:
    """Accuracy of the predictions served on `day`, against the labels that have arrived for them.

    `labels`: another folder of label files (the stream's own, for the days whose labels are due after the
    replay ends).
    """
    import pandas as pd

    from ctcd.columns import PREDICTION
    from ctcd.features import is_positive
    from ctcd.prediction_log import read_predictions

    served = read_predictions(ws, start=day, end=day)
    label_file = (labels or ws.labels) / f"{day.isoformat()}.parquet"
    if served.empty or not label_file.exists():
        return None
    ds = cfg.dataset
    labels = pd.read_parquet(label_file)[[ds.id_column, ds.target]]
    joined = served.merge(labels, on=ds.id_column, how="inner")
    if joined.empty:
        return None
    positive = is_positive(joined[ds.target], ds.positive_label)
    return float((joined[PREDICTION].astype(int) == positive).mean())


def wait_for_triggered_run(since: datetime, appear_timeout: float, finish_timeout: float) -> Any | None:
    """Wait for the `retrain` run the drift trigger created after `since` to finish (None: none came)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )

    deployment = RETRAIN_DEPLOYMENT.split("/")[1]
    started = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
                # Only runs due now: the weekly schedule also keeps runs scheduled days ahead.
                flow_run_filter=FlowRunFilter(
                    expected_start_time=FlowRunFilterExpectedStartTime(
                        after_=since - timedelta(seconds=5), before_=datetime.now(UTC) + timedelta(seconds=30)
                    )
                ),
            )
            waited = time.monotonic() - started
            if runs and all(r.state is not None and r.state.is_final() for r in runs):
                return runs[-1]
            if (not runs and waited > appear_timeout) or waited > finish_timeout:
                return None
            time.sleep(WAIT_POLL_SECONDS)


def trainings_since(cfg: CtcdConfig, ws: Workspace, since: datetime) -> list[dict[str, Any]]:
    """Model versions registered after `since`, with their reason and whether they became champion."""
    from ctcd import audit, registry

    promoted = {
        h["version"] for h in audit.alias_history(ws) if h["at"] >= since.isoformat(timespec="seconds")
    }
    return [
        {"reason": v.tags.get("ctcd.reason", "?"), "version": v.version, "promoted": v.version in promoted}
        for v in sorted(registry.Registry(cfg, ws).versions(), key=lambda v: int(v.version))
        if v.created_at is not None and v.created_at >= since
    ]


def run_demo(config: Path | None, ws: Workspace, options: DemoOptions, echo: Callable[[str], None]) -> dict:
    """Replay the scenario day by day through the real stack; return the summary."""
    base = load_config(config)
    prepare_workspace(ws, echo)
    cfg_path = write_demo_config(base, ws, options)
    cfg = load_config(cfg_path)
    assert cfg.stream is not None
    started = time.perf_counter()

    from ctcd.stream.landing import generate_stream

    entries = generate_stream(cfg, ws)
    echo(f"generated {len(entries)} days x {cfg.stream.rows_per_day} rows into {ws.root / 'stream'}")

    from ctcd.app import deployments, stack

    echo("starting the local stack (Prefect server, work pools and workers, deployments)...")
    report = stack.up(cfg, ws, echo, with_mlflow=False)
    api_url = deployments.prefect_api_url(cfg)
    for s in report.services:
        echo(f"  {s.name:<22} {s.state:<8} {s.url or ''}")

    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    records: list[DayRecord] = []
    try:
        # No flow-run heartbeats in this process: a simulated day lasts seconds, far below their 180 s
        # period, and stopping each run's heartbeat thread costs up to 1 s per flow run (3 a day).
        with temporary_settings({PREFECT_API_URL: api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            records = _replay(cfg, cfg_path, ws, entries, echo)
    finally:
        _flush_prefect_logs()
        if not options.keep_running:
            echo("stopping the local stack (`ctcd up` brings it back with everything the demo recorded)")
            stack.down(ws)
    summary = summarize(cfg, ws, records, time.perf_counter() - started)
    from ctcd.app.timeline import write_timeline

    summary["timeline"] = {k: str(v) for k, v in write_timeline(records, cfg, ws.reports).items()}
    (ws.reports / "demo-summary.json").write_text(
        json.dumps(summary, indent=2, default=str), encoding="utf-8"
    )
    return summary


def _replay(
    cfg: CtcdConfig,
    cfg_path: Path,
    ws: Workspace,
    entries: list[Any],
    echo: Callable[[str], None],
) -> list[DayRecord]:
    from prefect.deployments import run_deployment

    from ctcd import registry
    from ctcd.serving.server import is_serving, live_server_url
    from flows.pipeline import ctcd_pipeline

    url = live_server_url(cfg)
    schedule_days = scheduled_training_days(cfg, entries[0].date, len(entries))
    records: list[DayRecord] = []
    for entry in entries:
        rec = DayRecord(day=entry.day, date=entry.date)
        day_clock = time.perf_counter()
        if is_serving(url):
            rec.served, rec.refused = send_traffic(cfg, ws, url, entry.batch_id, entry.date)
        day_started = datetime.now(UTC)
        result = ctcd_pipeline(str(cfg_path), today=entry.date.isoformat())
        rec.batch = _batch_status(result, entry.batch_id)
        if result.monitoring is not None:
            rec.fired = list(result.monitoring.decision.fired)
            rec.action = result.monitoring.decision.action
            if result.monitoring.event_id:
                rec.events.append("drift event")
                run = wait_for_triggered_run(day_started, TRIGGER_APPEAR_SECONDS, WAIT_FOR_RUN_SECONDS)
                if run is None or run.state is None or not run.state.is_completed():
                    rec.events.append(
                        f"triggered retrain: {run.state.name if run and run.state else 'none came'}"
                    )
        if entry.date in schedule_days and registry.Registry(cfg, ws).champion() is not None:
            run = run_deployment(
                RETRAIN_DEPLOYMENT,
                parameters={"config_path": str(cfg_path), "reason": "scheduled", "monitor": False},
                timeout=WAIT_FOR_RUN_SECONDS,
                poll_interval=WAIT_POLL_SECONDS,
                as_subflow=False,
            )
            if run.state is None or not run.state.is_completed():
                rec.events.append(f"scheduled retrain: {run.state.name if run.state else 'unknown'}")
        rec.trainings = trainings_since(cfg, ws, day_started)
        champion = registry.Registry(cfg, ws).champion()
        rec.champion = champion.version if champion else None
        previous_day = entry.date - timedelta(days=cfg.dataset.label_delay_batches)
        for earlier in records:
            if earlier.date == previous_day:
                earlier.live_accuracy = live_accuracy(cfg, ws, previous_day)
                rec.labelled_day, rec.labelled_accuracy = earlier.day, earlier.live_accuracy
        rec.seconds = time.perf_counter() - day_clock
        records.append(rec)
        echo(rec.line())
    from ctcd.stream.landing import stream_dir

    for earlier in records:
        if earlier.live_accuracy is None:
            # The last days' labels are due after the replay: the timeline scores them from the stream.
            earlier.live_accuracy = live_accuracy(cfg, ws, earlier.date, stream_dir(ws) / "labels")
            earlier.accuracy_after_replay = earlier.live_accuracy is not None
    return records


def _flush_prefect_logs() -> None:
    """Send the run logs and events still buffered in this process before the Prefect server goes away.

    Draining the events worker also closes its websocket, which would otherwise hold the server's
    graceful shutdown until `ctcd down` kills it (20 s).
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    # The logs and events are a convenience; the runs' states are already recorded.
    with contextlib.suppress(Exception):
        APILogHandler.flush()
    with contextlib.suppress(Exception):
        EventsWorker.drain_all(timeout=5.0)


def _batch_status(result: Any, batch_id: str) -> str:
    for decision in result.ingest.decisions:
        if decision.batch_id == batch_id:
            return "validated" if decision.accepted else "QUARANTINED"
    return "-"


def summarize(cfg: CtcdConfig, ws: Workspace, records: list[DayRecord], seconds: float) -> dict[str, Any]:
    """The end-of-demo summary: versions, promotions and their causes, quarantine, where to look."""
    from ctcd import audit, registry
    from ctcd.batches import quarantined_batches

    history = audit.alias_history(ws)
    accuracies = [r.live_accuracy for r in records if r.live_accuracy is not None]
    return {
        "days": len(records),
        "seconds": round(seconds, 1),
        "versions": [v.version for v in registry.Registry(cfg, ws).versions()],
        "champion": (registry.Registry(cfg, ws).champion() or registry.ModelRef("-", "-", None)).version,
        "promotions": [
            {"at": h["at"], "version": h["version"], "previous": h["previous"], "reason": h["reason"]}
            for h in history
        ],
        "quarantined": [q.batch_id for q in quarantined_batches(ws)],
        "mean_live_accuracy": round(sum(accuracies) / len(accuracies), 4) if accuracies else None,
        "workspace": str(ws.root),
    }
