"""The online gate on synthetic live rows: promote, wait and reject."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ctcd import columns
from tasks import online_gate
from tasks.online_gate import judge_online, rollout_rows


@pytest.fixture(scope="module")
def cfg(default_config):
    gates = default_config.gates.model_copy(
        update={"online": default_config.gates.online.model_copy(update={"min_labelled_rows": 300})}
    )
    return default_config.model_copy(update={"gates": gates})


def _live(cfg, n, candidate_noise, champion_noise=1.0, seed=0, candidate="2", champion="1"):
    """Logged rows both models scored, with labels: a lower noise scores the labels better."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = y * 2.0 - 1.0

    def proba(noise):
        return 1 / (1 + np.exp(-(signal + rng.normal(0, noise, n))))

    ds = cfg.dataset
    return pd.DataFrame(
        {
            ds.id_column: np.arange(n),
            ds.target: y,
            online_gate.CHAMPION_PROBABILITY: proba(champion_noise),
            online_gate.CANDIDATE_PROBABILITY: proba(candidate_noise),
            online_gate.CHAMPION_VERSION: champion,
            online_gate.CANDIDATE_VERSION: candidate,
        }
    )


def test_a_clearly_better_candidate_is_promoted_once_enough_rows_are_labelled(cfg):
    rows = _live(cfg, 2000, candidate_noise=0.5, champion_noise=2.0)
    verdict = judge_online(cfg, rows, batches_waited=1)
    assert verdict.action == "promote", verdict.summary()
    assert (verdict.candidate_version, verdict.champion_version) == ("2", "1")
    assert verdict.labelled_rows == 2000 and verdict.metric == cfg.gates.model.primary_metric
    assert verdict.delta > 0 and verdict.ci_low > 0 and verdict.candidate_value > verdict.champion_value
    assert "PROMOTE v2 vs champion v1" in verdict.summary()


def test_too_few_labels_wait_even_for_a_better_candidate(cfg):
    rows = _live(cfg, 299, candidate_noise=0.5, champion_noise=2.0)
    verdict = judge_online(cfg, rows, batches_waited=1)
    assert verdict.action == "wait"
    assert verdict.labelled_rows == 299 and "299 of 300" in verdict.reason
    # Enough for a canary's step (a quarter of 300): the point delta, no interval.
    assert verdict.delta > 0 and verdict.ci_low is None and verdict.ci_high is None
    assert online_gate.step_min_labelled_rows(cfg) == 75
    fewer = judge_online(cfg, rows.iloc[:74], batches_waited=1)
    assert fewer.action == "wait" and fewer.delta is None


def test_a_clearly_worse_candidate_is_rejected(cfg):
    rows = _live(cfg, 2000, candidate_noise=2.0, champion_noise=0.5)
    verdict = judge_online(cfg, rows, batches_waited=1)
    assert verdict.action == "reject"
    assert verdict.ci_high < 0
    assert "significantly worse" in verdict.reason


def test_waiting_beyond_max_wait_batches_rejects(cfg):
    few = _live(cfg, 50, candidate_noise=0.5, champion_noise=2.0)
    limit = cfg.gates.online.max_wait_batches
    assert judge_online(cfg, few, batches_waited=limit - 1).action == "wait"
    late = judge_online(cfg, few, batches_waited=limit)
    assert late.action == "reject" and "max_wait_batches" in late.reason
    # Enough rows, but no clear gain (the same model): waits, then is rejected when time is up.
    same = _live(cfg, 2000, candidate_noise=1.0, champion_noise=1.0, seed=3)
    same[online_gate.CANDIDATE_PROBABILITY] = same[online_gate.CHAMPION_PROBABILITY]
    assert judge_online(cfg, same, batches_waited=1).action == "wait"
    assert judge_online(cfg, same, batches_waited=limit).action == "reject"


def test_only_rows_of_the_rollouts_versions_count(cfg):
    mine = _live(cfg, 400, candidate_noise=0.5, champion_noise=2.0)
    other = _live(cfg, 400, candidate_noise=0.5, champion_noise=2.0, seed=1, candidate="7")
    verdict = judge_online(cfg, pd.concat([mine, other]), candidate_version="2", champion_version="1")
    assert verdict.labelled_rows == 400


def test_rollout_rows_join_arrived_labels_and_count_batches(cfg):
    ds = cfg.dataset
    live = _live(cfg, 600, candidate_noise=0.5).drop(columns=[ds.target])
    live[columns.BATCH] = np.repeat(["2026-01-01", "2026-01-02", "2026-01-03"], 200)
    live.loc[:99, online_gate.CANDIDATE_VERSION] = None  # served before the rollout
    live.loc[:99, online_gate.CANDIDATE_PROBABILITY] = np.nan
    labels = pd.DataFrame({ds.id_column: np.arange(400), ds.target: np.ones(400, dtype="int64")})
    rows, batches = rollout_rows(live, labels, ds, "2")
    assert batches == 3
    assert len(rows) == 300 and rows[ds.id_column].between(100, 399).all()  # labelled, in the rollout


def test_max_regression_defaults_to_the_offline_gates(cfg):
    assert cfg.gates.online.max_regression is None
    assert online_gate.max_regression(cfg) == cfg.gates.model.max_regression


def test_the_verdict_reads_as_one_tag_and_a_markdown_table(cfg):
    verdict = judge_online(cfg, _live(cfg, 2000, candidate_noise=0.5, champion_noise=2.0))
    assert list(verdict.tags()) == ["ctcd.rollout"]
    assert verdict.tags()["ctcd.rollout"].startswith("online gate: promote, delta +")
    assert (
        verdict.markdown().startswith("## Online gate: promote") and verdict.summary() in verdict.markdown()
    )


