"""Shadow and canary serving in a real `bentoml serve`: who answers, what is logged, and zero failed requests
while rollouts start, advance and end under concurrent load."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest

from ctcd import registry
from ctcd.config import load_config
from ctcd.net import free_port
from ctcd.prediction_log import read_predictions
from ctcd.rollout import read_rollout, routes_to_candidate
from ctcd.serving import deploy
from ctcd.workspace import Workspace
from tests.integration.test_serving import (
    API_KEY_ENV,
    json_rows,
    make_rows,
    offline,
    register_version,
    write_project,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

KEY = "rollout-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """A live two-worker server on the config's port serving champion v1; v2 registered as the candidate."""
    from ctcd.serving.server import start_server

    root = tmp_path_factory.mktemp("rollout")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        mp.setenv(API_KEY_ENV, KEY)
        # Two workers: each follows the reload channel on its own, and the canary route must agree.
        # A request queued longer than `max_latency_ms` is shed with a 503 (overload, not a rollout fault):
        # on a loaded CI machine a queue can wait 5 s, so the shedding threshold is out of these tests' way.
        config = write_project(root, free_port(), log_flush_seconds=0.5, workers=2, max_latency_ms=120_000)
        cfg = load_config(config)
        ws = Workspace.open(root / "home")
        v1 = register_version(cfg, ws, seed=1)
        registry.Registry(cfg, ws).move_alias(registry.CHAMPION, v1, reason="first")
        v2 = register_version(cfg, ws, seed=2)
        handle = start_server(cfg, ws, cfg.serving.port)
        try:
            yield cfg, ws, handle, v1, v2
        finally:
            handle.stop()


async def _post_all(url: str, bodies: list[dict], connections: int = 16) -> list[httpx.Response]:
    """POST every body to /predict over `connections` concurrent connections; responses in order."""
    out: list[httpx.Response | None] = [None] * len(bodies)
    queue = list(enumerate(bodies))
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, headers=HEADERS, timeout=120, limits=limits) as client:

        async def worker() -> None:
            while queue:
                i, body = queue.pop()
                out[i] = await client.post("/predict", json=body)

        await asyncio.gather(*(worker() for _ in range(connections)))
    return out  # type: ignore[return-value]


def predict_each(url: str, rows: list[dict]) -> list[dict]:
    """One single-row request per row, concurrently; the answers in row order (every request must pass)."""
    responses = asyncio.run(_post_all(url, [{"rows": [row]} for row in rows]))
    bad = [f"{r.status_code}: {r.text[:200]}" for r in responses if r.status_code != 200]
    assert bad == []
    return [r.json()[0] for r in responses]


def logged(ws: Workspace, request_ids: list[str]):
    """The prediction log's rows of these requests (waits for the server's writer to flush them)."""
    wanted = set(request_ids)
    for _ in range(300):
        log = read_predictions(ws)
        if wanted <= set(log["request_id"]):
            return log[log["request_id"].isin(wanted)].set_index("request_id").loc[request_ids]
        time.sleep(0.2)
    raise AssertionError("the served predictions did not reach the prediction log")


def test_canary_routes_a_stable_share_of_rows_to_the_candidate(live):
    cfg, ws, handle, v1, v2 = live
    deploy.start_rollout(cfg, ws, handle.url, v2.version, "canary")
    state = deploy.advance_canary(cfg, ws, handle.url)
    assert state.step == 1 and state.fraction == cfg.serving.canary_steps[1] == 0.25
    assert read_rollout(ws) == state
    assert registry.Registry(cfg, ws).by_alias(registry.CHALLENGER).version == v2.version
    try:
        ids = [f"customer-{i}" for i in range(2000)]
        frame = make_rows(cfg, len(ids), seed=5)
        rows = json_rows(cfg, frame, ids=ids)
        answers = predict_each(handle.url, rows)

        versions = [a["model_version"] for a in answers]
        assert set(versions) == {v1.version, v2.version}
        share = versions.count(v2.version) / len(versions)
        assert abs(share - state.fraction) <= 0.03, share
        # The route is the row id's hash: the same in the server's workers as here.
        assert versions == [v2.version if routes_to_candidate(i, state.fraction) else v1.version for i in ids]
        # Each row is answered with its model's own probability.
        expected = np.where(
            [v == v2.version for v in versions], offline(cfg, ws, v2, frame), offline(cfg, ws, v1, frame)
        )
        assert np.allclose([a["probability"] for a in answers], expected, atol=1e-9)

        again = predict_each(handle.url, rows[:300] + rows[:300])
        assert [a["model_version"] for a in again] == versions[:300] * 2

        log = logged(ws, [a["request_id"] for a in answers])
        assert list(log["model_version"]) == versions
        assert list(log["answered_by"]) == ["candidate" if v == v2.version else "champion" for v in versions]
        assert set(log["champion_version"]) == {v1.version} and set(log["candidate_version"]) == {v2.version}
        assert np.allclose(log["champion_probability"].astype(float), offline(cfg, ws, v1, frame), atol=1e-9)
        assert np.allclose(log["candidate_probability"].astype(float), offline(cfg, ws, v2, frame), atol=1e-9)
    finally:
        deploy.end_rollout(cfg, ws, handle.url, promoted=False)
    assert read_rollout(ws) is None
    assert registry.Registry(cfg, ws).by_alias(registry.CHALLENGER) is None
    assert httpx.get(f"{handle.url}/model").json()["rollout"] is None


