"""The model gate: floors, paired bootstrap against the reference, improvement, slices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks import dataset, evaluation, model_gate, training
from tasks.model import target_vector
from tests.tasks.test_training import small_config, small_split


@pytest.fixture(scope="module")
def cfg(default_config):
    return small_config(default_config, rows_per_day=250)


@pytest.fixture(scope="module")
def holdout(cfg):
    """A real champion trained on the stream, and its holdout."""
    split = small_split(cfg, range(1, 7))
    champion = training.fit_candidate(cfg, split, {}, training.choose_device("cpu")).model
    return split, champion


def _decide(cfg, test, cand, ref, kind="champion"):
    y = target_vector(test, cfg.dataset).to_numpy()
    return model_gate.decide(
        cfg,
        test,
        y,
        cand,
        ref,
        evaluation.classification_metrics(y, cand),
        evaluation.classification_metrics(y, ref),
        kind,
        candidate_version="2",
        reference_version="1",
    )


def _check(decision, name):
    return next(c for c in decision.checks if c.name == name)


def test_an_equal_candidate_does_not_displace_the_champion(cfg, holdout):
    split, champion = holdout
    _, proba = evaluation.evaluate(champion, split.test, cfg)
    d = _decide(cfg, split.test, proba, proba)
    assert not d.passed
    assert _check(d, "no_regression").passed
    assert not _check(d, "improvement").passed
    assert d.bootstrap.delta == 0 and d.bootstrap.low == 0 and d.bootstrap.high == 0


def test_a_candidate_trained_on_shuffled_labels_is_never_promoted(cfg, holdout):
    split, champion = holdout
    rng = np.random.default_rng(0)
    target = cfg.dataset.target
    shuffled = dataset.Split(
        split.train.assign(**{target: rng.permutation(split.train[target].to_numpy())}),
        split.validation.assign(**{target: rng.permutation(split.validation[target].to_numpy())}),
        split.test,
        "shuffled",
    )
    worse = training.fit_candidate(cfg, shuffled, {}, training.choose_device("cpu")).model
    _, cand = evaluation.evaluate(worse, split.test, cfg)
    _, ref = evaluation.evaluate(champion, split.test, cfg)
    d = _decide(cfg, split.test, cand, ref)
    assert not d.passed
    assert not _check(d, "no_regression").passed
    assert d.bootstrap.high < 0, "the whole interval says worse"
    assert not _check(d, "floor:roc_auc").passed
    # And the other way round the real model would be promoted over the shuffled one.
    assert _decide(cfg, split.test, ref, cand).passed


def test_a_clearly_better_candidate_passes_with_the_evidence(cfg, holdout):
    split, champion = holdout
    _, good = evaluation.evaluate(champion, split.test, cfg)
    y = target_vector(split.test, cfg.dataset).to_numpy()
    noisy = np.clip(good + np.random.default_rng(1).normal(0, 0.35, len(good)), 0, 1)
    d = _decide(cfg, split.test, good, noisy)
    assert d.passed, d.summary()
    b = d.bootstrap
    assert b.low <= b.delta <= b.high
    assert b.candidate == pytest.approx(evaluation.metric_value("roc_auc", y, good))
    assert b.samples == cfg.gates.model.bootstrap_samples
    assert d.reasons == []
    assert "PASSED" in d.summary()
    assert model_gate.GateDecision.model_validate_json(d.model_dump_json()) == d


def test_on_a_restarted_window_a_better_baseline_that_passes_is_served_instead(cfg, holdout):
    """`choose_contender`: the baseline judged by the same gate against the champion is served when it
    passes and beats the candidate; the candidate's verdict stays its own; a failing baseline never is."""
    from tasks import ct_steps

    split, champion = holdout
    _, good = evaluation.evaluate(champion, split.test, cfg)
    rng = np.random.default_rng(1)
    noisy = np.clip(good + rng.normal(0, 0.35, len(good)), 0, 1)  # the champion
    fair = np.clip(good + rng.normal(0, 0.2, len(good)), 0, 1)  # a candidate better than the champion
    candidate = _decide(cfg, split.test, fair, noisy)
    baseline = _decide(cfg, split.test, good, noisy)
    assert candidate.passed and baseline.passed
    d = model_gate.choose_contender(candidate, baseline)
    assert d.chosen == "baseline" and d.passed and ct_steps.served_model(d) == "baseline"
    assert "the baseline is served instead" in d.summary()
    tags = model_gate.baseline_tags(d)
    assert tags["ctcd.gate.reference"] == "champion:1" and tags["ctcd.gate.chosen"] == "baseline"
    assert float(tags["ctcd.gate.candidate"]) == pytest.approx(baseline.bootstrap.candidate, abs=1e-6)
    # the better candidate keeps its place; a baseline that fails the gate is never served
    assert model_gate.choose_contender(baseline, candidate).chosen is None
    failing = _decide(cfg, split.test, noisy, good)
    kept = model_gate.choose_contender(_decide(cfg, split.test, noisy, noisy), failing)
    assert kept.chosen is None and ct_steps.served_model(kept) is None
    again = model_gate.GateDecision.model_validate_json(d.model_dump_json())
    assert again.baseline_decision is not None and again.baseline_decision.passed


