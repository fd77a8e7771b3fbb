"""The retraining policy: monitoring signals + remembered state -> one decision (retrain, alert or none).

Pure: the state goes in and the new state comes out, so the caller decides where it is kept (an
append-only decision log). Rules, in order:
1. no signal fired: `none`, and any open drift episode ends;
2. only signals outside `retrain_on` fired: `alert`; so does a covariate shift that fired alone and has not
   yet persisted `covariate_persistence_batches` batches in a row (a one-batch wobble of one feature in a
   small window is not worth a training);
3. the open episode already started a retraining and no new kind of signal joined it: `alert`
   (deduplication: one drift episode starts one retraining, not a storm), unless the model gate rejected
   that retraining, the champion's accuracy is still down (`performance` fired) and fewer than
   `max_retries_per_episode` retries were spent: then the episode retries, from the same window start (the
   window has grown by the batches since), subject to rules 4 and 5. Without a performance drop a rejection
   means the champion held up against a model trained on the drifted data, so there is nothing to retry;
4. within `cooldown_batches` of the last retraining: `alert` (the episode stays pending);
5. fewer than `min_labelled_rows` labels arrived since the last retraining: `alert` (nothing new to learn);
6. otherwise `retrain`, on a window that restarts at the estimated onset of a performance drop.

Every count is in batches, on the caller's `Timeline` (ctcd/cadence.py: days, weeks, months or uneven
batches); the state names batches by id.

The outcome of a retraining (promoted or rejected) is not the policy's to see: the caller learns it (the
monitoring flow from the registry) and folds it into the state with `record_outcome` before `decide`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ctcd.cadence import Timeline
from ctcd.config import DriftPolicyConfig
from tasks.drift import MonitoringSignals

ONLINE_REJECTED = "online gate: reject"
"""How the version's `ctcd.rollout` tag starts when the online gate rejected it (`tasks/online_gate.py`)."""

