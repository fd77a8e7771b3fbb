"""Data sources: where batches come from (`dataset.source`), and pulling what is new into landing/.

Kinds (the built-in `stream` is landed by `tasks.stream.land_due`, not here):
- `files`: `<batch_id>.parquet|csv` files in a directory or matching a glob, local or any fsspec URL;
- `file`: one time-ordered file cut into batches (`split`: fixed row counts, or runs of a period column);
- `sql`: a table or query through SQLAlchemy, one batch per value (or day, or month) of `batch_column`.

`pull(cfg, ws, through)` lands every batch with id <= `through` that is not yet in landing/, validated/ or
quarantine/ (so pulling again lands nothing twice), then the labels that are due. Batch ids are compared
as strings (ISO dates and months sort in time order). Callers hold `batches.ingest_lock(ws)`.

Labels (`source.labels`) come from the batch's own target column (stripped from the landed features), from
label files or from a SQL table/query, keyed by `dataset.id_column`. They are written to
`labels/<batch_id>.parquet` when batch k + `dataset.label_delay_batches` has landed. Until then the
batch's ids (and its labels, when they came with it) wait in `$CTCD_HOME/source/pending-labels/`.
"""

from __future__ import annotations

import calendar
import functools
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from ctcd.batches import BATCH_SUFFIXES, is_landed_or_filed, labels_file
from ctcd.config import CtcdConfig, FileSource, FilesSource, SourceLabels, SqlSource
from ctcd.errors import ConfigError, UsageError, WorkFailed
from ctcd.workspace import Workspace

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_PARTIAL = (".tmp", ".part", ".partial", ".crdownload")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:+=-]*$")
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_name) if name})
SQL_CHUNK = 5000  # values per `IN (...)`: databases cap the number of bound parameters


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PullReport(_Record):
    """What one pull landed."""

    through: str | None
    landed: list[str] = Field(default_factory=list, description="batch ids written into landing/")
    labels_landed: list[str] = Field(default_factory=list, description="batch ids whose labels arrived")
    already_there: int = 0
    not_yet: list[str] = Field(default_factory=list, description="batches at the source after `through`")
    labels_pending: list[str] = Field(default_factory=list)


Place = Literal["source", "landing", "validated", "quarantine"]


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


# --------------------------------------------------------------------------- the source's batches


@dataclass(frozen=True)
class Batch:
    """One batch at the source: its id and how to read it."""

    batch_id: str
    path: str | None = None  # a file of a `files` source
    frame: pd.DataFrame | None = None  # a slice of a `file` source
    values: tuple[Any, ...] = ()  # the batch_column values of a `sql` source


def check_id(batch_id: str, where: str) -> str:
    """A batch id usable as a file name, or a one-line ConfigError naming where it came from."""
    if not _SAFE_ID.match(batch_id) or batch_id.endswith(BATCH_SUFFIXES + _PARTIAL + (".json",)):
        raise ConfigError(
            f"{where}: {batch_id!r} cannot be a batch id (letters, digits and _ . : + = - only, "
            "not starting with '.' or '-')"
        )
    return batch_id


def list_batches(cfg: CtcdConfig) -> list[Batch]:
    """Every batch the configured source holds now, by batch id (string order)."""
    src = cfg.dataset.source
    if isinstance(src, FilesSource):
        found = [
            Batch(check_id(_stem(p), p), path=p) for p in _list_files(src.path, src.storage_options, "path")
        ]
    elif isinstance(src, FileSource):
        found = _split_file(cfg, src)
    elif isinstance(src, SqlSource):
        found = _sql_batches(src)
    else:
        raise UsageError("dataset.source is not a files, file or sql source")
    ids = [b.batch_id for b in found]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"dataset.source: more than one batch has the id(s) {dup[:5]}")
    return sorted(found, key=lambda b: b.batch_id)


