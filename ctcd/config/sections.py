"""The sections of a ctcd config: the dataset, the built-in stream, model and training, the gates, the
drift policy, serving, tracking and orchestration. Each one is a strict, frozen pydantic model."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ctcd import columns
from ctcd.config.base import Strict
from ctcd.config.sources import Source


class DatasetConfig(Strict):
    """What the data looks like and where it lands."""

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]*$", description="lowercase name, used for suites and models"
    )
    target: str
    id_column: str
    timestamp_column: str | None = None
    numerical_features: list[str] = Field(default_factory=list)
    categorical_features: list[str] = Field(default_factory=list)
    positive_label: str | bool | int = Field(
        default=1,
        description="the label models predict the probability of: text, true/false or an integer "
        "(quote text that YAML would read otherwise: 'yes', 'no', 'on', '1')",
    )
    label_delay_batches: int = Field(
        default=1, ge=0, description="batches after its own that a batch's labels arrive (monitoring)"
    )
    other_columns: list[str] = Field(
        default_factory=list,
        description="columns the batches carry that are not model inputs (a field known only after the "
        "outcome, the batch key...): the data gate checks them, the model never sees them, and serving "
        "accepts and ignores them in a request row copied from a batch",
    )
    slice_columns: list[str] = Field(default_factory=list)
    file_format: Literal["parquet", "csv"] = "parquet"
    source: Source | None = Field(
        default=None,
        description="where batches come from; null: the `stream` section if any, else files landed by hand",
    )

    @property
    def features(self) -> list[str]:
        """All model inputs, numerical first."""
        return [*self.numerical_features, *self.categorical_features]

    @model_validator(mode="after")
    def _columns_consistent(self) -> DatasetConfig:
        if not self.features:
            raise ValueError("declare at least one feature in numerical_features or categorical_features")
        seen: set[str] = set()
        for col in [self.target, self.id_column, *self.features, *self.other_columns]:
            if col in seen:
                raise ValueError(f"column {col!r} is declared twice")
            seen.add(col)
        if self.timestamp_column and self.timestamp_column in seen:
            raise ValueError(f"timestamp_column {self.timestamp_column!r} is also declared as another column")
        declared = [*seen, *([self.timestamp_column] if self.timestamp_column else [])]
        clashes = [c for c in declared if columns.reserved_clash(c)]
        if clashes:
            raise ValueError(
                f"column(s) {clashes} use names ctcd reserves ({', '.join(columns.RESERVED)} and the prefix "
                f"{columns.INTERNAL_PREFIX}): rename those columns in the data and the config"
            )
        unknown = [c for c in self.slice_columns if c not in self.features]
        if unknown:
            raise ValueError(f"slice_columns {unknown} are not features of the dataset")
        return self


Corruption = Literal[
    "null_flood",
    "string_numbers",
    "out_of_range",
    "unknown_category",
    "duplicate_ids",
    "missing_column",
    "truncated",
]


class ScenarioEvent(Strict):
    """One thing that happens to the built-in stream from `day` to `until_day` (inclusive, 1-based).

    Without `until_day`, shifts and concept drift last to the end of the stream and a corruption hits one day.
    covariate_shift: `column` becomes column * scale + shift before labelling (P(y|x) stays).
    prior_shift: rows are resampled by class so `positive_rate` of them are positive (P(x|y) stays).
    concept_drift: labels come from classification `function` (0-9).
    corrupt_batch: the features file is corrupted (`corruption`, default null_flood; `column` optional).
    """

    day: int = Field(ge=1)
    until_day: int | None = None
    kind: Literal["covariate_shift", "prior_shift", "concept_drift", "corrupt_batch"]
    column: str | None = None
    shift: float | None = None
    scale: float | None = None
    positive_rate: float | None = Field(default=None, gt=0, lt=1)
    function: int | None = Field(default=None, ge=0, le=9)
    corruption: Corruption | None = None

    @model_validator(mode="after")
    def _fields_for_kind(self) -> ScenarioEvent:
        if self.until_day is not None and self.until_day < self.day:
            raise ValueError(f"until_day ({self.until_day}) is before day ({self.day})")
        if self.kind == "covariate_shift" and (
            self.column is None or (self.shift, self.scale) == (None, None)
        ):
            raise ValueError("a covariate_shift needs a column and a shift and/or a scale")
        if self.kind == "prior_shift" and self.positive_rate is None:
            raise ValueError("a prior_shift needs a positive_rate")
        if self.kind == "concept_drift" and self.function is None:
            raise ValueError("a concept_drift needs the classification function (0-9) it switches to")
        return self


class StreamConfig(Strict):
    """The built-in drifting data stream (Agrawal loan applications) used by the embedded default."""

    generator: Literal["agrawal"] = "agrawal"
    seed: int = 42
    rows_per_day: int = Field(default=2000, ge=10)
    days: int = Field(default=30, ge=1)
    start_date: date = date(2026, 1, 1)
    function: int = Field(default=0, ge=0, le=9)
    perturbation: float = Field(default=0.0, ge=0, le=1)
    events: list[ScenarioEvent] = Field(default_factory=list)


class SearchConfig(Strict):
    """A small, budgeted random search over XGBoost hyper-parameters."""

    budget: int = Field(default=4, ge=1, description="number of candidates tried")
    space: dict[str, list[float | int]] = Field(default_factory=dict, description="name -> [low, high]")

    @field_validator("space")
    @classmethod
    def _ranges(cls, v: dict[str, list[float | int]]) -> dict[str, list[float | int]]:
        for name, bounds in v.items():
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ValueError(f"search.space.{name} must be [low, high] with low <= high")
        return v


class ModelConfig(Strict):
    """What is trained and the registered model's name."""

    flavor: Literal["xgboost", "sklearn"] = "xgboost"
    baseline: Literal["logistic_regression", "hist_gradient_boosting"] = "logistic_regression"
    params: dict[str, float | int | str] = Field(default_factory=dict)
    early_stopping_rounds: int = Field(default=20, ge=1)
    search: SearchConfig = SearchConfig()
    registered_name: str | None = None


