"""Prefect events seam: the drift event the monitoring flow emits and the trigger that turns it into a run,
and the alerts (`emit_alert`) that `ctcd.alerts`' automations send to a notification block.

The only module that emits Prefect events. The trigger's shape lives here once (`drift_trigger_spec`),
so `deployments/prefect.yaml`, code that deploys with `DeploymentEventTrigger`, and the tests agree.

An alert is sent once per episode (a batch id, a model version): its event id is derived from the model,
the kind and the episode (Prefect's trigger service skips an event id it saw in the last 30 minutes, in
memory), and every sent alert is kept in `$CTCD_HOME/audit/alerts.jsonl`, which a re-run checks first
(that holds across days and server restarts).
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctcd.errors import DependencyUnavailable
from ctcd.workspace import Workspace, file_lock

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger, Event

    from ctcd.config import CtcdConfig

logger = logging.getLogger(__name__)

# The alert kinds; each is the Prefect event `ctcd.alert.<kind>` on the model's resource.
ALERT_KINDS = (
    "drift",
    "quarantine",
    "candidate-rejected",
    "online-gate",
    "rollback",
    "delivery-failed",
    "approval-needed",
)
ALERT_PREFIX = "ctcd.alert."
# How long one alert waits for the alert log's lock (another process sending an alert).
ALERT_LOCK_TIMEOUT = 60.0

# The training flow's parameters that the trigger fills from the event's payload.
TRIGGER_PARAMETERS = ("reason", "window_start", "trigger")


def model_resource_id(cfg: CtcdConfig) -> str:
    """The Prefect resource id that drift events about this project's model are emitted on."""
    return f"ctcd.model.{cfg.registered_model_name}"


def drift_trigger_spec(cfg: CtcdConfig) -> dict[str, Any]:
    """The training deployment's drift trigger, as written under `triggers:` in prefect.yaml.

    Each parameter is a single `{{ ... }}` template, so it keeps its JSON type (null stays null).
    """
    return {
        "type": "event",
        "name": f"retrain {cfg.registered_model_name} on drift",
        "enabled": True,
        "expect": [cfg.orchestration.drift_event],
        "match": {"prefect.resource.id": model_resource_id(cfg)},
        "posture": "Reactive",
        "threshold": 1,
        "within": 0,
        "parameters": {name: f"{{{{ event.payload.{name} }}}}" for name in TRIGGER_PARAMETERS},
    }


def drift_trigger(cfg: CtcdConfig) -> DeploymentEventTrigger:
    """The drift trigger as a `DeploymentEventTrigger` for `flow.deploy(triggers=[...])`/`to_deployment`."""
    from prefect.events import DeploymentEventTrigger

    spec = {k: v for k, v in drift_trigger_spec(cfg).items() if k != "type"}
    return DeploymentEventTrigger(**spec)


def drift_payload(reason: str, window_start: str | None, evidence: dict[str, Any]) -> dict[str, Any]:
    """The drift event's payload: the training flow's trigger parameters (`reason`, `window_start`, and
    `trigger`: the evidence, which the training run keeps as its `ctcd.trigger` tag), and the evidence
    again at the top level for people reading the event."""
    return {
        "reason": reason,
        "window_start": window_start,
        "trigger": {"event": "drift", **evidence},
        **evidence,
    }


def emit_drift_event(cfg: CtcdConfig, payload: dict[str, Any], model_version: str | None = None) -> Event:
    """Emit the drift event on the model's resource and wait until it is sent.

    `payload` must carry the training flow's trigger parameters (reason, window_start, trigger).
    Raises DependencyUnavailable when Prefect does not accept the event: `emit_event` returns None
    instead of raising on a malformed event or when no API is configured.
    """
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker

    missing = [name for name in TRIGGER_PARAMETERS if name not in payload]
    if missing:
        raise ValueError(f"drift event payload lacks the training parameters {missing}")
    resource = {
        "prefect.resource.id": model_resource_id(cfg),
        "prefect.resource.name": cfg.registered_model_name,
    }
    if model_version is not None:
        resource["ctcd.model.version"] = str(model_version)
    event = emit_event(event=cfg.orchestration.drift_event, resource=resource, payload=payload)
    if event is None:
        raise DependencyUnavailable(
            f"Prefect did not accept the event {cfg.orchestration.drift_event!r} "
            "(no Prefect API configured, or the event is malformed): retraining was not triggered"
        )
    EventsWorker.drain_all(timeout=30)
    return event


def alert_event(kind: str) -> str:
    """The Prefect event name of an alert kind."""
    if kind not in ALERT_KINDS:
        raise ValueError(f"unknown alert kind {kind!r}; one of {', '.join(ALERT_KINDS)}")
    return ALERT_PREFIX + kind


def alert_id(cfg: CtcdConfig, kind: str, episode: str) -> uuid.UUID:
    """The event id of one episode's alert: the same model, kind and episode give the same id."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ctcd:{cfg.registered_model_name}/{kind}/{episode}")


def alert_log(ws: Workspace) -> Path:
    """The alerts sent from this workspace, one JSON line each."""
    return ws.audit / "alerts.jsonl"


def sent_alerts(ws: Workspace) -> list[dict[str, Any]]:
    """Every alert sent from this workspace, oldest first."""
    path = alert_log(ws)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def emit_alert(
    cfg: CtcdConfig,
    kind: str,
    summary: str,
    payload: dict[str, Any],
    episode: str,
    ws: Workspace | None = None,
) -> Event | None:
    """Emit the alert `ctcd.alert.<kind>` once per `episode` (e.g. a batch id, a model version).

    The event carries `summary` (one line) and `episode` in its payload next to `payload`. Returns the
    event, or None when this episode was alerted before, no Prefect API is configured (PREFECT_API_URL) or
    Prefect did not accept the event: an alert never fails the flow that raises it (a warning is logged).
    """
    from prefect.events import emit_event
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    name = alert_event(kind)
    if not PREFECT_API_URL.value():
        # Outside a Prefect server (e.g. a flow run without `ctcd up`), nobody's automations would see it.
        logger.warning("no Prefect API configured: alert %s (%s) not sent: %s", name, episode, summary)
        return None
    ws = ws or Workspace.open()
    event_id = alert_id(cfg, kind, episode)
    with file_lock(ws.audit / "alerts.lock", ALERT_LOCK_TIMEOUT, "another alert"):
        if any(entry.get("id") == str(event_id) for entry in sent_alerts(ws)):
            logger.info("alert %s for %s was sent before; not sent again", name, episode)
            return None
        resource = {
            "prefect.resource.id": model_resource_id(cfg),
            "prefect.resource.name": cfg.registered_model_name,
        }
        body = {**payload, "kind": kind, "summary": summary, "episode": str(episode)}
        event = emit_event(event=name, resource=resource, payload=body, id=event_id)
        if event is None:
            logger.warning("Prefect did not accept the alert %s (%s): %s", name, episode, summary)
            return None
        EventsWorker.drain_all(timeout=30)
        entry = {
            "id": str(event_id),
            "kind": kind,
            "episode": str(episode),
            "summary": summary,
            "at": datetime.now(UTC).isoformat(),
        }
        with alert_log(ws).open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
    return event
