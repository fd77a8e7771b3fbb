"""Delivery flow: build the Bento, smoke-test the new champion in a second server, switch the live one.

Steps: resolve the version (the champion, or `version`) -> build the Bento -> smoke test on held-out rows in
a real `bentoml serve` on a free port (answers must equal the registered model's offline predictions) ->
reload the live server (zero failed requests) or, when none runs and `start_if_down`, start it. When the
smoke test fails, `champion` moves back to the previously served version and the live server is left
alone. `version` deploys a version to the live server without moving the alias; a restarted server serves
the champion again. A rollback raises the `rollback` alert, a failed smoke test with nothing to roll back to
the `delivery-failed` alert (once per version).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from ctcd import audit, events, registry
from ctcd.config import CtcdConfig, load_config
from ctcd.serving import deploy
from ctcd.serving.server import is_serving, live_server_url, start_server, write_pid_file
from ctcd.workspace import Workspace
from tasks.delivery import DeliveryReport, delivery_markdown, previous_version


@task(name="build-bento")
def build_bento(cfg: CtcdConfig, ws: Workspace, version: str) -> str:
    """Build the Bento with `version` pinned; return its tag."""
    return deploy.build_bento(cfg, ws, version)


@task(name="holdout-rows")
def holdout_rows(cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef) -> pd.DataFrame:
    """Rows to smoke-test with."""
    return deploy.holdout_rows(cfg, ws, ref)


@task(name="smoke-test", retries=0)
def smoke_test(
    cfg: CtcdConfig, ws: Workspace, ref: registry.ModelRef, frame: pd.DataFrame
) -> deploy.SmokeResult:
    """Serve `ref` in a second server and compare its answers with the offline predictions."""
    return deploy.smoke_test(cfg, ws, ref, frame)


@task(name="switch-live")
def switch_live(cfg: CtcdConfig, url: str, version: str) -> dict[str, Any]:
    """Reload the live server to `version` and wait until it serves it."""
    return deploy.switch_live(cfg, url, version)


@task(name="start-rollout")
def start_rollout(cfg: CtcdConfig, ws: Workspace, url: str, version: str, mode: str) -> None:
    """Serve `version` beside the champion on the live server (shadow or canary)."""
    deploy.start_rollout(cfg, ws, url, version, mode)


@task(name="rollback-champion")
def rollback_champion(config_path: str | None, to_version: str, failed_version: str, why: str) -> dict:
    """Point `champion` back at the version served before the failed one."""
    cfg = load_config(config_path)
    ws = Workspace.open()
    reg = registry.Registry(cfg, ws)
    ref = reg.version(to_version)
    with reg.promotion_lock():
        entry = reg.move_alias(
            registry.CHAMPION,
            ref,
            reason=f"rollback: smoke test failed for version {failed_version}: {why}",
            actor="delivery-flow",
        )
    reg.record_rollout(reg.version(failed_version), f"rolled back {entry['at']}: smoke test failed")
    return entry


def alert_delivery(cfg: CtcdConfig, ws: Workspace, report: DeliveryReport) -> None:
    """The `rollback` or `delivery-failed` alert of a delivery whose smoke test failed (once per version)."""
    kind = "rollback" if report.status == "rolled_back" else "delivery-failed"
    payload = {
        "version": report.version,
        "previous_version": report.previous_version,
        "status": report.status,
        "error": report.smoke.error,
        "live_url": report.live_url,
    }
    events.emit_alert(cfg, kind, report.message[:300], payload, f"delivery:{report.version}", ws=ws)


@flow(name="delivery")
def delivery_flow(
    config_path: str | None = None,
    version: str | None = None,
    start_if_down: bool = False,
    build: bool = True,
    rollout: str | None = None,
) -> DeliveryReport:
    """Deploy the champion (or `version`) to the live server, with a smoke test and automatic rollback.

    `rollout` ("shadow" or "canary"): `version` (the challenger) starts a rollout beside the champion on the
    live server instead of replacing it; the online gate (monitoring) promotes or rejects it."""
    cfg = load_config(config_path)
    ws = Workspace.open()
    reg = registry.Registry(cfg, ws)
    target = reg.version(version) if version else reg.require_champion()
    url = live_server_url(cfg)
    live = deploy.live_model(url)
    previous = previous_version(audit.alias_history(ws), live, target.version)
    # The Bento builds (a `bentoml build` subprocess) while the smoke test runs.
    bento = build_bento.submit(cfg, ws, target.version) if build else None
    rows = holdout_rows(cfg, ws, target)
    smoke = smoke_test(cfg, ws, target, rows)
    bento_tag = bento.result() if bento is not None else None
    report = DeliveryReport(
        status="deployed",
        version=target.version,
        previous_version=previous,
        live_url=url,
        bento_tag=bento_tag,
        smoke=smoke,
        message="",
    )
    if rollout and not smoke.passed:
        report.status = "failed"
        report.message = (
            f"smoke test of version {target.version} failed ({smoke.error}); no rollout, the champion serves"
        )
    elif rollout:
        if live is None and start_if_down and not is_serving(url):
            handle = start_server(cfg, ws)
            write_pid_file(ws, handle)
            report.server_started = True
        # With no live server the rollout waits in the server's reload channel for the next one on the port.
        start_rollout(cfg, ws, url, target.version, rollout)
        report.rollout = rollout
        where = f"at {url}" if is_serving(url) else f"once a live server runs at {url}"
        report.message = f"version {target.version} passed the smoke test and runs in {rollout} {where}"
    elif not smoke.passed:
        champion = reg.champion()
        if previous and champion is not None and champion.version == target.version:
            rollback_champion(config_path, previous, target.version, smoke.error or "unknown")
            report.status = "rolled_back"
            report.message = (
                f"smoke test of version {target.version} failed ({smoke.error}); champion back on {previous}"
            )
        else:
            report.status = "failed"
            report.message = (
                f"smoke test of version {target.version} failed ({smoke.error}); nothing to roll back to"
            )
    elif live is not None:
        switch_live(cfg, url, target.version)
        report.live_switched = True
        report.message = f"version {target.version} passed the smoke test and now serves at {url}"
    elif start_if_down and not is_serving(url):
        handle = start_server(cfg, ws)
        write_pid_file(ws, handle)
        if (deploy.live_model(url) or {}).get("version") != target.version:
            switch_live(cfg, url, target.version)
        report.server_started = True
        report.message = f"version {target.version} passed the smoke test; started the live server at {url}"
    else:
        report.message = f"version {target.version} passed the smoke test; no live server runs at {url}"
    if report.status in ("rolled_back", "failed"):
        alert_delivery(cfg, ws, report)
    create_markdown_artifact(
        key="delivery-report", description=report.message, markdown=delivery_markdown(report)
    )
    get_run_logger().info(report.summary())
    return report
