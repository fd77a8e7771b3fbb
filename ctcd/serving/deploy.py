"""Deployment steps: build the Bento, smoke-test a candidate in a real server, switch the live server.

The smoke test is TFX's InfraValidator idea: the candidate version runs in its own `bentoml serve` on a
free port, answers held-out rows over HTTP, and must give the same probabilities as the registered model
offline. That server is started for the test and stopped after it, or (`serving.keep_smoke_server`) kept
as a standby that the next delivery reloads to its candidate: blue/green without a second start.
The switch is a guarded in-process reload of the live server (`POST /admin/reload`): each worker loads
the new version beside the old one, checks it, and swaps one reference, so no request fails.
A rollout (`ctcd.rollout`; `start_rollout`, `advance_canary`, `end_rollout`) goes through the same reload:
the server keeps the champion and loads the candidate beside it, in shadow or canary.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
from pydantic import BaseModel

from ctcd import model_ref, registry, settings, tracking
from ctcd.errors import CtcdError, DependencyUnavailable, UsageError, WorkFailed
from ctcd.features import model_input
from ctcd.rollout import RolloutState, clear_rollout, read_rollout, write_rollout
from ctcd.workspace import write_json_atomic

if TYPE_CHECKING:
    import pandas as pd

    from ctcd.config import CtcdConfig
    from ctcd.serving.server import ServerHandle
    from ctcd.workspace import Workspace

BENTOFILE = Path("deployments") / "bentofile.yaml"  # in the project root (`settings.project_root()`)
SMOKE_ROWS = 200
SMOKE_TOLERANCE = 1e-6
SWITCH_TIMEOUT = 120.0


class SmokeResult(BaseModel):
    """The serving smoke test's decision and its evidence."""

    version: str
    rows: int
    max_abs_difference: float | None = None
    labels_match: bool = False
    passed: bool
    error: str | None = None


def api_headers(cfg: CtcdConfig) -> dict[str, str]:
    """Request headers carrying the API key, when one is configured."""
    key = settings.api_key(cfg.serving.api_key_env)
    return {"Authorization": f"Bearer {key}"} if key else {}


def holdout_rows(
    cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, limit: int = SMOKE_ROWS
) -> pd.DataFrame:
    """Rows to smoke-test with: the version's reference sample, else the newest validated batch."""
    import pandas as pd

    features = cfg.dataset.features
    frame: pd.DataFrame | None = None
    try:
        frame = registry.Registry(cfg, ws).load_reference(ref)
    except Exception:
        batches = sorted(ws.validated.glob(f"*.{cfg.dataset.file_format}"))
        if batches:
            path = batches[-1]
            frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    if frame is None or not set(features) <= set(frame.columns):
        raise WorkFailed(
            f"model version {ref.version} has no {tracking.REFERENCE_ARTIFACT} and the workspace has no "
            "validated batch to smoke-test it with: run `ctcd ingest` first"
        )
    frame = frame.dropna(subset=features)
    return frame.head(limit).reset_index(drop=True)


