"""The replay's rollout option (tasks/replay_rollout.py): `ctcd+shadow` and `ctcd+canary` promote on live
evidence with the product's online gate, never before the rollout's labels have arrived; the champion
answers every row in shadow; a canary's candidate answers about its share; a candidate the live labels
contradict is rejected and the policy learns its retraining failed.

Tiny Agrawal replays (14 batches x 600 rows, labels one batch late); no timings.
"""

from __future__ import annotations

import numpy as np
import pytest

from ctcd import columns
from ctcd.app.backtest import apply_overrides
from ctcd.config import CtcdConfig, ScenarioEvent
from ctcd.rollout import routes_to_candidate
from tasks import training
from tasks.replay import PolicyRun, batch_targets, check_policy, replay
from tasks.replay_history import Scenario, agrawal_scenario
from tasks.replay_registry import FitCache
from tasks.replay_rollout import split_policy
from tasks.replay_scoring import reference_levels, summarize

WARMUP = 3
DAYS = 14
CHEAP = ["model.search.budget=1", "model.params.n_estimators=20", "gates.model.bootstrap_samples=200"]
DEVICE = training.DeviceChoice("cpu", "cpu", "test")


def history(cfg: CtcdConfig, events: list[ScenarioEvent], *overrides: str) -> Scenario:
    cfg = apply_overrides(cfg, [*CHEAP, *overrides])
    assert cfg.stream is not None
    cfg = cfg.model_copy(update={"stream": cfg.stream.model_copy(update={"events": events})})
    return agrawal_scenario(cfg, days=DAYS, rows_per_day=600)


@pytest.fixture(scope="module")
def drift(default_config: CtcdConfig) -> Scenario:
    """A concept drift from batch 7 on; the online gate wants 1000 labelled rows (a canary steps up first)."""
    events = [ScenarioEvent(day=7, kind="concept_drift", function=2)]
    return history(default_config, events, "gates.online.min_labelled_rows=1000")


@pytest.fixture(scope="module")
def runs(drift: Scenario) -> dict[str, PolicyRun]:
    cache = FitCache()
    return {p: replay(drift, p, WARMUP, cache, DEVICE) for p in ("ctcd", "ctcd+shadow", "ctcd+canary")}


def test_policy_names_take_a_rollout_suffix() -> None:
    assert split_policy("ctcd") == ("ctcd", "direct")
    assert split_policy("every-4+shadow") == ("every-4", "shadow")
    assert check_policy("ctcd+canary") == "ctcd+canary"
    with pytest.raises(ValueError, match=r"\+shadow or \+canary"):
        check_policy("ctcd+blue-green")
    with pytest.raises(ValueError, match="unknown policy 'hourly'"):
        check_policy("hourly+shadow")


def test_every_candidate_in_rollout_gets_online_verdicts(drift: Scenario, runs: dict[str, PolicyRun]) -> None:
    for name in ("ctcd+shadow", "ctcd+canary"):
        run = runs[name]
        rolled = [t for t in run.trainings if t.rollout]
        assert rolled, f"{name}: no candidate went to a rollout"
        assert all(t.rollout == split_policy(name)[1] and t.passed for t in rolled)
        for t in rolled:
            if t.day < DAYS:
                assert any(o.candidate == t.version for o in run.online), f"{name}: v{t.version} never judged"
        assert all(o.started < o.day for o in run.online)  # judged from the batch after its training on
        s = summarize(run, drift, 0.02, reference_levels([run], drift))
        decided = s.online_promotions + s.online_rejections + s.rollouts_replaced
        assert s.rollouts == len(rolled) and decided in (s.rollouts, s.rollouts - 1)  # the last: in flight?
        assert s.promotions == sum(t.served is not None and not t.rollout for t in run.trainings) + sum(
            o.action == "promote" for o in run.online
        )
    # direct promotion keeps today's behaviour: no rollout, no online verdict
    assert not runs["ctcd"].online and not any(t.rollout for t in runs["ctcd"].trainings)


def test_a_promotion_waits_for_the_rollouts_labels(drift: Scenario, runs: dict[str, PolicyRun]) -> None:
    delay = drift.cfg.dataset.label_delay_batches
    for name in ("ctcd+shadow", "ctcd+canary"):
        run = runs[name]
        promoted = [o for o in run.online if o.action == "promote"]
        assert promoted, f"{name}: nothing promoted online"
        for o in promoted:
            assert o.day >= o.started + delay + 1  # its first scored batch's labels have arrived
            assert o.labelled_rows >= drift.cfg.gates.online.min_labelled_rows
            assert all(v != o.candidate for d, v in run.served_by.items() if d <= o.day)
            assert run.served_by.get(o.day + 1, o.candidate) == o.candidate  # it serves from the next batch
        waits = [o for o in run.online if o.day < promoted[0].day and o.candidate == promoted[0].candidate]
        assert waits and all(o.verdict == "wait" for o in waits)
    # the direct policy served the same retraining earlier: promotion on live evidence costs batches
    direct = {t.version: t.day for t in runs["ctcd"].trainings if t.served}
    first = next(o for o in runs["ctcd+shadow"].online if o.action == "promote")
    assert first.day > direct[first.candidate]


