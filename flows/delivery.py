"""Delivery flow: build the Bento, smoke-test the new champion in a second server, switch the live one.

Steps: resolve the version (the champion, or `version`) -> build the Bento -> smoke test on held-out rows in
a real `bentoml serve` on a free port (answers must equal the registered model's offline predictions) ->
reload the live server (zero failed requests) or, when none runs and `start_if_down`, start it. When the
smoke test fails, `champion` moves back to the previously served version and the live server is left
alone. `version` deploys a version to the live server without moving the alias; a restarted server serves
the champion again.
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, task
from pydantic import BaseModel

from ctcd import registry
from ctcd.config import load_config
from ctcd.serving import deploy
from ctcd.serving.server import is_serving, live_server_url, start_server, write_pid_file
from ctcd.workspace import Workspace


class DeliveryReport(BaseModel):
    """What the delivery did, for the pipeline, the CLI and the Prefect artifact."""

    status: Literal["deployed", "rolled_back", "failed"]
    version: str
    previous_version: str | None
    live_url: str
    live_switched: bool = False
    server_started: bool = False
    bento_tag: str | None = None
    smoke: deploy.SmokeResult
    message: str


build_bento = task(deploy.build_bento, name="build-bento")
holdout_rows = task(deploy.holdout_rows, name="holdout-rows")
smoke_test = task(deploy.smoke_test, name="smoke-test", retries=0)
switch_live = task(deploy.switch_live, name="switch-live")


@task(name="rollback-champion")
def rollback_champion(config_path: str | None, to_version: str, failed_version: str, why: str) -> dict:
    """Point `champion` back at the version served before the failed one."""
    cfg = load_config(config_path)
    ws = Workspace.open()
    reg = registry.Registry(cfg, ws)
    ref = reg.version(to_version)
    with reg.promotion_lock():
        return reg.move_alias(
            registry.CHAMPION,
            ref,
            reason=f"rollback: smoke test failed for version {failed_version}: {why}",
            actor="delivery-flow",
        )


def previous_version(ws: Workspace, live: dict | None, target: str) -> str | None:
    """The version to fall back to: what the live server serves, else the champion before `target`."""
    if live and live.get("version") and live["version"] != target:
        return str(live["version"])
    for entry in reversed(registry.alias_history(ws)):
        if entry["version"] == target and entry.get("previous") and entry["previous"] != target:
            return str(entry["previous"])
    return None


def _publish(report: DeliveryReport) -> None:
    from prefect.artifacts import create_markdown_artifact

    smoke = report.smoke
    diff = "n/a" if smoke.max_abs_difference is None else f"{smoke.max_abs_difference:.2e}"
    create_markdown_artifact(
        key="delivery-report",
        description=report.message,
        markdown="\n".join(
            [
                f"## Delivery: {report.status}",
                "",
                "| | |",
                "|---|---|",
                f"| version | {report.version} |",
                f"| previous | {report.previous_version or '-'} |",
                f"| smoke test | {'passed' if smoke.passed else 'FAILED'} on {smoke.rows} rows "
                f"(max diff {diff}) |",
                f"| live server | {report.live_url} (switched: {report.live_switched}, "
                f"started: {report.server_started}) |",
                f"| bento | {report.bento_tag or '-'} |",
                "",
                report.message,
            ]
        ),
    )


@flow(name="delivery")
def delivery_flow(
    config_path: str | None = None,
    version: str | None = None,
    start_if_down: bool = False,
    build: bool = True,
) -> DeliveryReport:
    """Deploy the champion (or `version`) to the live server, with a smoke test and automatic rollback."""
    cfg = load_config(config_path)
    ws = Workspace.open()
    reg = registry.Registry(cfg, ws)
    target = reg.version(version) if version else reg.require_champion()
    url = live_server_url(cfg)
    live = deploy.live_model(url)
    previous = previous_version(ws, live, target.version)
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
    if not smoke.passed:
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
    _publish(report)
    return report
