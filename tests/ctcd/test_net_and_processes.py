"""The one HTTP readiness check (`ctcd.net`), the project root (`ctcd.settings.project_root`) and the PID
files of `ctcd.processes`, against a real local HTTP server and real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from ctcd import net, processes, settings
from ctcd.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = {"/health": (200, b"OK"), "/starting": (503, b"not yet")}.get(self.path, (404, b""))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_ok_wants_200_and_the_expected_text(http_server: str) -> None:
    assert net.http_ok(f"{http_server}/health")
    assert net.http_ok(f"{http_server}/health", expect="OK")
    assert not net.http_ok(f"{http_server}/health", expect="true")
    assert not net.http_ok(f"{http_server}/starting")
    assert not net.http_ok(f"http://127.0.0.1:{net.free_port()}/health")  # nothing listens


def test_wait_http_returns_once_ready_and_says_what_it_last_saw(http_server: str) -> None:
    net.wait_http(f"{http_server}/health", timeout=30, expect="OK")
    with pytest.raises(TimeoutError, match="status 503"):
        net.wait_http(f"{http_server}/starting", timeout=0)


def test_port_in_use_and_client_host(http_server: str) -> None:
    port = int(http_server.rsplit(":", 1)[1])
    assert net.port_in_use("0.0.0.0", port)  # a wildcard bind is reached on loopback
    assert net.client_host("0.0.0.0") == net.client_host("::") == "127.0.0.1"
    assert net.client_host("10.0.0.5") == "10.0.0.5"


def test_project_root_is_the_checkout_else_the_working_directory(tmp_path: Path) -> None:
    assert settings.project_root() == REPO
    assert (settings.project_root() / "flows").is_dir()
    # An installed wheel: the `ctcd` package without flows/ and tasks/ beside it.
    installed = tmp_path / "site-packages" / "ctcd"
    installed.mkdir(parents=True)
    shutil.copy(REPO / "ctcd" / "settings.py", installed / "settings.py")
    (installed / "__init__.py").write_text("", encoding="utf-8")
    project = tmp_path / "project"
    project.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "from ctcd import settings; print(settings.project_root())"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(installed.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()) == project.resolve()


def test_a_pid_file_round_trips_and_a_recycled_pid_is_stale(workspace: Workspace) -> None:
    record = processes.start_process(
        workspace, "sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], dict(os.environ),
        cwd=workspace.root, order=5, url="http://127.0.0.1:1", health_url="http://127.0.0.1:1/health",
    )  # fmt: skip
    try:
        assert processes.read_record(workspace, "sleeper") == record
        assert processes.read_records(workspace) == [record]
        assert processes.is_alive(record)
        assert psutil.Process(record.pid).cwd() == str(workspace.root)
        assert os.getpgid(record.pid) == record.pid, "the process leads a group of its own"
        # The same pid with another start time: a file whose pid the system has given to someone else.
        recycled = processes.ProcessRecord(**{**record.__dict__, "create_time": record.create_time - 1000})
        assert not processes.is_alive(recycled)
        assert processes.stop(recycled, grace=1) is False
        assert processes.is_alive(record), "a stale record signals nothing"
    finally:
        assert processes.stop_record(workspace, record, grace=5) is True
    assert not processes.is_alive(record)
    assert processes.read_record(workspace, "sleeper") is None


def test_an_unreadable_pid_file_counts_as_none(workspace: Workspace) -> None:
    processes.pid_file(workspace, "broken").write_text("{not json", encoding="utf-8")
    # A reload channel shares the folder and the suffix, but is not a PID file.
    (workspace.run / "serving-3000.reload.json").write_text('{"version": "2"}', encoding="utf-8")
    assert processes.read_record(workspace, "broken") is None
    assert processes.read_records(workspace) == []