def read_source_batch(cfg: CtcdConfig, batch: Batch) -> pd.DataFrame:
    """The batch's rows as the source holds them (the target column still in, when it is there)."""
    src = cfg.dataset.source
    if batch.frame is not None:
        return batch.frame
    if isinstance(src, FilesSource) and batch.path is not None:
        return _read_file(src, batch.path)
    if isinstance(src, SqlSource):
        return _sql_rows(cfg, src, batch.values)
    raise WorkFailed(f"batch {batch.batch_id} cannot be read from dataset.source")


# --------------------------------------------------------------------------- files (fsspec)


def _fs(url: str, options: dict[str, Any]) -> tuple[AbstractFileSystem, str]:
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url, **options)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"dataset.source: cannot open {url!r}: {str(exc).splitlines()[0]}") from exc


def _stem(path: str) -> str:
    return PurePosixPath(path).stem


def _is_batch_file(path: str) -> bool:
    name = PurePosixPath(path).name
    return (
        not name.startswith(".")
        and not name.endswith(_PARTIAL)
        and PurePosixPath(name).suffix.lower() in BATCH_SUFFIXES
    )


def _list_files(url: str, options: dict[str, Any], key: str) -> list[str]:
    """Parquet/CSV files in a directory, matching a glob, or the one file named (full fsspec paths)."""
    fs, root = _fs(url, options)
    try:
        if any(ch in root for ch in "*?["):
            paths = fs.glob(root)
        elif fs.isdir(root):
            paths = [e["name"] for e in fs.ls(root, detail=True) if e.get("type") == "file"]
        elif fs.exists(root):
            paths = [root]
        else:
            raise ConfigError(f"dataset.source.{key}: {url} does not exist")
    except OSError as exc:
        raise WorkFailed(f"dataset.source.{key}: cannot list {url}: {exc}") from exc
    protocol = fs.protocol[0] if isinstance(fs.protocol, tuple | list) else fs.protocol
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    return sorted(
        prefix + p if prefix and not p.startswith(prefix) else p for p in paths if _is_batch_file(p)
    )


def _read_bytes(url: str, options: dict[str, Any]) -> bytes:
    fs, path = _fs(url, options)
    try:
        return fs.cat_file(path)
    except OSError as exc:
        raise WorkFailed(f"cannot read {url}: {exc}") from exc


def _parse(data: bytes, name: str, sep: str, encoding: str) -> pd.DataFrame:
    """A Parquet or CSV file's bytes as a DataFrame (ValueError/OSError when it is not one)."""
    if name.lower().endswith(".csv"):
        return pd.read_csv(io.BytesIO(data), sep=sep, encoding=encoding)
    return pd.read_parquet(io.BytesIO(data))


def _read_file(src: FilesSource | FileSource, url: str) -> pd.DataFrame:
    data = _read_bytes(url, src.storage_options)
    try:
        return _parse(data, url, src.sep, src.encoding)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise WorkFailed(f"{url} is not a readable table: {str(exc).splitlines()[0][:200]}") from exc


def _verbatim(cfg: CtcdConfig, src: FilesSource, path: str) -> bool:
    """Whether a file can land byte for byte (the gate reads it as is): nothing to strip or re-encode."""
    if src.labels is not None and src.labels.from_batch:
        return False
    if path.lower().endswith(".parquet"):
        return True
    return src.sep == "," and src.encoding.lower() == cfg.gates.data.csv_encoding.lower()


# --------------------------------------------------------------------------- one file, split


