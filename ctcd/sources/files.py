"""The `files` and `file` sources through fsspec (local paths or s3://, gs://, memory://, file:// URLs):
listing and reading batch files, and cutting one time-ordered file into batches (`split`)."""

from __future__ import annotations

import calendar
import io
from datetime import date, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import pandas as pd

from ctcd.batches import BATCH_SUFFIXES, PARTIAL_SUFFIXES
from ctcd.config import CtcdConfig, FileSource, FilesSource
from ctcd.errors import ConfigError, WorkFailed
from ctcd.sources.batch import Batch, check_id

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_name) if name})


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
        and not name.endswith(PARTIAL_SUFFIXES)
        and PurePosixPath(name).suffix.lower() in BATCH_SUFFIXES
    )


def list_files(url: str, options: dict[str, Any], key: str) -> list[str]:
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


def read_bytes(url: str, options: dict[str, Any]) -> bytes:
    fs, path = _fs(url, options)
    try:
        return fs.cat_file(path)
    except OSError as exc:
        raise WorkFailed(f"cannot read {url}: {exc}") from exc


def parse_table(data: bytes, name: str, sep: str, encoding: str) -> pd.DataFrame:
    """A Parquet or CSV file's bytes as a DataFrame (ValueError/OSError when it is not one)."""
    if name.lower().endswith(".csv"):
        return pd.read_csv(io.BytesIO(data), sep=sep, encoding=encoding)
    return pd.read_parquet(io.BytesIO(data))


def read_file(src: FilesSource | FileSource, url: str) -> pd.DataFrame:
    data = read_bytes(url, src.storage_options)
    try:
        return parse_table(data, url, src.sep, src.encoding)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise WorkFailed(f"{url} is not a readable table: {str(exc).splitlines()[0][:200]}") from exc


def verbatim(cfg: CtcdConfig, src: FilesSource, path: str) -> bool:
    """Whether a file can land byte for byte (the gate reads it as is): nothing to strip or re-encode."""
    if src.labels is not None and src.labels.from_batch:
        return False
    if path.lower().endswith(".parquet"):
        return True
    return src.sep == "," and src.encoding.lower() == cfg.gates.data.csv_encoding.lower()


def file_batches(src: FilesSource) -> list[Batch]:
    """The batch files of a `files` source (id = file stem)."""
    return [Batch(check_id(_stem(p), p), path=p) for p in list_files(src.path, src.storage_options, "path")]


def label_frames(src: Any, path: str, batch_id: str) -> list[pd.DataFrame]:
    """The label files at `path`, read like the source's files: the one named after the batch, else all of
    them (none while the folder does not exist yet)."""
    options = getattr(src, "storage_options", {})
    sep, encoding = getattr(src, "sep", ","), getattr(src, "encoding", "utf-8")
    try:
        files = list_files(path, options, "labels.path")
    except ConfigError:
        files = []  # the folder appears with the first labels
    own = [p for p in files if _stem(p) == batch_id]
    frames = []
    for name in own or files:
        try:
            frames.append(parse_table(read_bytes(name, options), name, sep, encoding))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise WorkFailed(f"labels file {name} is not a readable table: {exc}") from exc
    return frames


def split_file(cfg: CtcdConfig, src: FileSource) -> list[Batch]:
    frame = read_file(src, src.path)
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
            batch_id = check_id(value_id(value), f"dataset.source.split: row {part.index[0]}")
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


def value_id(value: Any) -> str:
    """A batch id from a column value: dates as YYYY-MM-DD, other stamps in ISO format, else str()."""
    if isinstance(value, datetime | pd.Timestamp):
        stamp = pd.Timestamp(value)
        return stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value).strip()