def test_a_rollout_the_server_cannot_serve_is_refused_and_changes_nothing(live):
    cfg, _, handle, v1, v2 = live
    url = f"{handle.url}/admin/reload"
    bad_mode = {"version": v1.version, "rollout": {"candidate_version": v2.version, "mode": "blue"}}
    assert httpx.post(url, json=bad_mode, headers=HEADERS).status_code == 400
    assert httpx.post(url, json=bad_mode).status_code == 401  # the API key guards it too
    missing = {"version": v1.version, "rollout": {"candidate_version": "999", "mode": "shadow"}}
    refused = httpx.post(url, json=missing, headers=HEADERS, timeout=120)
    assert refused.status_code == 409 and "999" in refused.json()["error"]
    answer = predict_each(handle.url, json_rows(cfg, make_rows(cfg, 1, seed=8), ids=["x"]))[0]
    assert answer["model_version"] == v1.version
    assert httpx.get(f"{handle.url}/model").json()["rollout"] is None


def test_shadow_answers_with_the_champion_and_logs_both_models(live):
    cfg, ws, handle, v1, v2 = live
    state = deploy.start_rollout(cfg, ws, handle.url, v2.version, "shadow")
    assert state.fraction == 0.0 and state.mode == "shadow"
    try:
        ids = [f"shadow-{i}" for i in range(400)]
        frame = make_rows(cfg, len(ids), seed=6)
        answers = predict_each(handle.url, json_rows(cfg, frame, ids=ids))
        assert {a["model_version"] for a in answers} == {v1.version}
        assert np.allclose([a["probability"] for a in answers], offline(cfg, ws, v1, frame), atol=1e-9)

        log = logged(ws, [a["request_id"] for a in answers])
        assert set(log["model_version"]) == {v1.version} and set(log["answered_by"]) == {"champion"}
        assert set(log["champion_version"]) == {v1.version} and set(log["candidate_version"]) == {v2.version}
        assert np.allclose(log["champion_probability"].astype(float), log["probability"], atol=0)
        assert np.allclose(log["candidate_probability"].astype(float), offline(cfg, ws, v2, frame), atol=1e-9)
    finally:
        deploy.end_rollout(cfg, ws, handle.url, promoted=False)


class Load:
    """32 concurrent connections sending single-row requests until stopped, recording every outcome."""

    def __init__(self, url: str, rows: list[dict], connections: int = 32) -> None:
        self.url, self.rows, self.connections = url, rows, connections
        self.answers: list[dict] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def wait_for(self, more: int) -> None:
        """Block until `more` further answers arrived (or a request failed)."""
        target = len(self.answers) + more
        while len(self.answers) < target and not self.failures:
            time.sleep(0.05)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=self.connections)
        async with httpx.AsyncClient(base_url=self.url, headers=HEADERS, timeout=60, limits=limits) as client:

            async def worker(k: int) -> None:
                i = k
                while not self._stop.is_set():
                    try:
                        r = await client.post("/predict", json={"rows": [self.rows[i % len(self.rows)]]})
                        if r.status_code == 200:
                            self.answers.append(r.json()[0])
                        else:
                            self.failures.append(f"{r.status_code}: {r.text[:200]}")
                    except httpx.HTTPError as exc:
                        self.failures.append(repr(exc))
                    i += self.connections

            await asyncio.gather(*(worker(k) for k in range(self.connections)))


def test_entering_and_leaving_rollouts_under_load_fails_no_request(live):
    cfg, ws, handle, v1, v2 = live
    ids = [f"load-{i}" for i in range(500)]
    rows = json_rows(cfg, make_rows(cfg, len(ids), seed=7), ids=ids)
    reg = registry.Registry(cfg, ws)
    with Load(handle.url, rows) as load:
        load.wait_for(100)
        deploy.start_rollout(cfg, ws, handle.url, v2.version, "shadow")
        load.wait_for(200)
        deploy.end_rollout(cfg, ws, handle.url, promoted=False)
        load.wait_for(100)
        deploy.start_rollout(cfg, ws, handle.url, v2.version, "canary")
        load.wait_for(200)
        for _ in cfg.serving.canary_steps[1:]:
            deploy.advance_canary(cfg, ws, handle.url)
            load.wait_for(200)
        reg.promote(reg.version(v2.version), reason="online gate passed")  # what the online gate does
        deploy.end_rollout(cfg, ws, handle.url, promoted=True)
        load.wait_for(200)

    assert load.failures == []
    versions = [a["model_version"] for a in load.answers]
    assert versions[0] == v1.version and versions[-1] == v2.version
    info = httpx.get(f"{handle.url}/model").json()
    assert info["version"] == v2.version and info["rollout"] is None
    assert read_rollout(ws) is None and reg.require_champion().version == v2.version