def test_floors_are_ceilings_for_metrics_where_lower_is_better():
    checks = model_gate.floor_checks({"roc_auc": 0.7, "log_loss": 0.4}, {"roc_auc": 0.75, "log_loss": 0.5})
    by = {c.name: c.passed for c in checks}
    assert by == {"floor:roc_auc": False, "floor:log_loss": True}
    (missing,) = model_gate.floor_checks({"roc_auc": None}, {"roc_auc": 0.5})
    assert not missing.passed


def test_lower_is_better_primary_metric_is_signed_so_positive_means_better():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    good = np.clip(y * 0.7 + 0.15 + rng.normal(0, 0.05, 500), 0.01, 0.99)
    bad = np.full(500, 0.5)
    b = model_gate.paired_bootstrap("log_loss", y, good, bad, 50, 0.9, 0)
    assert b.delta > 0 and b.low > 0
    assert b.candidate < b.reference


def test_a_slice_regressing_beyond_its_margin_fails_the_gate(cfg, holdout):
    split, champion = holdout
    _, ref = evaluation.evaluate(champion, split.test, cfg)
    (column,) = cfg.dataset.slice_columns
    keys = split.test[column].astype(str).to_numpy()
    counts = pd.Series(keys).value_counts()
    victim = counts.index[0]
    cand = ref.copy()
    mask = keys == victim
    cand[mask] = np.random.default_rng(2).uniform(0, 1, mask.sum())  # useless on one slice only
    d = _decide(cfg, split.test, cand, ref)
    failed = [c.name for c in d.checks if not c.passed]
    assert f"slice:{column}={victim}" in failed
    assert "slices" in failed
    s = next(s for s in d.slices if s.value == victim)
    assert s.rows == counts[victim] and s.regression > cfg.gates.model.slice_max_regression


def test_small_slices_are_reported_but_not_judged(cfg, holdout):
    split, champion = holdout
    _, ref = evaluation.evaluate(champion, split.test, cfg)
    strict = cfg.model_copy(
        update={
            "gates": cfg.gates.model_copy(
                update={"model": cfg.gates.model.model_copy(update={"min_slice_rows": 10_000})}
            )
        }
    )
    y = target_vector(split.test, cfg.dataset).to_numpy()
    results = model_gate.slice_results(split.test, y, 1 - ref, ref, strict)
    assert results and all(s.regression is None and s.passed for s in results)


def test_decision_tags_carry_the_numbers(cfg, holdout):
    split, champion = holdout
    _, proba = evaluation.evaluate(champion, split.test, cfg)
    tags = model_gate.decision_tags(_decide(cfg, split.test, proba, proba))
    assert (tags["ctcd.gate"], tags["ctcd.delta"]) == ("rejected", "roc_auc +0.0000 vs champion v1")
    assert tags["ctcd.gate.reference"] == "champion:1"
    assert float(tags["ctcd.gate.delta"]) == 0.0
    assert "improvement=FAIL" in tags["ctcd.gate.checks"]
    assert all(isinstance(v, str) and len(v) < 5000 for v in tags.values())


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_the_vectorized_bootstrap_equals_sklearn_scoring_each_resample(metric):
    from sklearn.metrics import log_loss, roc_auc_score

    rng = np.random.default_rng(11)
    n, samples, seed = 300, 120, 4
    y = rng.integers(0, 2, n)
    cand = np.round(np.clip(y * 0.3 + rng.uniform(0, 0.7, n), 0.01, 0.99), 2)  # ties, as trees give
    ref = np.round(rng.uniform(0.01, 0.99, n), 2)
    score = roc_auc_score if metric == "roc_auc" else log_loss
    # The same resamples as the gate draws (multinomial counts, model_gate._CHUNK at a time), one at a time.
    draws = np.random.default_rng(seed)
    deltas = []
    for done in range(0, samples, model_gate._CHUNK):
        for w in draws.multinomial(n, np.full(n, 1.0 / n), size=min(model_gate._CHUNK, samples - done)):
            d = score(y, cand, sample_weight=w) - score(y, ref, sample_weight=w)
            deltas.append(d if evaluation.GREATER_IS_BETTER[metric] else -d)
    low, high = np.quantile(deltas, [0.05, 0.95])
    b = model_gate.paired_bootstrap(metric, y, cand, ref, samples, 0.9, seed)
    assert b.samples == samples
    assert b.low == pytest.approx(low, abs=1e-12) and b.high == pytest.approx(high, abs=1e-12)
    assert b.candidate == pytest.approx(score(y, cand, sample_weight=None), abs=1e-12)


# ---------------------------------------------------------------- the first model (no champion yet)


