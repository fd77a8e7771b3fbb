"""Alerts through Prefect, against a real `prefect server start` (its triggers and actions services run
there): the automations `ctcd up` creates send each alert kind to a local webhook, once per episode.

The webhook is an `http.server` on 127.0.0.1 in a thread that records the JSON body of every POST.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from ctcd import alerts, events
from ctcd.app import deployments, stack
from ctcd.config import AlertsConfig, CtcdConfig, load_config
from ctcd.net import free_port
from ctcd.workspace import Workspace
from tests.integration.test_prefect_stack import wait_for, write_config

pytestmark = pytest.mark.integration


@dataclass
class Receiver:
    """A webhook on 127.0.0.1 that keeps the parsed JSON body of each POST."""

    url: str = ""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [b for b in self.bodies if b.get("kind") == kind]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with got.lock:
                got.bodies.append(json.loads(raw))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    got.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Server:
    cfg: CtcdConfig
    ws: Workspace
    api: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[Server]:
    """A Prefect server started by the stack's own code, with the alert automations `ctcd up` creates."""
    root = tmp_path_factory.mktemp("alerts")
    cfg = write_config(root, {})
    cfg = cfg.model_copy(update={"alerts": AlertsConfig(webhook_url=receiver.url, block="ctcd-test-alerts")})
    ws = Workspace.open(root / "home")
    try:
        stack.wait_prefect(cfg, stack.start_prefect_server(cfg, ws), time.monotonic() + 180)
        yield Server(cfg, ws, deployments.prefect_api_url(cfg))
    finally:
        stack.down(ws, grace=10)


def test_up_creates_one_enabled_automation_per_alert_kind_idempotently(server: Server) -> None:
    first = alerts.ensure_alerts(server.cfg, server.api)
    again = alerts.ensure_alerts(server.cfg, server.api)
    assert [a.kind for a in first] == list(events.ALERT_KINDS)
    assert again == first
    assert all(a.enabled for a in first)
    assert alerts.list_alerts(server.cfg, server.api) == first


def test_each_alert_kind_reaches_the_webhook_once_per_episode(
    server: Server, receiver: Receiver, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    alerts.ensure_alerts(server.cfg, server.api)
    ws = Workspace.open(tmp_path / "home")
    sent = {}
    with temporary_settings({PREFECT_API_URL: server.api}):
        for kind in events.ALERT_KINDS:
            episode = f"episode-of-{kind}"
            summary = f"{kind} happened"
            sent[kind] = events.emit_alert(server.cfg, kind, summary, {"detail": kind}, episode, ws=ws)
            # The same episode again (a re-run): not sent.
            assert events.emit_alert(server.cfg, kind, summary, {"detail": kind}, episode, ws=ws) is None
    assert all(event is not None for event in sent.values())
    for kind in events.ALERT_KINDS:
        bodies = wait_for(
            lambda kind=kind: receiver.of_kind(kind),
            f"the {kind} alert reaching the webhook",
            240,
            [server.ws.logs / "prefect-server.log"],
        )
        assert len(bodies) == 1, bodies
        body = bodies[0]
        assert body["event"] == f"ctcd.alert.{kind}"
        assert (
            body["id"] == str(sent[kind].id) == str(events.alert_id(server.cfg, kind, f"episode-of-{kind}"))
        )
        assert body["summary"] == f"{kind} happened"
        assert body["episode"] == f"episode-of-{kind}"
        assert body["resource"]["prefect.resource.id"] == events.model_resource_id(server.cfg)
        assert body["payload"]["detail"] == kind
    assert sorted(e["kind"] for e in events.sent_alerts(ws)) == sorted(events.ALERT_KINDS)


def _alerts_cli(
    server: Server, config: Path, *args: str, api: str | None
) -> subprocess.CompletedProcess[str]:
    """`ctcd alerts ARGS --json` with PREFECT_API_URL set to `api` (as in the compose stack) or unset."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"CTCD_HOME": str(server.ws.root), "PREFECT_HOME": str(server.ws.root / "cli-prefect")}
    if api:
        env["PREFECT_API_URL"] = api
    ctcd = str(Path(sys.executable).parent / "ctcd")
    return subprocess.run(
        [ctcd, "alerts", *args, "--json", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alerts_sync_creates_the_automations_on_prefect_api_url_idempotently(
    server: Server, receiver: Receiver, tmp_path: Path
) -> None:
    """The compose stack's deploy job: PREFECT_API_URL names the server, the config's local stack does not."""
    raw = yaml.safe_load(server.cfg.source.read_text(encoding="utf-8"))
    raw["alerts"] = {"webhook_url": receiver.url, "block": server.cfg.alerts.block}
    raw["orchestration"]["prefect_port"] = free_port()  # nothing there: the command must use the env's URL
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    with deployments.connect(server.api) as client:  # start from none
        for kind in events.ALERT_KINDS:
            for automation in client.read_automations_by_name(alerts.automation_name(server.cfg, kind)):
                client.delete_automation(automation.id)
    assert alerts.list_alerts(server.cfg, server.api) == []

    wanted = [
        {"name": alerts.automation_name(server.cfg, k), "kind": k, "enabled": True}
        for k in events.ALERT_KINDS
    ]
    for _ in range(2):
        synced = _alerts_cli(server, config, "sync", api=server.api)
        assert synced.returncode == 0, synced.stderr + synced.stdout
        assert json.loads(synced.stdout) == {
            "prefect_api": server.api,
            "block": "ctcd-test-alerts",
            "alerts": wanted,
        }
    assert [a.kind for a in alerts.list_alerts(server.cfg, server.api)] == list(events.ALERT_KINDS)
    listed = _alerts_cli(server, config, "list", api=server.api)
    assert listed.returncode == 0 and json.loads(listed.stdout)["alerts"] == wanted

    # Without PREFECT_API_URL: the config's local stack, where no server answers: one line, exit 1.
    missing = _alerts_cli(server, config, "list", api=None)
    nowhere = deployments.prefect_api_url(load_config(config))
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        f"error: no Prefect server answers at {nowhere}: start the stack (`ctcd up`) or set PREFECT_API_URL"
    )
    # With the config's own URL right (the `ctcd up` stack), the same automations.
    local = _alerts_cli(server, server.cfg.source, "list", api=None)
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["prefect_api"] == server.api
    assert json.loads(local.stdout)["alerts"] == wanted


def test_without_a_webhook_or_a_block_of_that_name_alerts_are_off(server: Server) -> None:
    off = server.cfg.model_copy(update={"alerts": AlertsConfig(webhook_url=None, block="no-such-block")})
    assert alerts.ensure_alerts(off, server.api) == []


def test_an_alert_without_a_prefect_api_is_logged_not_sent(server: Server, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ws = Workspace.open(tmp_path / "home")
    with temporary_settings({PREFECT_API_URL: None}):
        assert events.emit_alert(server.cfg, "quarantine", "x", {}, "no-api", ws=ws) is None
    assert events.sent_alerts(ws) == []
    with pytest.raises(ValueError, match="unknown alert kind"):
        events.emit_alert(server.cfg, "no-such-kind", "x", {}, "e", ws=ws)