class TrainingConfig(Strict):
    """Which data a training run uses, and where it runs."""

    window_batches: int = Field(default=7, ge=1, description="latest labelled batches trained on")
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.2, gt=0, lt=0.5)
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"
    reference_rows: int = Field(default=5000, ge=100, description="training rows kept with the model")
    cost_per_cpu_hour: float = Field(
        default=0.05, ge=0, description="money per CPU hour of training (recorded cost, `ctcd backtest`)"
    )
    cost_per_gpu_hour: float = Field(
        default=3.0, ge=0, description="money per GPU hour of training (recorded cost, `ctcd backtest`)"
    )


class ModelGateConfig(Strict):
    """TFX-style blessing thresholds: absolute floors and allowed regression against the champion."""

    primary_metric: Literal["roc_auc", "accuracy", "f1", "log_loss", "brier"] = "roc_auc"
    floors: dict[str, float] = Field(default_factory=lambda: {"roc_auc": 0.6})
    max_regression: float = Field(default=0.005, ge=0)
    min_improvement: float = Field(
        default=0.0, ge=0, description="primary-metric gain needed to displace the champion (ties keep it)"
    )
    slice_max_regression: float = Field(default=0.05, ge=0)
    min_slice_rows: int = Field(default=50, ge=1)
    bootstrap_samples: int = Field(default=300, ge=10)
    bootstrap_max_rows: int = Field(
        default=100_000,
        ge=1000,
        description="holdout rows the bootstrap resamples at most (an m-out-of-n bootstrap above it)",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    approval: Literal["auto", "manual"] = Field(
        default="auto",
        description="manual: a blessed candidate waits, its training flow run Paused, for `ctcd approve "
        "VERSION` / `ctcd reject VERSION --reason` (or the Prefect UI) before it is promoted or rolled out",
    )
    approval_timeout_s: int = Field(
        default=86_400,
        ge=1,
        description="seconds a paused training run waits for a decision; none by then is a rejection",
    )


class DataGateConfig(Strict):
    """Where the Great Expectations suite lives (JSON, id-free, reviewed like code), and how it is built."""

    suite: Path
    range_quantile: float = Field(
        default=0.005,
        ge=0,
        lt=0.5,
        description="`suite init`: value ranges span the reference's q and 1-q quantiles (robust to spikes)",
    )
    range_margin: float = Field(
        default=0.5, ge=0, description="`suite init`: value ranges widened by this share of their span"
    )
    range_mostly: float = Field(
        default=0.99,
        gt=0,
        le=1,
        description="`suite init`: share of values a batch must keep inside the range",
    )
    range_severity: Literal["warning", "critical"] = Field(
        default="warning", description="`suite init`: severity of the learned value ranges"
    )
    hard_range_factor: float = Field(
        default=100.0,
        gt=0,
        description="`suite init`: critical bounds: the reference's magnitude times this beyond its range",
    )
    constant_tolerance: float = Field(
        default=0.01,
        ge=0,
        description="`suite init`: a column constant in the reference warns beyond this share of its value",
    )
    new_category_share: float = Field(
        default=0.001,
        ge=0,
        lt=1,
        description="`suite init`: a batch with more unseen categories than this share is rejected",
    )
    stat_tolerance: float = Field(
        default=0.25, gt=0, description="`suite init`: mean/std warnings beyond this many std / this share"
    )
    row_count_tolerance: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="`suite init`: a row count outside the reference batches' +/- this share warns",
    )
    null_fraction_margin: float = Field(
        default=0.05,
        ge=0,
        le=1,
        description="`suite init`: extra null share allowed where the reference has nulls",
    )
    keep_results: int = Field(default=50, ge=1, description="GX validation results and Data Docs pages kept")
    csv_encoding: str = Field(default="utf-8", description="encoding of CSV batches")