Action = Literal["retrain", "alert", "none"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Episode(_Record):
    """A run of consecutive monitored windows in which retraining signals kept firing."""

    started: str = Field(description="the batch it began in")
    signals: list[str]
    retrained_on: str | None = Field(default=None, description="the batch its latest retraining began in")
    window_start: str | None = Field(default=None, description="where its retraining's window started")
    retries: int = Field(default=0, description="retrainings after the gate rejected an earlier one")
    promoted: bool | None = Field(
        default=None, description="whether its latest retraining was promoted; None while not known"
    )


class PolicyState(_Record):
    """What the policy remembers between runs."""

    last_retrain: str | None = Field(default=None, description="the batch of the last retraining")
    episode: Episode | None = None
    window_floor: str | None = Field(
        default=None, description="onset batch of the last concept drift: later windows never start before it"
    )
    covariate_since: str | None = Field(
        default=None, description="first batch of the covariate shift firing in every run since (None: quiet)"
    )


class RetrainDecision(_Record):
    """The policy's verdict for one monitored window, with its reason and the data to retrain on."""

    action: Action
    reason: str
    batch: str = Field(description="the monitored (current) batch")
    fired: list[str]
    triggering: list[str]
    episode_started: str | None = None
    cooldown_until: str | None = Field(default=None, description="the first batch after the cool-down")
    window_start: str | None = Field(default=None, description="the first batch to retrain on")
    new_labelled_rows: int = 0


def decide(
    signals: MonitoringSignals,
    state: PolicyState,
    drift: DriftPolicyConfig,
    batch: str,
    new_labelled_rows: int,
    training_window_batches: int,
    timeline: Timeline | None = None,
) -> tuple[RetrainDecision, PolicyState]:
    """Turn the signals of the window ending with `batch` into a decision and the policy's next state.

    `new_labelled_rows`: labels arrived for traffic served since the last retraining;
    `training_window_batches`: how far back a training window reaches (to know if a restart still matters);
    `timeline`: how batches are counted (default: batch ids are dates, one batch a day).
    """
    timeline = timeline or Timeline()
    fired = signals.fired
    triggering = [s for s in fired if s in drift.retrain_on]
    since = (state.covariate_since or batch) if "covariate_shift" in fired else None
    state = state.model_copy(update={"covariate_since": since})

    def verdict(action: Action, reason: str, episode: Episode | None, **extra: object) -> RetrainDecision:
        return RetrainDecision(
            action=action,
            reason=reason,
            batch=batch,
            fired=fired,
            triggering=triggering,
            episode_started=episode.started if episode else None,
            new_labelled_rows=new_labelled_rows,
            **extra,
        )

    if not fired:
        return verdict("none", "no drift signal fired", None), state.model_copy(update={"episode": None})
    if not triggering:
        reason = f"{', '.join(fired)} fired, which the policy only alerts on (retrain_on: {drift.retrain_on})"
        return verdict("alert", reason, None), state.model_copy(update={"episode": None})
    streak = timeline.batches_between(since, batch) if since else None
    persisted = (streak + 1 if streak is not None else 1) if since else 0
    if triggering == ["covariate_shift"] and persisted < drift.covariate_persistence_batches:
        reason = (
            f"{describe(signals, triggering)}; a covariate shift alone retrains once it has fired "
            f"{drift.covariate_persistence_batches} batches in a row (covariate_persistence_batches): "
            f"batch {persisted}, since {since}"
        )
        return verdict("alert", reason, state.episode), state

    episode = state.episode
    new_kinds = [s for s in triggering if episode is None or s not in episode.signals]
    evidence = describe(signals, triggering)
    retry = False
    if episode is not None and episode.retrained_on is not None and not new_kinds:
        handled = (
            f"{evidence}; the drift episode that began {episode.started} already started a retraining "
            f"on {episode.retrained_on}"
        )
        if episode.promoted is not False:
            reason = handled + (", which was promoted" if episode.promoted else "")
            return verdict("alert", reason, episode), state
        if "performance" not in triggering:
            reason = f"{handled}, which the model gate rejected; the champion's accuracy has not dropped"
            return verdict("alert", reason, episode), state
        if episode.retries >= drift.max_retries_per_episode:
            reason = (
                f"{handled}, which the model gate rejected; no retry left "
                f"({episode.retries} of max_retries_per_episode {drift.max_retries_per_episode} spent)"
            )
            return verdict("alert", reason, episode), state
        retry = True
        evidence = (
            f"{evidence}; the model gate rejected the retraining of {episode.retrained_on}, "
            f"retry {episode.retries + 1} of {drift.max_retries_per_episode}"
        )
    if episode is None or (episode.retrained_on is not None and not retry):
        episode = Episode(started=batch, signals=triggering)
    elif not retry:
        episode = episode.model_copy(update={"signals": sorted({*episode.signals, *triggering})})
    pending = state.model_copy(update={"episode": episode})

    if state.last_retrain is not None:
        elapsed = _elapsed(timeline, state.last_retrain, batch)
        if elapsed < drift.cooldown_batches:
            cooldown_until = timeline.shift(state.last_retrain, drift.cooldown_batches)
            reason = f"{evidence}; cool-down after retraining on {state.last_retrain}" + (
                f" until {cooldown_until}" if cooldown_until else f" ({drift.cooldown_batches} batches)"
            )
            return verdict("alert", reason, episode, cooldown_until=cooldown_until), pending
    if new_labelled_rows < drift.min_labelled_rows:
        reason = (
            f"{evidence}; waiting for labels: {new_labelled_rows} labelled rows since the last retraining, "
            f"need {drift.min_labelled_rows}"
        )
        return verdict("alert", reason, episode), pending

    onset = signals.performance.onset if "performance" in triggering else None
    # A retry keeps the episode's window start (its onset), not a later re-estimate of it.
    floor = (episode.window_start if retry else None) or onset or state.window_floor
    window_start = floor if floor and _elapsed(timeline, floor, batch) < training_window_batches else None
    reason = evidence + (f"; training window restarts at {window_start}" if window_start else "")
    decision = verdict("retrain", reason, episode, window_start=window_start)
    retrained = episode.model_copy(
        update={
            "retrained_on": batch,
            "window_start": window_start,
            "retries": episode.retries + 1 if retry else 0,
            "promoted": None,
        }
    )
    return decision, PolicyState(
        last_retrain=batch, episode=retrained, window_floor=floor, covariate_since=since
    )


def _elapsed(timeline: Timeline, first: str, last: str) -> int:
    """Batches from `first` to `last` (0: the same batch); one that cannot be placed is long past."""
    between = timeline.batches_between(first, last)
    return between if between is not None else 1_000_000


def record_outcome(state: PolicyState, promoted: bool | None) -> PolicyState:
    """The state with the outcome of the open episode's latest retraining (None: not known, unchanged)."""
    episode = state.episode
    if promoted is None or episode is None or episode.retrained_on is None:
        return state
    return state.model_copy(update={"episode": episode.model_copy(update={"promoted": promoted})})


def training_outcome(
    versions: Sequence[tuple[str, Mapping[str, str]]], champions: set[str], retrained_on: str
) -> bool | None:
    """Whether the drift-triggered training the policy started on `retrained_on` was promoted.

    `versions`: (version, tags) of the registered model, newest first, tagged by the training flow
    (`ctcd.reason`, `ctcd.trigger`: the monitored batch, `ctcd.gate`: the verdict; in a rollout, the online
    gate's verdict in `ctcd.rollout`); `champions`: every version that was ever made champion. None while no
    such version is registered or its gates have not decided.
    """
    for version, tags in versions:
        if not tags.get("ctcd.reason", "").startswith("drift") or _trigger_batch(tags) != retrained_on:
            continue
        if version in champions:
            return True
        rejected = tags.get("ctcd.gate") == "rejected" or tags.get("ctcd.rollout", "").startswith(
            ONLINE_REJECTED
        )
        return False if rejected else None
    return None


def _trigger_batch(tags: Mapping[str, str]) -> str | None:
    value = tags.get("ctcd.trigger", "-")
    if not value.startswith("{"):  # the batch id itself; a JSON object on versions registered before
        return None if value == "-" else value
    try:
        trigger = json.loads(value)
    except (ValueError, TypeError):
        return None
    if not isinstance(trigger, dict):
        return None
    found = trigger.get("batch", trigger.get("today"))  # `today`: versions trained before batches
    return str(found) if found is not None else None


def describe(signals: MonitoringSignals, names: list[str]) -> str:
    """One readable clause per named signal, with its evidence."""
    parts = []
    for name in names:
        if name == "performance":
            p = signals.performance
            parts.append(
                f"accuracy {p.metrics['accuracy']:.3f} is {p.accuracy_drop:.3f} below the champion's "
                f"{p.baseline['accuracy']:.3f} on {p.labelled_rows} labelled rows"
                + (f" (dropped since {p.onset})" if p.onset else "")
            )
        elif name == "prior_shift":
            s = signals.prior_shift
            parts.append(
                f"positive rate {s.current_rate:.3f} vs {s.reference_rate:.3f} in the reference "
                f"on {s.labelled_rows} labelled rows"
            )
        elif name == "covariate_shift":
            c = signals.covariate_shift
            parts.append(f"{len(c.drifted)} of {len(c.columns)} features drifted ({', '.join(c.drifted)})")
        elif name == "prediction_drift":
            d = signals.prediction_drift
            parts.append(f"prediction drift {d.method} {d.score:.3f} (threshold {d.threshold})")
    return "; ".join(parts)