def _split_file(cfg: CtcdConfig, src: FileSource) -> list[Batch]:
    frame = _read_file(src, src.path)
    ds, split = cfg.dataset, src.split
    if src.id_from_row_number:
        if ds.id_column in frame.columns:
            raise ConfigError(
                f"dataset.source.id_from_row_number: {src.path} already has a column {ds.id_column!r}"
            )
        frame.insert(0, ds.id_column, pd.RangeIndex(len(frame), dtype="int64"))
    if frame.empty:
        return []
    if split.rows is not None:
        n = split.rows
        return [
            Batch(f"{i // n + 1:06d}", frame=frame.iloc[i : i + n].reset_index(drop=True))
            for i in range(0, len(frame), n)
        ]
    col = split.column
    if col not in frame.columns:
        raise ConfigError(f"dataset.source.split.column: {src.path} has no column {col!r}")
    values = frame[col]
    runs = (values != values.shift()).cumsum()
    out: list[Batch] = []
    seen: set[str] = set()
    month: tuple[int, int] | None = None
    for _, part in frame.groupby(runs, sort=True):
        value = part[col].iloc[0]
        if split.kind == "month_name":
            month = _next_month(value, month, split.start or "", f"row {part.index[0]}")
            batch_id = f"{month[0]:04d}-{month[1]:02d}"
        else:
            batch_id = check_id(_value_id(value), f"dataset.source.split: row {part.index[0]}")
            if batch_id in seen:
                raise ConfigError(
                    f"dataset.source.split: value {value!r} of {col!r} comes back at row {part.index[0]} "
                    "after another one: the file is not in time order"
                )
        seen.add(batch_id)
        out.append(Batch(batch_id, frame=part.reset_index(drop=True)))
    return out


def _next_month(value: Any, previous: tuple[int, int] | None, start: str, where: str) -> tuple[int, int]:
    """The (year, month) of a run of month `value`: `start` for the first run, else the next such month."""
    name = str(value).strip().lower()
    number = _MONTHS.get(name) or _MONTHS.get(name[:3])
    if number is None:
        raise ConfigError(f"dataset.source.split: {value!r} at {where} is not a month name")
    if previous is None:
        year, first = int(start[:4]), int(start[5:7])
        if first != number:
            raise ConfigError(
                f"dataset.source.split.start {start} is {calendar.month_name[first]}, but the file starts "
                f"with {value!r}"
            )
        return year, first
    year, prev = previous
    return (year, number) if number > prev else (year + 1, number)


def _value_id(value: Any) -> str:
    """A batch id from a column value: dates as YYYY-MM-DD, other stamps in ISO format, else str()."""
    if isinstance(value, datetime | pd.Timestamp):
        stamp = pd.Timestamp(value)
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()


# --------------------------------------------------------------------------- SQL (SQLAlchemy)


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> Any:
    """One SQLAlchemy engine (and connection pool) per URL for the life of the process."""
    import sqlalchemy as sa

    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"dataset.source.url: {str(exc).splitlines()[0]}") from exc


def _quote(engine: Any, name: str) -> str:
    prep = engine.dialect.identifier_preparer
    return ".".join(prep.quote(part) for part in name.split("."))


def _from(engine: Any, table: str | None, query: str | None) -> str:
    if table is not None:
        return _quote(engine, table)
    return f"({query.strip().rstrip(';')}) AS ctcd_source"  # type: ignore[union-attr]