class OnlineGateConfig(Strict):
    """The online gate: a candidate in shadow or canary judged against the champion on labelled live rows
    (the offline gate's paired bootstrap, metric, confidence and `min_improvement`)."""

    min_labelled_rows: int = Field(
        default=200, ge=1, description="labelled live rows (scored by both models) needed before judging"
    )
    max_regression: float | None = Field(
        default=None, ge=0, description="allowed drop of the primary metric; null: gates.model.max_regression"
    )
    max_wait_batches: int = Field(
        default=5,
        ge=1,
        description="monitored batches a rollout may last without a promotion before it is rejected",
    )
    step_min_labelled_rows: int | None = Field(
        default=None,
        ge=1,
        description="labelled live rows a canary needs before it steps up to the next share (with a point "
        "delta not below -max_regression); null: a quarter of min_labelled_rows",
    )

    @model_validator(mode="after")
    def _step_below_judging(self) -> OnlineGateConfig:
        if self.step_min_labelled_rows is not None and self.step_min_labelled_rows > self.min_labelled_rows:
            raise ValueError(
                f"gates.online.step_min_labelled_rows ({self.step_min_labelled_rows}) exceeds "
                f"min_labelled_rows ({self.min_labelled_rows}): a canary steps up on fewer labels than a "
                "verdict needs"
            )
        return self


class GatesConfig(Strict):
    data: DataGateConfig
    model: ModelGateConfig = ModelGateConfig()
    online: OnlineGateConfig = OnlineGateConfig()


