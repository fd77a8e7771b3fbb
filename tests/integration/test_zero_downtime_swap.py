"""Promotion while a client keeps sending requests: zero failures, the answers switch to the new version,
and a candidate that fails its smoke test is rolled back without touching the live server."""

from __future__ import annotations

import threading

import httpx
import pytest

from ctcd import audit, registry
from ctcd.config import load_config
from ctcd.events import sent_alerts
from ctcd.net import free_port
from ctcd.prediction_log import read_predictions
from ctcd.workspace import Workspace
from tests.integration.test_serving import API_KEY_ENV, json_rows, make_rows, register_version, write_project
from tests.live_stack import reporting_to

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

KEY = "swap-key"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, shared_prefect):
    """A live server on the config's port serving champion v1; the delivery flows report to the session's
    Prefect server (tests/live_stack.py)."""
    from ctcd.serving.server import start_server

    root = tmp_path_factory.mktemp("swap")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        mp.setenv("PREFECT_HOME", str(root / "prefect"))
        mp.setenv(API_KEY_ENV, KEY)
        config = write_project(root, free_port(), log_flush_seconds=0.5)
        cfg = load_config(config)
        ws = Workspace.open(root / "home")
        v1 = register_version(cfg, ws, seed=1)
        registry.Registry(cfg, ws).move_alias(registry.CHAMPION, v1, reason="first")
        handle = start_server(cfg, ws, cfg.serving.port)
        try:
            with reporting_to(shared_prefect):
                yield config, cfg, ws, handle
        finally:
            handle.stop()


class Traffic:
    """A client that sends single-row requests back to back until stopped, recording every outcome."""

    def __init__(self, url: str, rows: list[dict]) -> None:
        self.url, self.rows = url, rows
        self.answers: list[dict] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            i = 0
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", json={"rows": [self.rows[i % len(self.rows)]]})
                    if r.status_code == 200:
                        self.answers.append(r.json()[0])
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                i += 1


def test_promotion_switches_versions_with_zero_failed_requests(live):
    from flows.delivery import delivery_flow

    config, cfg, ws, handle = live
    v2 = register_version(cfg, ws, seed=2)
    registry.Registry(cfg, ws).move_alias(registry.CHAMPION, v2, reason="better")  # what the model gate does
    rows = json_rows(cfg, make_rows(cfg, 50, seed=3), ids=[f"id-{i}" for i in range(50)])

    with Traffic(handle.url, rows) as traffic:
        report = delivery_flow(str(config))
        after_switch = len(traffic.answers)
        while len(traffic.answers) < after_switch + 20 and not traffic.failures:
            threading.Event().wait(0.05)

    assert report.status == "deployed" and report.live_switched, report.message
    assert report.smoke.passed and report.smoke.max_abs_difference is not None
    assert report.bento_tag and report.bento_tag.startswith("ctcd-serving:")
    assert traffic.failures == []
    versions = [a["model_version"] for a in traffic.answers]
    assert versions[0] == "1" and versions[-1] == v2.version
    first_new = versions.index(v2.version)
    assert set(versions[first_new:]) == {v2.version}, "the server went back to the old version"

    # Every served prediction reaches the log with the version that answered it.
    deadline = threading.Event()
    log = read_predictions(ws)
    for _ in range(100):
        if set(a["request_id"] for a in traffic.answers) <= set(log["request_id"]):
            break
        deadline.wait(0.2)
        log = read_predictions(ws)
    logged = log.set_index("request_id")["model_version"]
    assert all(logged[a["request_id"]] == a["model_version"] for a in traffic.answers)


def test_failed_smoke_test_rolls_the_champion_back_and_keeps_serving(live):
    from flows.delivery import delivery_flow

    config, cfg, ws, handle = live
    serving = httpx.get(f"{handle.url}/model").json()["version"]
    broken = register_version(cfg, ws, seed=3, classes=(0, 2))  # cannot answer for positive_label 1
    registry.Registry(cfg, ws).move_alias(registry.CHAMPION, broken, reason="gate passed it")
    rows = json_rows(cfg, make_rows(cfg, 20, seed=4))

    with Traffic(handle.url, rows) as traffic:
        report = delivery_flow(str(config), build=False)

    assert report.status == "rolled_back" and not report.smoke.passed, report.message
    assert "positive_label" in (report.smoke.error or "")
    assert registry.Registry(cfg, ws).require_champion().version == serving
    last = audit.alias_history(ws)[-1]
    assert last["version"] == serving and last["reason"].startswith("rollback: smoke test failed")
    alerts = [(a["kind"], a["episode"]) for a in sent_alerts(ws)]
    assert alerts == [("rollback", f"delivery:{broken.version}")]
    assert traffic.failures == [] and traffic.answers
    assert {a["model_version"] for a in traffic.answers} == {serving}
