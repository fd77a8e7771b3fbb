"""Prefect adapter for alerts: the automations that send `ctcd.alert.<kind>` events to a notification block.

`ensure_alerts` (run by `ctcd up`) creates or updates, by name, one automation per alert kind
(`ctcd.events.ALERT_KINDS`): an event trigger on `ctcd.alert.<kind>` about this project's model and a
SendNotification action to the block named `alerts.block`. With `alerts.webhook_url` set, that block is a
Custom Webhook block ctcd creates (or points at the new URL), which POSTs the alert as one JSON object:
`{"event", "id", "occurred", "kind", "summary", "episode", "resource", "payload"}`. Without it, a
notification block of that name made in Prefect (Slack, email, ...) is used; with neither, no automations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from ctcd.events import ALERT_KINDS, alert_event, model_resource_id

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

    from ctcd.config import CtcdConfig

# The notification's body: the alert as one JSON object (Jinja, rendered by Prefect's actions service).
BODY_TEMPLATE = (
    '{"event": {{ event.event | tojson }}, "id": "{{ event.id }}", "occurred": "{{ event.occurred }}", '
    '"kind": {{ event.payload.kind | tojson }}, "summary": {{ event.payload.summary | tojson }}, '
    '"episode": {{ event.payload.episode | tojson }}, "resource": {{ event.resource | tojson }}, '
    '"payload": {{ event.payload | tojson }}}'
)
SUBJECT_TEMPLATE = "ctcd {{ event.payload.kind }}: {{ event.payload.summary }}"


@dataclass(frozen=True)
class AlertAutomation:
    """One alert automation on the Prefect server."""

    name: str
    kind: str
    enabled: bool


def automation_name(cfg: CtcdConfig, kind: str) -> str:
    """The automation of one alert kind for this project's model."""
    return f"ctcd {cfg.registered_model_name} alert: {kind}"


@contextlib.contextmanager
def _client(api_url: str) -> Iterator[SyncPrefectClient]:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        yield client


@contextlib.contextmanager
def _api(api_url: str) -> Iterator[None]:
    """Blocks save and load through the client of the current settings: point them at `api_url`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def _block_document_id(api_url: str, name: str) -> tuple[UUID, str] | None:
    """The id and block type slug of the notification block document called `name`, or None."""
    with _client(api_url) as client:
        for doc in client.read_block_documents(include_secrets=False):
            if doc.name == name and doc.block_type is not None:
                return doc.id, doc.block_type.slug
    return None


def webhook_block(cfg: CtcdConfig) -> Any:
    """The Custom Webhook block that POSTs each alert's JSON body to `alerts.webhook_url`."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    return CustomWebhookNotificationBlock(
        name=cfg.alerts.block,
        url=str(cfg.alerts.webhook_url),
        method="POST",
        form_data="{{body}}",  # the rendered body, sent as is
        headers={"Content-Type": "application/json"},
    )


def ensure_block(cfg: CtcdConfig, api_url: str) -> UUID | None:
    """The notification block's document id: with `alerts.webhook_url`, a Custom Webhook block created or
    pointed at the URL (a block of another type with that name is left alone and used); without it, the
    existing block of that name, or None (no alerts)."""
    found = _block_document_id(api_url, cfg.alerts.block)
    if cfg.alerts.webhook_url is None:
        return found[0] if found else None
    if found is not None and found[1] != "custom-webhook":
        return found[0]
    with _api(api_url):
        # Saving again updates the same document: the automations keep pointing at it.
        return webhook_block(cfg).save(cfg.alerts.block, overwrite=True)


def _automation(cfg: CtcdConfig, kind: str, block_id: UUID) -> Any:
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    return AutomationCore(
        name=automation_name(cfg, kind),
        description=f"ctcd: send {alert_event(kind)} about {cfg.registered_model_name} to {cfg.alerts.block}",
        enabled=True,
        trigger=EventTrigger(
            expect={alert_event(kind)},
            match={"prefect.resource.id": model_resource_id(cfg)},
            posture=Posture.Reactive,
            threshold=1,
            within=0,
        ),
        actions=[SendNotification(block_document_id=block_id, subject=SUBJECT_TEMPLATE, body=BODY_TEMPLATE)],
    )


def ensure_alerts(cfg: CtcdConfig, api_url: str) -> list[AlertAutomation]:
    """Create or update (by name) one automation per alert kind; return them. Empty when alerts are off
    (no `alerts.webhook_url` and no notification block named `alerts.block`)."""
    block_id = ensure_block(cfg, api_url)
    if block_id is None:
        return []
    with _client(api_url) as client:
        for kind in ALERT_KINDS:
            wanted = _automation(cfg, kind, block_id)
            existing = client.read_automations_by_name(wanted.name)
            if not existing:
                client.create_automation(wanted)
                continue
            first, *duplicates = existing
            client.update_automation(first.id, wanted)
            for extra in duplicates:
                client.delete_automation(extra.id)
    return list_alerts(cfg, api_url)


def list_alerts(cfg: CtcdConfig, api_url: str) -> list[AlertAutomation]:
    """This project's alert automations on the Prefect server (name, kind, enabled), in kind order."""
    out = []
    with _client(api_url) as client:
        for kind in ALERT_KINDS:
            for automation in client.read_automations_by_name(automation_name(cfg, kind)):
                out.append(AlertAutomation(automation.name, kind, automation.enabled))
    return out
