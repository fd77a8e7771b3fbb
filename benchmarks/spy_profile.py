"""py-spy profile of a server under load, for `bench_serving.py --profile` (`pip install py-spy`; not in
the lock): the functions with the most samples, own and total."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def profile_server(pid: int, load: Callable[[], object], seconds: int, top: int = 15) -> str:
    """Sample the server's process tree with py-spy while `load()` drives it for `seconds`; the top
    functions as text.

    py-spy runs `--nonblocking` (it does not pause the server to read its stacks), so the load run it
    watches is only slightly slower than the measured one; its numbers are not reported. `--gil` keeps
    only the thread that holds the GIL: a Python server's CPU time, without threads that wait (the event
    loop's poll, idle pool threads), which a plain sample would count as busy.
    """
    out = Path(tempfile.mkdtemp(prefix="ctcd-spy-")) / "profile.txt"
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    cmd = [
        spy_bin,
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--gil",
        "--format",
        "raw",
    ]
    cmd += ["--rate", "200", "--duration", str(seconds + 1), "-o", str(out)]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    load()
    _, err = spy.communicate(timeout=120)
    if not out.exists():
        return f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}"
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in out.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames or not count.isdigit():
            continue
        n = int(count)
        samples += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            if not frame.startswith(_LAUNCH_FRAMES):
                total[frame] = total.get(frame, 0) + n
    shutil.rmtree(out.parent, ignore_errors=True)
    lines = [f"py-spy: {samples} samples of the GIL holder in the server's processes ({seconds} s at 200 Hz)"]
    for title, table in (
        ("own (where the time is spent)", own),
        ("total (including callees; launch frames left out)", total),
    ):
        lines.append(f"  top {top} by {title}:")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"    {100 * n / max(samples, 1):5.1f}%  {frame}")
    return "\n".join(lines)


# Frames that start the process, the event loop or a thread: on every stack, they say nothing.
_LAUNCH_FRAMES = tuple(
    f"{name} ("
    for name in (
        "<module>",
        "_run_code",
        "_run_module_as_main",
        "main",
        "Command.main",
        "Command.invoke",
        "Command.__call__",
        "Context.invoke",
        "asyncio_run",
        "Server.run",
        "Runner.run",
        "Thread._bootstrap",
        "Thread._bootstrap_inner",
        "Thread.run",
    )
)


def _frame(raw: str) -> str:
    # "func (path/to/site-packages/pkg/mod.py:123)" -> "func (pkg/mod.py)": one entry per function.
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.replace(str(REPO) + "/", "")
    return f"{name} ({path})"
