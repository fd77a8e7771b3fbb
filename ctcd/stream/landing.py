"""Landing the built-in stream: the generated days as files, and copying what is due into the workspace.

`generate_stream` writes days 1..N of the scenario to `$CTCD_HOME/stream` (features and labels as Parquet,
written atomically) with `manifest.json`, which records each file's sha256, the day's events and when its
labels arrive (`dataset.label_delay_batches` days after the features). `land_due` copies the feature files
dated on or before a day into landing/ and the labels that have arrived into labels/, refusing a file whose
bytes no longer match the manifest; `stream_status` says where each generated batch is now.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.errors import UsageError, WorkFailed
from ctcd.stream.scenario import batch_bytes, describe_event, generate_day, stream_config
from ctcd.workspace import Workspace, write_atomic


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamEntry(_Record):
    """One generated batch, as recorded in `stream/manifest.json` for lineage."""

    batch_id: str
    day: int
    date: date
    rows: int
    function: int
    positive_rate: float
    features_file: str
    labels_file: str
    features_sha256: str
    labels_sha256: str
    label_arrives_on: date
    events: list[ScenarioEvent]


class StreamManifest(_Record):
    """What `ctcd data generate` wrote, with the settings that make it reproducible."""

    generator: str
    seed: int
    rows_per_day: int
    perturbation: float
    function: int
    start_date: date
    label_delay_days: int
    batches: list[StreamEntry]


class LandingReport(_Record):
    """What one `land_due` call copied into the workspace."""

    through: date
    features_landed: list[str]
    labels_landed: list[str]
    features_already_there: int
    features_pending: list[str]
    labels_pending: list[str]


BatchPlace = Literal["stream", "landing", "validated", "quarantine"]


class BatchStatus(_Record):
    """Where one generated batch is now."""

    batch_id: str
    day: int
    events: list[str]
    features_at: BatchPlace
    labels_landed: bool


class StreamStatus(_Record):
    """What is generated and what has been landed (`ctcd data status`)."""

    generated: bool
    stream_dir: str
    batches: list[BatchStatus]
    files: dict[str, int]


def stream_dir(ws: Workspace) -> Path:
    """The simulated outside world: `$CTCD_HOME/stream`."""
    return ws.root / "stream"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def generate_stream(
    cfg: CtcdConfig,
    ws: Workspace,
    days: int | None = None,
    on_batch: Callable[[StreamEntry], None] | None = None,
) -> list[StreamEntry]:
    """Write days 1..`days` (default `stream.days`) to `$CTCD_HOME/stream` with a manifest of hashes."""
    stream = stream_config(cfg)
    n_days = days if days is not None else stream.days
    if n_days < 1:
        raise UsageError(f"--days must be at least 1 (got {n_days})")
    root = stream_dir(ws)
    (root / "features").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    entries: list[StreamEntry] = []
    for day in range(1, n_days + 1):
        batch = generate_day(cfg, day)
        features, labels = batch_bytes(batch)
        entry = StreamEntry(
            batch_id=batch.batch_id,
            day=day,
            date=batch.date,
            rows=len(batch.labels),
            function=batch.function,
            positive_rate=float((batch.labels[cfg.dataset.target] == cfg.dataset.positive_label).mean()),
            features_file=f"features/{batch.batch_id}.parquet",
            labels_file=f"labels/{batch.batch_id}.parquet",
            features_sha256=_sha256(features),
            labels_sha256=_sha256(labels),
            label_arrives_on=batch.date + timedelta(days=cfg.dataset.label_delay_batches),
            events=batch.events,
        )
        write_atomic(root / entry.features_file, features)
        write_atomic(root / entry.labels_file, labels)
        entries.append(entry)
        if on_batch is not None:
            on_batch(entry)
    wanted = {e.features_file for e in entries} | {e.labels_file for e in entries}
    for sub in ("features", "labels"):
        for stale in (root / sub).glob("*.parquet"):
            if f"{sub}/{stale.name}" not in wanted:
                stale.unlink()
    manifest = StreamManifest(
        generator=stream.generator,
        seed=stream.seed,
        rows_per_day=stream.rows_per_day,
        perturbation=stream.perturbation,
        function=stream.function,
        start_date=stream.start_date,
        label_delay_days=cfg.dataset.label_delay_batches,
        batches=entries,
    )
    write_atomic(root / "manifest.json", manifest.model_dump_json(indent=2) + "\n")
    return entries


def read_manifest(ws: Workspace) -> StreamManifest | None:
    """The manifest of the generated stream, or None when nothing was generated."""
    path = stream_dir(ws) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return StreamManifest.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WorkFailed(f"{path} is not a stream manifest; rerun `ctcd data generate`") from exc


def _present(batch_id: str, *dirs: Path) -> Path | None:
    """A file (any extension, sidecars, `<id>__2` renames) or folder of this batch in `dirs`, if any."""
    for d in dirs:
        if not d.is_dir():
            continue
        for p in d.rglob(f"{batch_id}*"):
            if p.name == batch_id or p.name.startswith((batch_id + ".", batch_id + "__")):
                return p
    return None


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    """Copy a stream file, refusing one whose bytes no longer match the manifest."""
    if not src.is_file():
        raise WorkFailed(f"{src} is missing from the generated stream; rerun `ctcd data generate`")
    data = src.read_bytes()
    if _sha256(data) != sha256:
        raise WorkFailed(f"{src} changed since it was generated (sha256 differs); rerun `ctcd data generate`")
    write_atomic(dst, data)
    shutil.copystat(src, dst)  # the landed file keeps the generated file's times


def land_due(cfg: CtcdConfig, ws: Workspace, today: date) -> LandingReport:
    """Copy feature files dated <= `today` into landing/ and labels that have arrived by `today` into labels/.

    Idempotent: a batch already in landing/, validated/ or quarantine/ (any extension) is never landed again,
    and labels already in labels/ are never copied again.
    """
    manifest = read_manifest(ws)
    if manifest is None:
        where = cfg.source or "the config"
        raise UsageError(f"no generated stream in {stream_dir(ws)}: run `ctcd data generate` first ({where})")
    ws.ensure()
    root = stream_dir(ws)
    landed, labelled, pending, labels_pending = [], [], [], []
    already = 0
    for entry in manifest.batches:
        if entry.date > today:
            pending.append(entry.batch_id)
        elif _present(entry.batch_id, ws.landing, ws.validated, ws.quarantine):
            already += 1
        else:
            _copy_verified(
                root / entry.features_file, ws.landing / f"{entry.batch_id}.parquet", entry.features_sha256
            )
            landed.append(entry.batch_id)
        if entry.label_arrives_on > today:
            labels_pending.append(entry.batch_id)
        elif not _present(entry.batch_id, ws.labels):
            _copy_verified(
                root / entry.labels_file, ws.labels / f"{entry.batch_id}.parquet", entry.labels_sha256
            )
            labelled.append(entry.batch_id)
    return LandingReport(
        through=today,
        features_landed=landed,
        labels_landed=labelled,
        features_already_there=already,
        features_pending=pending,
        labels_pending=labels_pending,
    )


def stream_status(ws: Workspace) -> StreamStatus:
    """Where every generated batch is now, and how many files each data area holds."""
    manifest = read_manifest(ws)
    areas: dict[BatchPlace, Path] = {
        "landing": ws.landing,
        "validated": ws.validated,
        "quarantine": ws.quarantine,
    }
    batches = []
    for entry in manifest.batches if manifest else []:
        place: BatchPlace = next((name for name, d in areas.items() if _present(entry.batch_id, d)), "stream")
        batches.append(
            BatchStatus(
                batch_id=entry.batch_id,
                day=entry.day,
                events=[describe_event(ev) for ev in entry.events],
                features_at=place,
                labels_landed=_present(entry.batch_id, ws.labels) is not None,
            )
        )
    files = {
        name: sum(1 for p in d.iterdir() if p.is_file() and not p.name.startswith(".")) if d.is_dir() else 0
        for name, d in [*areas.items(), ("labels", ws.labels)]
    }
    return StreamStatus(
        generated=manifest is not None, stream_dir=str(stream_dir(ws)), batches=batches, files=files
    )
