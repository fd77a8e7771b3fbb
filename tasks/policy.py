"""The retraining policy: monitoring signals + remembered state -> one decision (retrain, alert or none).

Pure: the state goes in and the new state comes out, so the caller decides where it is kept (an
append-only decision log). Rules, in order:
1. no signal fired: `none`, and any open drift episode ends;
2. only signals outside `retrain_on` fired: `alert`;
3. the open episode already started a retraining and no new kind of signal joined it: `alert`
   (deduplication: one drift episode starts one retraining, not a storm);
4. within `cooldown_days` of the last retraining: `alert` (the episode stays pending);
5. fewer than `min_labelled_rows` labels arrived since the last retraining: `alert` (nothing new to learn);
6. otherwise `retrain`, on a window that restarts at the estimated onset of a performance drop.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ctcd.config import DriftPolicyConfig
from tasks.drift import MonitoringSignals

Action = Literal["retrain", "alert", "none"]


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class Episode(_Record):
    """A run of consecutive monitored windows in which retraining signals kept firing."""

    started: date
    signals: list[str]
    retrained_on: date | None = None


class PolicyState(_Record):
    """What the policy remembers between runs."""

    last_retrain: date | None = None
    episode: Episode | None = None
    window_floor: date | None = Field(
        default=None, description="onset of the last concept drift: later windows never start before it"
    )


class RetrainDecision(_Record):
    """The policy's verdict for one monitored window, with its reason and the data to retrain on."""

    action: Action
    reason: str
    today: date
    fired: list[str]
    triggering: list[str]
    episode_started: date | None = None
    cooldown_until: date | None = None
    window_start: date | None = None
    new_labelled_rows: int = 0


def decide(
    signals: MonitoringSignals,
    state: PolicyState,
    drift: DriftPolicyConfig,
    today: date,
    new_labelled_rows: int,
    training_window_days: int,
) -> tuple[RetrainDecision, PolicyState]:
    """Turn one window's signals into a decision and the policy's next state.

    `new_labelled_rows`: labels arrived for traffic served since the last retraining;
    `training_window_days`: how far back a training window reaches (to know if a restart still matters).
    """
    fired = signals.fired
    triggering = [s for s in fired if s in drift.retrain_on]

    def verdict(action: Action, reason: str, episode: Episode | None, **extra: object) -> RetrainDecision:
        return RetrainDecision(
            action=action,
            reason=reason,
            today=today,
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

    episode = state.episode
    new_kinds = [s for s in triggering if episode is None or s not in episode.signals]
    evidence = describe(signals, triggering)
    if episode is not None and episode.retrained_on is not None and not new_kinds:
        reason = (
            f"{evidence}; the drift episode that began {episode.started} already started a retraining "
            f"on {episode.retrained_on}"
        )
        return verdict("alert", reason, episode), state
    if episode is None or episode.retrained_on is not None:
        episode = Episode(started=today, signals=triggering)
    else:
        episode = episode.model_copy(update={"signals": sorted({*episode.signals, *triggering})})
    pending = state.model_copy(update={"episode": episode})

    if state.last_retrain is not None:
        cooldown_until = state.last_retrain + timedelta(days=drift.cooldown_days)
        if today < cooldown_until:
            reason = f"{evidence}; cool-down after retraining on {state.last_retrain} until {cooldown_until}"
            return verdict("alert", reason, episode, cooldown_until=cooldown_until), pending
    if new_labelled_rows < drift.min_labelled_rows:
        reason = (
            f"{evidence}; waiting for labels: {new_labelled_rows} labelled rows since the last retraining, "
            f"need {drift.min_labelled_rows}"
        )
        return verdict("alert", reason, episode), pending

    onset = signals.performance.onset if "performance" in triggering else None
    floor = onset or state.window_floor
    window_start = floor if floor and floor > today - timedelta(days=training_window_days) else None
    reason = evidence + (f"; training window restarts at {window_start}" if window_start else "")
    decision = verdict("retrain", reason, episode, window_start=window_start)
    new_state = PolicyState(
        last_retrain=today,
        episode=episode.model_copy(update={"retrained_on": today}),
        window_floor=floor,
    )
    return decision, new_state


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
