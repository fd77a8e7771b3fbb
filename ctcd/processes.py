"""The detached processes ctcd starts (the stack's servers and workers, the prediction servers): starting
one in its own session, its PID file, telling it alive from stale, and stopping it with all it started.

A PID file is `$CTCD_HOME/run/<name>.json` (one `ProcessRecord`): the pid and the process's start time.
The start time tells a live process from a stale file whose pid the system has since given to another
process, so a stop only ever signals what ctcd started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from ctcd.workspace import write_json_atomic

if TYPE_CHECKING:
    from ctcd.workspace import Workspace

STOP_GRACE_SECONDS = 20.0
# How far a process's start time may be from the recorded one (psutil rounds it).
CREATE_TIME_TOLERANCE = 0.5


@dataclass(frozen=True)
class ProcessRecord:
    """A PID file: one process ctcd started. `order` is the start order (stopped in reverse)."""

    name: str
    pid: int
    create_time: float
    command: list[str]
    log: str
    order: int = 0
    url: str | None = None
    health_url: str | None = None
    port: int | None = None
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))


# --- PID files ------------------------------------------------------------------------------------------


def pid_file(ws: Workspace, name: str) -> Path:
    """Where the PID file of process `name` lives."""
    return ws.run / f"{name}.json"


def read_record(ws: Workspace, name: str) -> ProcessRecord | None:
    """The PID file of process `name`, or None (an unreadable file counts as none)."""
    try:
        return ProcessRecord(**json.loads(pid_file(ws, name).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def read_records(ws: Workspace) -> list[ProcessRecord]:
    """Every PID file in the workspace, in start order."""
    records = [read_record(ws, p.stem) for p in sorted(ws.run.glob("*.json"))]
    return sorted((r for r in records if r is not None), key=lambda r: (r.order, r.name))


def write_record(ws: Workspace, record: ProcessRecord) -> Path:
    """Write (or replace) the PID file of `record.name`."""
    return write_json_atomic(pid_file(ws, record.name), asdict(record))


def live_process(record: ProcessRecord) -> psutil.Process | None:
    """The live process a record names, or None when it is gone or the pid now belongs to another one."""
    try:
        proc = psutil.Process(record.pid)
        if (
            abs(proc.create_time() - record.create_time) > CREATE_TIME_TOLERANCE
            or proc.status() == psutil.STATUS_ZOMBIE
        ):
            return None
        return proc
    except psutil.Error:
        return None


def is_alive(record: ProcessRecord) -> bool:
    """Whether the process of a PID file still runs (and is the one that was started)."""
    return live_process(record) is not None


# --- starting --------------------------------------------------------------------------------------------


def spawn(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `command` in a session of its own (so its whole group can be signalled), appending its output
    to `log` after a line naming the command."""
    with log.open("ab") as out:
        out.write(f"\n=== {datetime.now(UTC).isoformat()} {' '.join(command)}\n".encode())
        out.flush()
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def record_of(name: str, process: subprocess.Popen[bytes], log: Path, **fields: object) -> ProcessRecord:
    """The record of a process `spawn` started (its command and start time read from it)."""
    command = [str(part) for part in process.args]  # type: ignore[union-attr]
    create_time = psutil.Process(process.pid).create_time()
    return ProcessRecord(
        name=name, pid=process.pid, create_time=create_time, command=command, log=str(log), **fields
    )  # type: ignore[arg-type]


def start_process(
    ws: Workspace,
    name: str,
    command: list[str],
    env: dict[str, str],
    *,
    cwd: Path,
    order: int = 0,
    url: str | None = None,
    health_url: str | None = None,
) -> ProcessRecord:
    """Start `command` in its own session, logging to `logs/<name>.log`, and write its PID file."""
    log = ws.logs / f"{name}.log"
    process = spawn(command, cwd=cwd, env=env, log=log)
    record = record_of(name, process, log, order=order, url=url, health_url=health_url)
    write_record(ws, record)
    return record


# --- stopping --------------------------------------------------------------------------------------------


def stop(record: ProcessRecord, grace: float = STOP_GRACE_SECONDS) -> bool:
    """Stop a recorded process and every process it started; return whether a live one was stopped.

    SIGTERM goes to the process group and to the groups of its descendants (a Prefect worker runs each
    flow run in a session of its own); what still runs after `grace` seconds gets SIGKILL. A stale
    record (the process gone, or its pid given to another process) signals nothing.
    """
    root = live_process(record)
    if root is not None:
        _terminate_tree(root, grace)
    return root is not None


def stop_record(ws: Workspace, record: ProcessRecord, grace: float = STOP_GRACE_SECONDS) -> bool:
    """`stop` the process of a PID file, then remove the file; False when the file was stale."""
    stopped = stop(record, grace)
    pid_file(ws, record.name).unlink(missing_ok=True)
    return stopped


def _terminate_tree(root: psutil.Process, grace: float) -> None:
    known: dict[int, psutil.Process] = {root.pid: root}
    _collect_descendants(known)
    groups = _groups(known.values())
    _signal_all(known, groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _collect_descendants(known)  # shutdown hooks start processes too
        if not _living(known):
            return
        time.sleep(0.2)
    for _ in range(3):
        _collect_descendants(known)
        groups |= _groups(_living(known))
        _signal_all(known, groups, signal.SIGKILL)
        psutil.wait_procs(_living(known), timeout=5)
        if not _living(known):
            return


def _collect_descendants(known: dict[int, psutil.Process]) -> None:
    for proc in list(known.values()):
        try:
            for child in proc.children(recursive=True):
                known.setdefault(child.pid, child)
        except psutil.Error:
            pass


def _living(known: dict[int, psutil.Process]) -> list[psutil.Process]:
    alive = []
    for proc in known.values():
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.Error:
            pass
    return alive


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except OSError:
        return None


def _groups(procs: Iterable[psutil.Process]) -> set[int]:
    """The process groups of `procs`, except this process's own."""
    own = os.getpgid(0)
    return {g for g in map(_pgid, procs) if g is not None and g != own}


def _signal_all(known: dict[int, psutil.Process], groups: set[int], sig: signal.Signals) -> None:
    """`sig` to `groups`, then to each living process outside the groups it reached (each gets it once)."""
    reached: set[int] = set()
    for group in groups:
        with contextlib.suppress(OSError):
            os.killpg(group, sig)
            reached.add(group)
    for proc in _living(known):
        if _pgid(proc) not in reached:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
