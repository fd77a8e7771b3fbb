"""Training: device choice, the budgeted search with early stopping, the baseline, reproducibility.

The helpers `small_config`, `labelled_batches` and `small_split` are shared by the other training tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from ctcd.config import CtcdConfig
from ctcd.errors import WorkFailed
from ctcd.stream.scenario import generate_day
from tasks import dataset, evaluation, training
from tasks.model import final_estimator


def small_config(cfg: CtcdConfig, rows_per_day: int = 300, **training_overrides: object) -> CtcdConfig:
    """The default config made fast: few rows, few trees, one thread, a small search and bootstrap."""
    assert cfg.stream is not None
    stream = cfg.stream.model_copy(update={"rows_per_day": rows_per_day, "events": [], "perturbation": 0.1})
    model = cfg.model.model_copy(
        update={
            "params": {**cfg.model.params, "n_estimators": 40, "n_jobs": 1},
            "early_stopping_rounds": 5,
            "search": cfg.model.search.model_copy(update={"budget": 2}),
        }
    )
    gate = cfg.gates.model.model_copy(update={"bootstrap_samples": 100, "min_slice_rows": 30})
    train = cfg.training.model_copy(update={"device": "cpu", **training_overrides})
    return cfg.model_copy(
        update={
            "stream": stream,
            "model": model,
            "training": train,
            "gates": cfg.gates.model_copy(update={"model": gate}),
        }
    )


def labelled_batches(cfg: CtcdConfig, days: range = range(1, 7)) -> list[dataset.BatchInput]:
    """Stream days as labelled batch inputs (no files)."""
    out = []
    for day in days:
        b = generate_day(cfg, day)
        frame = dataset.join_labels(b.features, b.labels, cfg.dataset)
        out.append(dataset.BatchInput(b.batch_id, f"{day:064d}", f"memory:{b.batch_id}", frame))
    return out


def small_split(cfg: CtcdConfig, days: range = range(1, 7)) -> dataset.Split:
    """A time-ordered split of a few stream days."""
    frame = dataset.training_frame(labelled_batches(cfg, days), cfg.dataset)
    return dataset.time_split(frame, cfg.training)


@pytest.fixture(scope="module")
def cfg(default_config: CtcdConfig) -> CtcdConfig:
    return small_config(default_config)


@pytest.fixture(scope="module")
def split(cfg: CtcdConfig) -> dataset.Split:
    return small_split(cfg)


def test_cpu_is_taken_as_configured():
    choice = training.choose_device("cpu")
    assert (choice.device, choice.requested) == ("cpu", "cpu")


def test_auto_follows_the_visible_gpus():
    choice = training.choose_device("auto")
    assert choice.device == ("cuda" if training.visible_gpus() else "cpu")
    assert choice.reason.startswith("auto")


def test_cuda_without_a_gpu_is_an_error_that_says_what_to_do():
    if training.visible_gpus():
        pytest.skip("a GPU is visible here")
    with pytest.raises(WorkFailed, match=r"training\.device"):
        training.choose_device("cuda")


def test_candidates_start_with_the_configured_params_and_stay_in_the_space(cfg):
    params = training.candidate_params(
        cfg.model_copy(
            update={
                "model": cfg.model.model_copy(
                    update={"search": cfg.model.search.model_copy(update={"budget": 6})}
                )
            }
        )
    )
    assert len(params) == 6
    assert params[0] == {}
    space = cfg.model.search.space
    for p in params[1:]:
        assert set(p) == set(space)
        for name, (low, high) in space.items():
            assert low <= p[name] <= high
            if isinstance(low, int) and isinstance(high, int):
                assert isinstance(p[name], int)
    assert params == training.candidate_params(
        cfg.model_copy(
            update={
                "model": cfg.model.model_copy(
                    update={"search": cfg.model.search.model_copy(update={"budget": 6})}
                )
            }
        )
    )


def test_search_picks_the_best_candidate_on_validation(cfg, split):
    result = training.search(cfg, split, training.choose_device("cpu"))
    scores = [c.validation_score for c in result.candidates]
    assert len(scores) == cfg.model.search.budget
    assert result.best.validation_score == max(scores)
    assert result.metric == cfg.gates.model.primary_metric


def test_early_stopping_stops_before_the_tree_budget(cfg, split):
    # Slow learning on a tiny patience: validation loss stalls long before 400 trees.
    many = cfg.model_copy(
        update={
            "model": cfg.model.model_copy(
                update={
                    "params": {**cfg.model.params, "n_estimators": 400, "learning_rate": 0.3},
                    "early_stopping_rounds": 3,
                }
            )
        }
    )
    cand = training.fit_candidate(many, split, {}, training.choose_device("cpu"))
    assert cand.best_iteration is not None
    assert cand.best_iteration < 399
    assert final_estimator(cand.model).get_params()["device"] == "cpu", (
        "the registered model must serve on CPU"
    )


def test_baseline_is_the_configured_sklearn_pipeline(cfg, split):
    model = training.fit_baseline(cfg, split)
    assert type(model).__name__ == "Pipeline"
    assert type(model[-1]).__name__ == "LogisticRegression"


def test_sklearn_flavor_trains_the_baseline_kind_and_compares_with_the_prior(cfg, split):
    sk = cfg.model_copy(update={"model": cfg.model.model_copy(update={"flavor": "sklearn", "params": {}})})
    assert len(training.candidate_params(sk)) == 1
    result = training.search(sk, split, training.choose_device("cpu"))
    assert type(result.best.model[-1]).__name__ == "LogisticRegression"
    assert type(training.fit_baseline(sk, split)).__name__ == "DummyClassifier"


def test_same_data_config_and_seed_give_the_same_metrics(cfg):
    def once() -> dict[str, float | None]:
        split = small_split(cfg)  # rebuilt from the generator: nothing shared between the two runs
        result = training.search(cfg, split, training.choose_device("cpu"))
        report, _ = evaluation.evaluate(result.best.model, split.test, cfg)
        return report.metrics

    first, second = once(), once()
    assert first == second
    assert first["roc_auc"] is not None and first["roc_auc"] > 0.8


def test_another_seed_gives_another_model(cfg, split):
    other = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": 7})})
    a = training.fit_candidate(cfg, split, {}, training.choose_device("cpu"))
    b = training.fit_candidate(other, split, {}, training.choose_device("cpu"))
    X = split.test[cfg.dataset.features].astype("float64")
    assert not np.array_equal(a.model.predict_proba(X), b.model.predict_proba(X))


def test_one_class_training_rows_are_refused(cfg, split):
    target = cfg.dataset.target
    one = dataset.Split(split.train.assign(**{target: 0}), split.validation, split.test, "x")
    with pytest.raises(WorkFailed, match="one class"):
        training.fit_candidate(cfg, one, {}, training.choose_device("cpu"))
