"""The workspace: every piece of run-time state of one ctcd project under one directory (`CTCD_HOME`)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctcd import settings


class _Under:
    """A read-only attribute of a Workspace: the path `parts` below its root."""

    def __init__(self, *parts: str) -> None:
        self.parts = parts

    def __get__(self, ws: Workspace, owner: type | None = None) -> Path:
        return ws.root.joinpath(*self.parts)


@dataclass(frozen=True)
class Workspace:
    """Absolute paths of everything ctcd writes. Create with `Workspace.open()`."""

    root: Path

    @classmethod
    def open(cls, root: Path | str | None = None) -> Workspace:
        """Open (and create) the workspace at `root`, or at `CTCD_HOME` / `.ctcd`."""
        ws = cls(Path(root).resolve() if root else settings.ctcd_home())
        ws.ensure()
        return ws

    def ensure(self) -> None:
        for d in (
            self.landing,
            self.labels,
            self.validated,
            self.quarantine,
            self.predictions,
            self.reports,
            self.mlflow_artifacts,
            self.gx_root,
            self.prefect_home,
            self.logs,
            self.run,
            self.audit,
        ):
            d.mkdir(parents=True, exist_ok=True)

    # Data areas: batches move landing -> validated | quarantine; nothing is ever deleted.
    landing = _Under("landing")
    labels = _Under("labels")
    validated = _Under("validated")
    quarantine = _Under("quarantine")
    predictions = _Under("predictions")
    reports = _Under("reports")

    # Services' state.
    mlflow_db = _Under("mlflow", "mlflow.db")
    mlflow_artifacts = _Under("mlflow", "artifacts")
    gx_root = _Under("gx")
    prefect_home = _Under("prefect")
    logs = _Under("logs")
    run = _Under("run")
    """PID files of services started by `ctcd up`."""
    audit = _Under("audit")
    """Append-only logs (promotion history)."""

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"


def log_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a service's log on one line, for an error message ("(no log)" when unreadable)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip() for line in text[-lines:])[-600:]


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, holder: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` (flock: across processes on this machine), waiting up to `timeout` s.

    `holder` names who else may hold it, for the one-line DependencyUnavailable raised on time-out.
    """
    import fcntl

    from ctcd.errors import DependencyUnavailable

    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DependencyUnavailable(f"{holder} held {path} for {timeout:.0f}s") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomic(path: Path, data: bytes | str, *, durable: bool = False) -> Path:
    """The one atomic writer: write `data` to a hidden temporary name beside `path`, then rename it in,
    so no reader ever sees half a file. `durable` also fsyncs the bytes before the rename (for records that
    must survive a power cut, such as the prediction log). The temporary name carries the PID, so two
    processes writing the same path never share one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with tmp.open("wb") as handle:
        handle.write(payload)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path


def write_json_atomic(path: Path, payload: Any, *, indent: int | None = 2) -> Path:
    """`payload` as JSON (dates and paths as strings), written with `write_atomic`."""
    text = json.dumps(payload, indent=indent, default=str)
    return write_atomic(path, text + "\n" if indent is not None else text)