def test_in_shadow_the_champion_answers_every_row(drift: Scenario, runs: dict[str, PolicyRun]) -> None:
    run = runs["ctcd+shadow"]
    assert run.rollout_served
    for day, log in run.logs.items():
        assert set(log[columns.MODEL_VERSION]) == {run.served_by[day]}
        if day in run.rollout_served:
            assert set(log[columns.ANSWERED_BY]) == {"champion"}
            assert set(log[columns.CANDIDATE_VERSION]) == {run.rollout_served[day]}
            assert log[columns.CANDIDATE_PROBABILITY].notna().all()
            assert np.array_equal(log[columns.PROBABILITY], log[columns.CHAMPION_PROBABILITY])
        else:
            assert log[columns.ANSWERED_BY].isna().all() and log[columns.CANDIDATE_VERSION].isna().all()


def test_a_canary_answers_about_its_share_and_steps_up_on_evidence(
    drift: Scenario, runs: dict[str, PolicyRun]
) -> None:
    cfg, run = drift.cfg, runs["ctcd+canary"]
    steps = cfg.serving.canary_steps
    share = {o.day + 1: o.fraction for o in run.online if o.action in ("hold", "step_up")}
    assert any(o.action == "step_up" for o in run.online), [o.reason for o in run.online]
    checked = 0
    for day in run.rollout_served:
        log = run.logs[day]
        fraction = share.get(day, steps[0])  # the first batch of a rollout: the first step
        to_candidate = log[cfg.dataset.id_column].map(lambda i, f=fraction: routes_to_candidate(i, f))
        assert (log[columns.ANSWERED_BY] == "candidate").tolist() == to_candidate.tolist()
        assert abs(to_candidate.mean() - fraction) < 0.06
        answered = np.where(
            to_candidate, log[columns.CANDIDATE_PROBABILITY], log[columns.CHAMPION_PROBABILITY]
        )
        assert np.allclose(log[columns.PROBABILITY], answered)
        y = batch_targets(cfg, drift.days[day - 1])
        assert run.accuracy[day] == pytest.approx(float(np.mean(log[columns.PREDICTION].to_numpy() == y)))
        checked += 1
    assert checked >= 2 and len({share.get(d, steps[0]) for d in run.rollout_served}) >= 2


def test_a_candidate_the_live_labels_contradict_is_rejected(default_config: CtcdConfig) -> None:
    """The concept flips to function 2 on batch 7 and back on batch 9: the retraining of batch 8 learned
    the flipped concept; live, it is worse than the champion, so the online gate rejects it."""
    events = [ScenarioEvent(day=7, until_day=8, kind="concept_drift", function=2)]
    scenario = history(default_config, events)
    cache = FitCache()
    shadow = replay(scenario, "ctcd+shadow", WARMUP, cache, DEVICE)
    direct = replay(scenario, "ctcd", WARMUP, cache, DEVICE)
    rejected = [o for o in shadow.online if o.action == "reject"]
    assert rejected, [(o.day, o.verdict, o.reason) for o in shadow.online]
    o = rejected[0]
    assert o.delta is not None and o.delta < 0 and o.verdict == "reject"
    assert o.candidate not in set(shadow.served_by.values())  # it never answered
    # the direct policy promoted the same retraining and served it on the flipped-back batches
    assert o.candidate in set(direct.served_by.values())
    worse_days = [d for d, v in direct.served_by.items() if v == o.candidate]
    mean = {name: np.mean([r.accuracy[d] for d in worse_days]) for name, r in (("s", shadow), ("d", direct))}
    assert mean["s"] > mean["d"]


def test_a_decided_rollout_tells_the_policy_the_outcome_of_its_retraining(drift: Scenario) -> None:
    """As the monitoring flow reads it from the registry (`retrain_outcome`): an online rejection is a
    failed retraining of the open episode, a promotion a promoted one; other rollouts change nothing."""

    from tasks.online_gate import RolloutStep
    from tasks.policy import Episode, PolicyState
    from tasks.replay_registry import Champion
    from tasks.replay_rollout import Rollout, policy_state_after, start

    batch = drift.days[7].batch_id
    champion = Champion("1", model=None, reference=None, baseline={}, trained_on=3)  # type: ignore[arg-type]
    candidate = Champion("2", model=None, reference=None, baseline={}, trained_on=8)  # type: ignore[arg-type]
    rollout = start(drift.cfg, candidate, champion, "shadow", drift.days[7], trigger=batch)
    assert isinstance(rollout, Rollout) and rollout.state.started_at.tzinfo is not None
    open_episode = PolicyState(
        last_retrain=batch, episode=Episode(started=batch, signals=["performance"], retrained_on=batch)
    )

    def step(action: str) -> RolloutStep:
        return RolloutStep(action=action, mode="shadow", step=0, fraction=0.0, reason="r")

    assert policy_state_after(open_episode, rollout, step("reject")).episode.promoted is False
    assert policy_state_after(open_episode, rollout, step("promote")).episode.promoted is True
    assert policy_state_after(open_episode, rollout, step("hold")) == open_episode
    scheduled = start(drift.cfg, candidate, champion, "shadow", drift.days[7], trigger=None)
    assert policy_state_after(open_episode, scheduled, step("reject")) == open_episode
    closed = PolicyState(last_retrain=batch)
    assert policy_state_after(closed, rollout, step("reject")) == closed