class DriftPolicyConfig(Strict):
    """Turns monitoring signals into one decision: retrain, alert or none."""

    feature_drift_share: float = Field(default=0.3, gt=0, le=1, description="share of drifted features")
    numerical_method: str = Field(
        default="wasserstein", description="Evidently drift method for numerical features, or auto"
    )
    categorical_method: str = Field(
        default="jensenshannon", description="Evidently drift method for categorical features, or auto"
    )
    feature_threshold: float = Field(default=0.1, gt=0, description="per-feature threshold of the method")
    prediction_drift_threshold: float = Field(default=0.1, gt=0)
    prior_shift_threshold: float = Field(default=0.1, gt=0, description="absolute change of positive rate")
    accuracy_drop: float = Field(default=0.05, gt=0, description="drop vs. the champion's evaluation")
    min_labelled_rows: int = Field(default=500, ge=1)
    cooldown_batches: int = Field(default=2, ge=0, description="batches after a retraining before the next")
    max_retries_per_episode: int = Field(
        default=2,
        ge=0,
        description="retries after the gate rejected a drift episode's retraining, each after the cool-down",
    )
    window_batches: int = Field(default=1, ge=1, description="latest batches compared with the reference")
    covariate_persistence_batches: int = Field(
        default=1,
        ge=1,
        description="batches in a row a covariate shift must fire before it alone retrains (1: at once)",
    )
    retrain_on: list[Literal["covariate_shift", "prediction_drift", "prior_shift", "performance"]] = Field(
        default_factory=lambda: ["performance", "prior_shift", "covariate_shift"]
    )
    report_retention: int = Field(default=10, ge=1, description="HTML reports kept in the workspace")
    column_thresholds: dict[str, float] = Field(
        default_factory=dict, description="per-feature drift thresholds overriding feature_threshold"
    )
    keep_reports: Literal["always", "on_signal", "never"] = Field(
        default="always", description="when the Evidently HTML report is rendered and kept"
    )


class ServingConfig(Strict):
    """The BentoML service for the champion."""

    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=1, le=65535)
    workers: int = Field(default=1, ge=1)
    api_key_env: str = "CTCD_API_KEY"
    max_batch_size: int = Field(default=64, ge=1)
    max_latency_ms: int = Field(
        default=5000, ge=50, description="/predict refuses (503) a request that waited this long for scoring"
    )
    max_request_rows: int = Field(default=1000, ge=1)
    unknown_category: Literal["reject", "warn"] = Field(
        default="reject",
        description="a categorical value outside the data contract's value set: reject (400 naming the "
        "column and value) or warn (served and logged; the model treats it as a category it never saw)",
    )
    max_request_bytes: int = Field(default=1_000_000, ge=1024)
    log_flush_rows: int = Field(default=500, ge=1)
    log_flush_seconds: float = Field(default=2.0, gt=0)
    access_log: bool = Field(default=False, description="BentoML's per-request access log lines")
    keep_smoke_server: bool = Field(
        default=False,
        description="keep the smoke-test server as a standby between deliveries (each reloads it rather than "
        "starting a new one; `ctcd down` stops it)",
    )
    rollout: Literal["direct", "shadow", "canary"] = Field(
        default="direct",
        description="how a new champion reaches traffic: direct (swapped in at promotion), shadow (the "
        "candidate scores every row beside the champion, which still answers) or canary (the candidate "
        "answers a growing share of rows, `canary_steps`); shadow and canary log both models' probabilities",
    )
    canary_steps: list[float] = Field(
        default_factory=lambda: [0.05, 0.25, 1.0],
        min_length=1,
        description="the share of rows (by a stable hash of the row id) the candidate answers at each canary "
        "step, increasing, each in (0, 1]",
    )

    @field_validator("canary_steps")
    @classmethod
    def _increasing_shares(cls, steps: list[float]) -> list[float]:
        if any(not 0 < s <= 1 for s in steps) or steps != sorted(set(steps)):
            raise ValueError(f"give increasing shares in (0, 1], e.g. [0.05, 0.25, 1.0], not {steps}")
        return steps
