"""Prefect events seam: the drift event the monitoring flow emits and the trigger that turns it into a run.

The only module that emits Prefect events. The trigger's shape lives here once (`drift_trigger_spec`),
so `deployments/prefect.yaml`, code that deploys with `DeploymentEventTrigger`, and the tests agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctcd.errors import DependencyUnavailable

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger, Event

    from ctcd.config import CtcdConfig

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