@dataclass
class _Sql:
    engine: Any

    def read(self, statement: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import sqlalchemy as sa

        stmt = sa.text(statement)
        for name, value in (params or {}).items():
            if isinstance(value, list | tuple):
                stmt = stmt.bindparams(sa.bindparam(name, expanding=True))
        try:
            with self.engine.connect() as conn:
                return pd.read_sql(stmt, conn, params=params)
        except sa.exc.SQLAlchemyError as exc:
            raise WorkFailed(
                f"dataset.source: the database refused {statement[:120]!r}: {_sql_error(exc)}"
            ) from exc


def _sql_error(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def _sql_batches(src: SqlSource) -> list[Batch]:
    engine = _engine(src.url)
    col = _quote(engine, src.batch_column)
    values = _Sql(engine).read(f"SELECT DISTINCT {col} AS v FROM {_from(engine, src.table, src.query)}")["v"]
    groups: dict[str, list[Any]] = {}
    for value in values.dropna().tolist():
        if src.period == "value":
            batch_id = _value_id(value)
        else:
            try:
                stamp = pd.Timestamp(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"dataset.source.batch_column: {value!r} is not a date, so period {src.period} cannot "
                    "apply"
                ) from exc
            batch_id = stamp.strftime("%Y-%m-%d" if src.period == "day" else "%Y-%m")
        groups.setdefault(check_id(batch_id, f"dataset.source.batch_column value {value!r}"), []).append(
            value
        )
    return [Batch(batch_id, values=tuple(vals)) for batch_id, vals in groups.items()]


def _sql_rows(cfg: CtcdConfig, src: SqlSource, values: tuple[Any, ...]) -> pd.DataFrame:
    engine = _engine(src.url)
    column = _quote(engine, src.batch_column)
    statement = f"SELECT * FROM {_from(engine, src.table, src.query)} WHERE {column} IN :vals"
    sql = _Sql(engine)
    frame = pd.concat(
        [
            sql.read(statement, {"vals": list(values[i : i + SQL_CHUNK])})
            for i in range(0, len(values), SQL_CHUNK)
        ],
        ignore_index=True,
    )
    order = [c for c in (src.batch_column, cfg.dataset.id_column) if c in frame.columns]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- labels at the source


def _pending_dir(ws: Workspace) -> Path:
    """Ids (and labels that came with their batch) of landed batches whose labels are not due yet."""
    return ws.root / "source" / "pending-labels"


def _source_labels(cfg: CtcdConfig, labels: SourceLabels, batch_id: str, ids: pd.Series) -> pd.DataFrame:
    """The labels of a batch's ids held by a separate labels path, table or query (maybe none yet)."""
    ds = cfg.dataset
    src = cfg.dataset.source
    if labels.path is not None:
        options = getattr(src, "storage_options", {})
        sep, encoding = getattr(src, "sep", ","), getattr(src, "encoding", "utf-8")
        try:
            files = _list_files(labels.path, options, "labels.path")
        except ConfigError:
            files = []  # the folder appears with the first labels
        own = [p for p in files if _stem(p) == batch_id]
        frames = []
        for path in own or files:
            try:
                frames.append(_parse(_read_bytes(path, options), path, sep, encoding))
            except (OSError, ValueError, UnicodeDecodeError) as exc:
                raise WorkFailed(f"labels file {path} is not a readable table: {exc}") from exc
    else:
        engine = _engine(src.url)  # type: ignore[union-attr]
        where = f"{_quote(engine, ds.id_column)} IN :ids"
        sql = _Sql(engine)
        base = _from(engine, labels.table, labels.query)
        wanted = ids.tolist()
        frames = [
            sql.read(f"SELECT * FROM {base} WHERE {where}", {"ids": wanted[i : i + SQL_CHUNK]})
            for i in range(0, len(wanted), SQL_CHUNK)
        ]
    out = []
    for frame in frames:
        missing = [c for c in (ds.id_column, ds.target) if c not in frame.columns]
        if missing:
            raise WorkFailed(f"the labels at dataset.source.labels have no column(s) {missing}")
        out.append(frame[[ds.id_column, ds.target]])
    if not out:
        return pd.DataFrame(columns=[ds.id_column, ds.target])
    found = pd.concat(out, ignore_index=True)
    return found[found[ds.id_column].isin(ids)].dropna().drop_duplicates(ds.id_column, keep="last")


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a frame as Parquet under a hidden temporary name, then rename (no reader sees half a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    _write_bytes(path, sink.getvalue())


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- pulling


def _ids_of(data: bytes, name: str, src: FilesSource, id_column: str) -> pd.DataFrame:
    """Only the id column of a batch file's bytes."""
    if name.lower().endswith(".csv"):
        return pd.read_csv(io.BytesIO(data), sep=src.sep, encoding=src.encoding, usecols=[id_column])
    return pd.read_parquet(io.BytesIO(data), columns=[id_column])


def _land_one(cfg: CtcdConfig, ws: Workspace, batch: Batch) -> None:
    """Write one batch into landing/ (and its ids, or labels, into the pending labels)."""
    ds, src = cfg.dataset, cfg.dataset.source
    labels: SourceLabels | None = getattr(src, "labels", None)
    if isinstance(src, FilesSource) and batch.path is not None and _verbatim(cfg, src, batch.path):
        data = _read_bytes(batch.path, src.storage_options)
        if labels is not None:
            try:
                ids = _ids_of(data, batch.path, src, ds.id_column)
            except (OSError, ValueError, KeyError, UnicodeDecodeError):
                ids = None  # unreadable or without ids: the gate quarantines it, no labels will match
            if ids is not None:
                _write_parquet(_pending_dir(ws) / f"{batch.batch_id}.parquet", ids)
        _write_bytes(ws.landing / f"{batch.batch_id}{PurePosixPath(batch.path).suffix.lower()}", data)
        return
    try:
        frame = read_source_batch(cfg, batch)
    except WorkFailed:
        if isinstance(src, FilesSource) and batch.path is not None:
            # Not a table: land the bytes as they are, so the data gate quarantines it with its reason.
            data = _read_bytes(batch.path, src.storage_options)
            _write_bytes(ws.landing / f"{batch.batch_id}{PurePosixPath(batch.path).suffix.lower()}", data)
            return
        raise
    if labels is not None and ds.id_column in frame.columns:
        keep = (
            [ds.id_column, ds.target] if labels.from_batch and ds.target in frame.columns else [ds.id_column]
        )
        _write_parquet(_pending_dir(ws) / f"{batch.batch_id}.parquet", frame[keep])
    if labels is not None and labels.from_batch:
        frame = frame.drop(columns=[ds.target], errors="ignore")
    _write_parquet(ws.landing / f"{batch.batch_id}.parquet", frame)


def _land_due_labels(cfg: CtcdConfig, ws: Workspace, order: list[str]) -> tuple[list[str], list[str]]:
    """Write the labels that are due into labels/; return (arrived, still pending) batch ids.

    Labels of batch k are due once batch k + dataset.label_delay_batches (in batch id order) is landed
    or filed.
    """
    labels: SourceLabels | None = getattr(cfg.dataset.source, "labels", None)
    pending = sorted(_pending_dir(ws).glob("*.parquet"))
    if labels is None or not pending:
        return [], []
    ids = sorted(set(order) | {p.stem for p in pending})
    position = {b: i for i, b in enumerate(ids)}
    arrived, waiting = [], []
    for path in pending:
        batch_id = path.stem
        if labels_file(ws, batch_id) is not None:  # already there (landed by hand, or by an earlier pull)
            path.unlink()
            continue
        k = position[batch_id] + cfg.dataset.label_delay_batches
        if k >= len(ids) or not is_landed_or_filed(ws, ids[k]):
            waiting.append(batch_id)
            continue
        stash = pd.read_parquet(path)
        if labels.from_batch:
            found = stash.dropna()
        else:
            found = _source_labels(cfg, labels, batch_id, stash[cfg.dataset.id_column])
        if found.empty and len(stash):
            waiting.append(batch_id)  # not at the source yet
            continue
        _write_parquet(ws.labels / f"{batch_id}.parquet", found)
        path.unlink()
        arrived.append(batch_id)
    return arrived, waiting


def pull(cfg: CtcdConfig, ws: Workspace, through: str | None = None) -> PullReport:
    """Land every batch at the source with id <= `through` not yet landed or filed, then due labels."""
    ws.ensure()
    _pending_dir(ws).mkdir(parents=True, exist_ok=True)
    found = list_batches(cfg)
    landed, not_yet, already = [], [], 0
    for batch in found:
        if through is not None and batch.batch_id > through:
            not_yet.append(batch.batch_id)
        elif is_landed_or_filed(ws, batch.batch_id):
            already += 1
        else:
            _land_one(cfg, ws, batch)
            landed.append(batch.batch_id)
    arrived, waiting = _land_due_labels(cfg, ws, [b.batch_id for b in found])
    return PullReport(
        through=through,
        landed=landed,
        labels_landed=arrived,
        already_there=already,
        not_yet=not_yet,
        labels_pending=waiting,
    )


# --------------------------------------------------------------------------- status


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
