"""Where the user's batches are: at the source and in the workspace (`ctcd data status`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ctcd.batches import BATCH_SUFFIXES, labels_file
from ctcd.config import CtcdConfig, FileSource, FilesSource, SqlSource
from ctcd.sources.pull import list_batches
from ctcd.workspace import Workspace

Place = Literal["source", "landing", "validated", "quarantine"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceBatch(_Record):
    """Where one batch is now."""

    batch_id: str
    at: Place
    at_source: bool
    labels: bool


class SourceStatus(_Record):
    """The user's batches: at the source and in the workspace (`ctcd data status`)."""

    kind: str
    location: str
    batches: list[SourceBatch]


def _place(ws: Workspace, batch_id: str) -> Place | None:
    for name, area in (("validated", ws.validated), ("quarantine", ws.quarantine), ("landing", ws.landing)):
        if any((area / f"{batch_id}{ext}").exists() for ext in (*BATCH_SUFFIXES, ".json")):
            return name  # type: ignore[return-value]
    return None


def _workspace_ids(ws: Workspace) -> Iterator[str]:
    for area in (ws.landing, ws.validated, ws.quarantine):
        if area.is_dir():
            for p in area.iterdir():
                if p.suffix.lower() in BATCH_SUFFIXES and not p.name.startswith("."):
                    yield p.stem


def describe(cfg: CtcdConfig) -> tuple[str, str]:
    """The configured source's kind and location, for messages (no secrets: SQL URLs lose passwords)."""
    src = cfg.dataset.source
    if isinstance(src, FilesSource | FileSource):
        return src.kind, src.path
    if isinstance(src, SqlSource):
        from sqlalchemy.engine import make_url

        where = make_url(src.url).render_as_string(hide_password=True)
        return "sql", f"{where} ({src.table or 'query'})"
    return ("stream" if cfg.stream is not None else "landing"), ""


def source_status(cfg: CtcdConfig, ws: Workspace) -> SourceStatus:
    """Every batch at the source or in the workspace: where it is and whether its labels arrived."""
    src = cfg.dataset.source
    at_source = (
        [b.batch_id for b in list_batches(cfg)]
        if isinstance(src, FilesSource | FileSource | SqlSource)
        else []
    )
    ids = sorted(set(at_source) | set(_workspace_ids(ws)))
    known = set(at_source)
    kind, location = describe(cfg)
    rows = [
        SourceBatch(
            batch_id=b,
            at=_place(ws, b) or "source",
            at_source=b in known,
            labels=labels_file(ws, b) is not None,
        )
        for b in ids
    ]
    return SourceStatus(kind=kind, location=location or str(ws.landing), batches=rows)