def _decision(cfg, passed: bool, reference_kind: str = "champion"):
    from tasks.model_gate import BootstrapResult, GateDecision

    boot = BootstrapResult(
        metric="roc_auc",
        candidate=0.8,
        reference=0.7,
        delta=0.1,
        low=0.05,
        high=0.15,
        confidence=0.95,
        samples=10,
    )
    return GateDecision(
        passed=passed,
        primary_metric="roc_auc",
        reference_kind=reference_kind,
        holdout_rows=100,
        candidate_metrics={},
        reference_metrics={},
        bootstrap=boot,
        slices=[],
        checks=[],
        thresholds=cfg.gates.model,
        decided_at="2026-01-01T00:00:00+00:00",
    )


@pytest.mark.parametrize("mode", ["shadow", "canary"])
def test_a_blessed_candidate_goes_to_a_rollout_only_with_a_champion_and_a_rollout_mode(cfg, mode):
    from tasks.training_run import rollout_mode

    rolling = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"rollout": mode})})
    assert rollout_mode(rolling, "1", _decision(cfg, passed=True)) == mode
    assert rollout_mode(rolling, "1", _decision(cfg, passed=False)) is None  # not blessed
    assert rollout_mode(rolling, None, _decision(cfg, passed=True, reference_kind="baseline")) is None
    direct = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"rollout": "direct"})})
    assert rollout_mode(direct, "1", _decision(cfg, passed=True)) is None


def test_an_online_rejection_tells_the_retraining_policy_its_retraining_failed():
    from tasks.policy import training_outcome

    tags = {
        "ctcd.reason": "drift: performance",
        "ctcd.trigger": '{"batch": "2026-01-08"}',
        "ctcd.gate": "passed",
    }
    assert training_outcome([("3", tags)], {"1"}, "2026-01-08") is None  # in rollout: not decided yet
    rejected = {**tags, "ctcd.rollout": "online gate: reject, delta -0.0500 on 400 labelled live rows"}
    assert training_outcome([("3", rejected)], {"1"}, "2026-01-08") is False
    assert training_outcome([("3", tags)], {"1", "3"}, "2026-01-08") is True  # promoted online


def test_each_look_is_corrected_for_the_looks_a_rollout_gets(cfg):
    rows = _live(cfg, 600, candidate_noise=0.9, champion_noise=1.0, seed=5)
    assert cfg.gates.model.confidence == 0.95 and cfg.gates.online.max_wait_batches == 5
    assert online_gate.look_confidence(cfg) == pytest.approx(0.99)
    corrected = judge_online(cfg, rows, batches_waited=1)
    assert corrected.confidence == pytest.approx(0.99) and corrected.looks == 5
    one = cfg.gates.online.model_copy(update={"max_wait_batches": 1})
    once = cfg.model_copy(update={"gates": cfg.gates.model_copy(update={"online": one})})
    single = judge_online(once, rows)
    assert single.confidence == pytest.approx(0.95) and single.looks == 1
    assert corrected.delta == single.delta  # the same point estimate, a wider interval
    assert corrected.ci_low < single.ci_low and corrected.ci_high > single.ci_high
    assert "99.0% CI" in corrected.summary() and "5 (Bonferroni)" in corrected.markdown()


def test_the_gate_judges_on_the_metric_the_candidate_was_blessed_on(cfg):
    """A boundary shift: the champion ranks rows exactly as the candidate does (same ROC AUC) but its
    threshold is off, so only accuracy tells them apart. A candidate blessed on accuracy (a retraining the
    performance signal triggered) is judged on accuracy live too, and promoted; on ROC AUC it would wait."""
    rng = np.random.default_rng(3)
    n = 3000
    y = rng.integers(0, 2, n)
    score = (y * 2.0 - 1.0) + rng.normal(0, 1.0, n)
    ds = cfg.dataset
    rows = pd.DataFrame(
        {
            ds.id_column: np.arange(n),
            ds.target: y,
            online_gate.CANDIDATE_PROBABILITY: 1 / (1 + np.exp(-score)),
            online_gate.CHAMPION_PROBABILITY: 1 / (1 + np.exp(-(score + 1.5))),  # same order, wrong threshold
            online_gate.CHAMPION_VERSION: "1",
            online_gate.CANDIDATE_VERSION: "2",
        }
    )
    on_auc = judge_online(cfg, rows, batches_waited=1, metric="roc_auc")
    assert on_auc.metric == "roc_auc" and abs(on_auc.delta) < 1e-9 and on_auc.action == "wait"
    on_accuracy = judge_online(cfg, rows, batches_waited=1, metric="accuracy")
    assert on_accuracy.metric == "accuracy" and on_accuracy.action == "promote", on_accuracy.summary()
    assert judge_online(cfg, rows, batches_waited=1).metric == cfg.gates.model.primary_metric


def test_a_look_draws_enough_resamples_for_its_corrected_tails(cfg):
    assert online_gate.look_confidence(cfg) == pytest.approx(0.99)
    assert online_gate.look_samples(cfg) == 2000  # 10 resamples in each 0.5 % tail
    many = cfg.gates.model.model_copy(update={"bootstrap_samples": 5000})
    assert (
        online_gate.look_samples(
            cfg.model_copy(update={"gates": cfg.gates.model_copy(update={"model": many})})
        )
        == 5000
    )
    verdict = judge_online(cfg, _live(cfg, 2000, candidate_noise=0.5, champion_noise=2.0), batches_waited=1)
    assert verdict.bootstrap_samples == 2000 and "| bootstrap resamples | 2000 |" in verdict.markdown()