def request_rows(cfg: CtcdConfig, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON request rows from a DataFrame: the features, and the id column when present."""
    columns = [*cfg.dataset.features]
    if cfg.dataset.id_column in frame.columns:
        columns.append(cfg.dataset.id_column)
    records = frame[columns].to_dict("records")
    for record in records:
        for key, value in record.items():
            if hasattr(value, "item"):
                record[key] = value.item()  # numpy scalars to plain JSON numbers
    return records


def offline_probabilities(cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, frame: pd.DataFrame) -> Any:
    """The registered model's probability of the positive label, computed in this process."""
    import numpy as np

    reg = registry.Registry(cfg, ws)
    model = reg.load_model(ref)
    classes = np.asarray(model.classes_)
    positive = model_ref.positive_class_index(cfg, ref, model)
    proba = model.predict_proba(model_input(frame, cfg.dataset, reg.text_categories(ref)))
    return proba[:, positive], classes[proba.argmax(axis=1)]


def predict_over_http(cfg: CtcdConfig, url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Score rows through `/predict_batch`, in chunks the server accepts."""
    out: list[dict[str, Any]] = []
    step = cfg.serving.max_request_rows
    with httpx.Client(base_url=url, headers=api_headers(cfg), timeout=60.0) as client:
        for start in range(0, len(rows), step):
            response = client.post("/predict_batch", json={"rows": rows[start : start + step]})
            if response.status_code != 200:
                raise WorkFailed(
                    f"{url}/predict_batch answered {response.status_code}: {response.text[:300]}"
                )
            out.extend(response.json())
    return out


def smoke_server(cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef) -> ServerHandle:
    """A real server answering with `ref`: a new one pinned to it, or the kept standby reloaded to it.

    With `serving.keep_smoke_server` the standby (started by the first smoke test, recorded in
    `run/smoke.json`) stays up between deliveries; a standby that no longer answers is replaced.
    """
    from ctcd.net import free_port
    from ctcd.serving.server import SMOKE_PID_FILE, running_server, start_server, write_pid_file

    if not cfg.serving.keep_smoke_server:
        return start_server(
            cfg, ws, free_port(), host="127.0.0.1", version=ref.version, log_predictions=False
        )
    handle = running_server(ws, SMOKE_PID_FILE)
    if handle is not None:
        try:
            handle.wait_ready(probe="/healthz")
        except DependencyUnavailable:
            handle.stop()  # a standby that does not answer is replaced
            handle = None
    if handle is None:
        port = free_port()
        handle = start_server(cfg, ws, port, host="127.0.0.1", log_predictions=False, require_model=False)
        write_pid_file(ws, handle, SMOKE_PID_FILE)
    switch_live(cfg, handle.url, ref.version)
    return handle


def smoke_test(
    cfg: CtcdConfig,
    ws: Workspace,
    ref: registry.ModelRef,
    frame: pd.DataFrame,
    tolerance: float = SMOKE_TOLERANCE,
) -> SmokeResult:
    """Serve `ref` in a second real server on a free port and compare its answers with offline ones."""
    import numpy as np

    try:
        expected, labels = offline_probabilities(cfg, ws, ref, frame)
        handle = smoke_server(cfg, ws, ref)
    except CtcdError as exc:
        return SmokeResult(version=ref.version, rows=len(frame), passed=False, error=str(exc))
    try:
        answers = predict_over_http(cfg, handle.url, request_rows(cfg, frame))
    except (CtcdError, httpx.HTTPError) as exc:
        return SmokeResult(version=ref.version, rows=len(frame), passed=False, error=str(exc))
    finally:
        if not cfg.serving.keep_smoke_server:
            handle.stop()
    served = np.array([a["probability"] for a in answers], dtype="float64")
    diff = float(np.max(np.abs(served - expected))) if len(served) else 0.0
    labels_match = [a["prediction"] for a in answers] == [int(v) for v in labels]
    versions = {a["model_version"] for a in answers}
    passed = len(answers) == len(frame) and diff <= tolerance and labels_match and versions == {ref.version}
    error = (
        None
        if passed
        else f"served answers differ from offline ones (max |diff| {diff:.2e}, versions {versions})"
    )
    return SmokeResult(
        version=ref.version,
        rows=len(frame),
        max_abs_difference=diff,
        labels_match=labels_match,
        passed=passed,
        error=error,
    )


def live_model(url: str) -> dict[str, Any] | None:
    """What the live server at `url` serves (`GET /model`), or None when nothing answers there."""
    try:
        response = httpx.get(f"{url}/model", timeout=3.0)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def switch_live(
    cfg: CtcdConfig,
    url: str,
    version: str,
    timeout: float = SWITCH_TIMEOUT,
    rollout: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Reload the live server to `version` (with `rollout`'s candidate beside it; None: alone, which ends
    any rollout), wait until every worker serves it, and return the reload reply."""
    body = {"version": version, "rollout": rollout}
    try:
        response = httpx.post(f"{url}/admin/reload", json=body, headers=api_headers(cfg), timeout=timeout)
    except httpx.HTTPError as exc:
        raise DependencyUnavailable(f"the live server at {url} did not answer the reload: {exc}") from exc
    if response.status_code != 200:
        raise WorkFailed(
            f"the live server at {url} refused to reload to version {version}: {response.text[:300]}"
        )
    # Every worker follows the reload channel; ask until several answers in a row come from the new version.
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 3 * cfg.serving.workers:
        if time.monotonic() > deadline:
            raise WorkFailed(
                f"the live server at {url} still answers with another version after {timeout:.0f}s"
            )
        info = live_model(url) or {}
        same = info.get("version") == version and info.get("rollout") == rollout
        in_a_row = in_a_row + 1 if same else 0
        time.sleep(0.1)
    return response.json()


def start_rollout(
    cfg: CtcdConfig,
    ws: Workspace,
    url: str,
    candidate_version: str,
    mode: Literal["shadow", "canary"],
) -> RolloutState:
    """Serve `candidate_version` beside the champion (shadow, or canary at the first `serving.canary_steps`
    share), mark it `challenger`, and tell the live server at `url`; return the recorded rollout. The
    rollout keeps the metric the candidate passed the model gate on (its stored decision), which the online
    gate judges it on."""
    reg = registry.Registry(cfg, ws)
    champion = reg.require_champion()
    candidate = reg.version(candidate_version)
    if candidate.version == champion.version:
        raise UsageError(f"version {candidate.version} is the champion already: there is nothing to roll out")
    state = RolloutState(
        candidate_version=candidate.version,
        champion_version=champion.version,
        mode=mode,
        step=0,
        fraction=cfg.serving.canary_steps[0] if mode == "canary" else 0.0,
        started_at=datetime.now(UTC),
        started_batch=_newest_batch(ws),
        metric=(reg.load_decision(candidate) or {}).get("primary_metric"),
    )
    reg.move_alias(registry.CHALLENGER, candidate, reason=f"{mode} rollout", extra={"action": "rollout"})
    _tell_live(cfg, ws, url, champion.version, state)
    write_rollout(ws, state)
    return state


def advance_canary(cfg: CtcdConfig, ws: Workspace, url: str) -> RolloutState:
    """Move the canary to the next `serving.canary_steps` share (it stays at the last) and tell the server."""
    state = read_rollout(ws)
    if state is None or state.mode != "canary":
        raise UsageError("no canary rollout is in progress: start one with `serving.rollout: canary`")
    step = min(state.step + 1, len(cfg.serving.canary_steps) - 1)
    state = state.model_copy(update={"step": step, "fraction": cfg.serving.canary_steps[step]})
    _tell_live(cfg, ws, url, state.champion_version, state)
    write_rollout(ws, state)
    return state


def end_rollout(cfg: CtcdConfig, ws: Workspace, url: str, promoted: bool) -> None:
    """End the rollout: the live server serves the champion alone (the candidate, when `promoted` and the
    caller has made it the champion), and a rejected candidate loses the `challenger` alias."""
    state = read_rollout(ws)
    reg = registry.Registry(cfg, ws)
    champion = reg.require_champion()
    _tell_live(cfg, ws, url, champion.version, None)
    if not promoted and state is not None:
        challenger = reg.by_alias(registry.CHALLENGER)
        if challenger is not None and challenger.version == state.candidate_version:
            reg.remove_alias(registry.CHALLENGER, reason=f"{state.mode} rollout ended without promotion")
    clear_rollout(ws)


def _tell_live(cfg: CtcdConfig, ws: Workspace, url: str, version: str, state: RolloutState | None) -> None:
    """Have the live server at `url` serve `version` and the rollout; when none answers, leave the request
    in its reload channel, which a server started later on that port follows."""
    from ctcd.serving.server import reload_channel

    served = None
    if state is not None:
        served = {
            "candidate_version": state.candidate_version,
            "mode": state.mode,
            "fraction": state.fraction,
        }
    if live_model(url) is not None:
        switch_live(cfg, url, version, rollout=served)
        return
    port = httpx.URL(url).port
    if port is not None:
        request = {"version": version, "rollout": served, "requested_at": time.time()}
        write_json_atomic(reload_channel(ws, port), request, indent=None)


def _newest_batch(ws: Workspace) -> str | None:
    """The newest validated batch's id: the last batch before the rollout's traffic."""
    from ctcd.batches import validated_batches

    batches = validated_batches(ws)
    return batches[-1].batch_id if batches else None


def build_bento(cfg: CtcdConfig, ws: Workspace, version: str) -> str:
    """Build the Bento from `deployments/bentofile.yaml` with `version` pinned; return its tag."""
    from ctcd.serving.server import server_environment

    root = settings.project_root()

    cmd = [
        sys.executable,
        "-m",
        "bentoml",
        "build",
        "-f",
        str(root / BENTOFILE),
        "--arg",
        f"version={version}",
        "--label",
        f"model_version={version}",
        "-o",
        "tag",
        str(root),
    ]
    done = subprocess.run(cmd, cwd=root, env=server_environment(cfg, ws), capture_output=True, text=True)
    tags = [line.split("__tag__:", 1)[1].strip() for line in done.stdout.splitlines() if "__tag__:" in line]
    if done.returncode != 0 or not tags:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise WorkFailed(f"`bentoml build` failed for model version {version}: {tail[0][:300]}")
    return tags[-1]