def test_first_model_a_candidate_as_good_as_the_baseline_is_served(cfg, holdout):
    """The gate against the baseline fails (no improvement), yet something must serve: the candidate."""
    split, champion = holdout
    _, proba = evaluation.evaluate(champion, split.test, cfg)
    d = model_gate.choose_first(_decide(cfg, split.test, proba, proba, kind="baseline"))
    assert not d.passed and d.chosen == "candidate"
    assert [c.name for c in d.reference_checks] == ["floor:accuracy", "floor:roc_auc"]
    assert "first model: the candidate is served" in d.summary()
    assert model_gate.decision_tags(d)["ctcd.gate.chosen"] == "candidate"
    assert model_gate.decision_tags(d)["ctcd.gate"] == "first-model"


def test_first_model_a_slightly_worse_candidate_leaves_the_baseline_to_serve(cfg, holdout):
    """Bootstrap lower bound just below -max_regression: the candidate is not blessed; the better model
    of the two (the baseline) clears the floors and is chosen, recorded in the typed decision."""
    split, champion = holdout
    _, good = evaluation.evaluate(champion, split.test, cfg)
    slightly = np.clip(good + np.random.default_rng(5).normal(0, 0.08, len(good)), 0, 1)
    d = model_gate.choose_first(_decide(cfg, split.test, slightly, good, kind="baseline"))
    assert not _check(d, "no_regression").passed and d.bootstrap.delta < 0
    assert all(c.passed for c in d.checks if c.name.startswith("floor:")), d.summary()
    assert d.chosen == "baseline" and all(c.passed for c in d.reference_checks)
    again = model_gate.GateDecision.model_validate_json(d.model_dump_json())
    assert again.chosen == "baseline" and again.reference_kind == "baseline"
    tags = model_gate.baseline_tags(d)
    assert tags["ctcd.gate"] == "first-model" and tags["ctcd.gate.reference"] == "candidate:2"
    assert tags["ctcd.delta"] == f"{d.bootstrap.metric} {-d.bootstrap.delta:+.4f} vs candidate v2"
    assert float(tags["ctcd.gate.candidate"]) == pytest.approx(d.bootstrap.reference, abs=1e-6)


def test_first_model_nothing_clearing_the_floors_is_one_line_that_says_what_to_change(cfg, holdout):
    split, _ = holdout
    rng = np.random.default_rng(2)
    noise, other = rng.random(len(split.test)), rng.random(len(split.test))
    d = model_gate.choose_first(_decide(cfg, split.test, noise, other, kind="baseline"))
    assert d.chosen is None
    line = model_gate.no_first_model(d)
    assert "\n" not in line
    assert line.startswith("no model cleared the floors accuracy>=0.7, roc_auc>=0.75: candidate accuracy 0.")
    assert "(baseline accuracy 0." in line and "lower gates.model.floors" in line


def test_a_failing_candidate_with_a_better_baseline_failing_its_floors_is_not_served(cfg, holdout):
    """Floors bind the baseline too: a baseline under the floors is never the first model."""
    split, champion = holdout
    _, good = evaluation.evaluate(champion, split.test, cfg)
    rng = np.random.default_rng(4)
    d = model_gate.choose_first(_decide(cfg, split.test, rng.random(len(good)), good, kind="baseline"))
    assert d.chosen == "baseline"  # the real model as baseline clears the floors
    strict = cfg.gates.model.model_copy(update={"floors": {"roc_auc": 0.9999}})
    d = model_gate.choose_first(d.model_copy(update={"thresholds": strict}))
    assert d.chosen is None and "roc_auc>=0.9999" in model_gate.no_first_model(d)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy"])
def test_a_bounded_bootstrap_gives_about_the_full_bootstraps_interval(metric):
    """Above `max_rows` the interval comes from a subsample, rescaled: close to resampling every row."""
    rng = np.random.default_rng(5)
    n = 40_000
    y = rng.integers(0, 2, n)
    cand = np.clip(y * 0.35 + rng.uniform(0, 0.65, n), 0.01, 0.99)
    ref = np.clip(y * 0.33 + rng.uniform(0, 0.67, n), 0.01, 0.99)
    full = model_gate.paired_bootstrap(metric, y, cand, ref, 200, 0.9, 1)
    bounded = model_gate.paired_bootstrap(metric, y, cand, ref, 200, 0.9, 1, max_rows=4_000)
    assert bounded.delta == full.delta and bounded.candidate == full.candidate  # point values: every row
    assert bounded.low < bounded.delta < bounded.high
    width = full.high - full.low
    assert bounded.high - bounded.low == pytest.approx(width, rel=0.35)
    assert abs(bounded.low - full.low) < 0.35 * width and abs(bounded.high - full.high) < 0.35 * width
    unscaled = model_gate.paired_bootstrap(metric, y[:4_000], cand[:4_000], ref[:4_000], 200, 0.9, 1)
    assert unscaled.high - unscaled.low > 2 * width  # 10x fewer rows: a ~3x wider interval unscaled
