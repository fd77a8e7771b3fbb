"""The BentoML service of the registry's champion: `bentoml serve ctcd.serving.service:ChampionService`.

Endpoints (JSON):
- `POST /predict` `{"rows": [row, ...]}` (up to `serving.max_batch_size` rows): online scoring; the
  requests that arrive while a batch is scored go together in the next one (`ctcd.serving.batcher`).
  A single row is a one-element list.
- `POST /predict_batch` `{"rows": [...]}` (up to `serving.max_request_rows` rows): bulk scoring in one call.
- `GET /model`: the live model version of the worker that answers, and the last reload error if any.
- `POST /admin/reload` `{"version": "4"}` (omit the version for the current champion): load the version in
  the background, check it answers sane probabilities, then swap it in atomically. Every worker follows.
  With `"rollout": {"candidate_version": "5", "mode": "shadow"|"canary", "fraction": 0.05}` the candidate
  is served beside the champion (`ctcd.serving.rollout_scoring`); a reload without it ends any rollout.
- Built in: `/healthz`, `/livez`, `/readyz` (ready once a model is loaded), `/metrics` (Prometheus).

Every prediction carries `request_id`, `probability`, `prediction` and `model_version`, and is appended to
the prediction log (`ctcd.prediction_log`). The config and workspace come from `CTCD_CONFIG` / `CTCD_HOME`
through `ctcd.settings`. Bento arguments (`--arg key=value`): `version` pins a model version (the smoke
test of a candidate), `port` names this server's reload channel, `log_predictions=false` keeps test
traffic out of the prediction log. The request guard and the admin app around it: `ctcd.serving.asgi`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import bentoml
import numpy as np
from pydantic import BaseModel, Field
from pydantic_core import to_json

from ctcd import model_ref, registry, settings
from ctcd.config import CtcdConfig, load_config
from ctcd.errors import CtcdError
from ctcd.features import model_input, model_input_columns
from ctcd.prediction_log import PredictionLogWriter
from ctcd.serving import request_timeout
from ctcd.serving.asgi import (
    BENTOML_REQUEST_LOGGER,
    PREDICTION_PATHS,
    OneLineValidationErrors,
    RequestGuard,
    admin_app,
)
from ctcd.serving.batcher import MicroBatcher
from ctcd.serving.rollout_scoring import (
    ActiveRollout,
    ServedRollout,
    ShadowScorer,
    active_rollout,
    candidate_frame,
    model_scores,
    rollout_answers,
)
from ctcd.serving.schema import (
    AS_OF_FIELD,
    ServingSchema,
    build_schema,
    contract_rules,
    rows_to_columns,
    unknown_categories,
)
from ctcd.serving.server import reload_channel
from ctcd.workspace import Workspace, write_json_atomic

logger = logging.getLogger("ctcd.serving")


logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(OneLineValidationErrors())
request_timeout.install()

WATCH_SECONDS = 0.5
CHAMPION_RETRY_SECONDS = 5.0
PROBE_ROWS = 32


class ServeArguments(BaseModel):
    """Bento arguments of one server process (`bentoml serve ... --arg key=value`)."""

    version: str | None = None
    port: int | None = None
    log_predictions: bool = True


@dataclass(frozen=True)
class LiveModel:
    """One loaded model version; replaced as a whole, never mutated, so a swap is one assignment."""

    version: str
    estimator: Any
    positive_index: int
    classes: np.ndarray
    loaded_at: datetime
    text_columns: dict[str, bool]

    def input(self, raw: Any) -> Any:
        """The model's input for request features as sent (categories in the form it was trained on)."""
        return model_input(raw, CFG.dataset, self.text_columns)

    def input_columns(self, values: dict[str, list[Any]]) -> tuple[Any, dict[str, np.ndarray]]:
        """`input` of features as sent, by column, without a frame of them; also each column as an array."""
        return model_input_columns(values, CFG.dataset, self.text_columns)


CFG: CtcdConfig = load_config()
WS: Workspace = Workspace.open()
RULES = contract_rules(CFG.gates.data.suite)
SCHEMA: ServingSchema = build_schema(CFG, RULES)
Row = SCHEMA.row
Prediction = SCHEMA.prediction
ARGS = bentoml.use_arguments(ServeArguments)
API_KEY = settings.api_key(CFG.serving.api_key_env)


def load_live_model(cfg: CtcdConfig, ws: Workspace, version: str | None) -> LiveModel:
    """Load a registered version (the champion when None) and check that it knows the positive label."""
    reg = registry.Registry(cfg, ws)
    ref = reg.version(version) if version else reg.require_champion()
    estimator = reg.load_model(ref)
    positive = model_ref.positive_class_index(cfg, ref, estimator)
    text = reg.text_categories(ref)
    return LiveModel(
        ref.version, estimator, positive, np.asarray(estimator.classes_), datetime.now(UTC), text
    )


def check_answers(model: LiveModel, frame: Any) -> None:
    """Raise unless the model returns one finite probability distribution per row of `frame` (as sent)."""
    proba = np.asarray(model.estimator.predict_proba(model.input(frame)), dtype="float64")
    if proba.shape != (len(frame), len(model.classes)):
        raise CtcdError(f"model version {model.version} returned probabilities of shape {proba.shape}")
    if not np.isfinite(proba).all() or (proba < 0).any() or (proba > 1).any():
        raise CtcdError(f"model version {model.version} returned probabilities outside [0, 1]")
    if not np.allclose(proba.sum(axis=1), 1.0, atol=1e-4):
        raise CtcdError(f"model version {model.version} returned probabilities that do not sum to 1")


def example_frame(schema: ServingSchema) -> Any:
    """One valid-looking input row built from the data contract (range midpoints, first category)."""
    import pandas as pd

    values: dict[str, Any] = {}
    for name in schema.features:
        rule = RULES.get(name)
        if rule is not None and rule.allowed:
            values[name] = rule.allowed[0]
        elif rule is not None and rule.min_value is not None and rule.max_value is not None:
            values[name] = (rule.min_value + rule.max_value) / 2
        else:
            values[name] = rule.min_value if rule is not None and rule.min_value is not None else 0.0
    return pd.DataFrame([values], columns=list(schema.features))


RowList = Annotated[list[Row], Field(min_length=1, max_length=CFG.serving.max_batch_size)]  # type: ignore[valid-type]
BulkRowList = Annotated[list[Row], Field(min_length=1, max_length=CFG.serving.max_request_rows)]  # type: ignore[valid-type]


@bentoml.asgi_app(admin_app(), path="/")
@bentoml.service(
    name="ctcd",
    workers=CFG.serving.workers,
    # No max_concurrency: excess requests wait in the batcher's queue instead of being refused with 503.
    traffic={"timeout": 60},
    # No spans for predictions: BentoML samples none by default (tracing.sample_rate 0), yet building the
    # unsampled spans cost about 8 % of the worker's time under load.
    tracing={"excluded_urls": [f"{path}$" for path in PREDICTION_PATHS]},
    logging={"access": {"enabled": CFG.serving.access_log}},
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
    labels={"dataset": CFG.dataset.name, "model": CFG.registered_model_name},
)
class ChampionService:
    """Serves the registry's champion (or a pinned version) and logs every prediction."""

    def __init__(self) -> None:
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._live: LiveModel | None = None
        self._rollout: ActiveRollout | None = None
        self._reload_error: str | None = None
        self._probe = example_frame(SCHEMA)
        self._channel = reload_channel(WS, ARGS.port) if ARGS.port and not ARGS.version else None
        self._seen = self._channel_stamp()
        wanted, wanted_rollout = self._channel_request()
        wanted = wanted or ARGS.version
        try:
            self._live = load_live_model(CFG, WS, wanted)
            check_answers(self._live, self._probe)
            self._rollout = self._load_rollout(self._live, wanted_rollout)
        except Exception as exc:
            # Stay up but not ready: /model tells why, and `start_server` reports it instead of a timeout.
            self._reload_error = f"could not load model version {wanted or 'champion'}: {exc}"
            logger.error(self._reload_error)
        self._log = (
            PredictionLogWriter(WS.predictions, CFG.serving.log_flush_rows, CFG.serving.log_flush_seconds)
            if ARGS.log_predictions
            else None
        )
        self._shadow = ShadowScorer(self._log.append) if self._log is not None else None
        self._batch_rows = _batch_rows_histogram()
        self._batcher = MicroBatcher(
            self._score, CFG.serving.max_batch_size, CFG.serving.max_latency_ms / 1000, "ctcd-predict"
        )
        self._watcher = threading.Thread(target=self._watch, name="ctcd-reload-watcher", daemon=True)
        # Everything loaded so far (BentoML, MLflow, pandas, the model: ~300k objects) lives as long as the
        # worker. Left to the cyclic GC, each full collection walked all of it: 300-470 ms pauses every
        # ~2 s under load, the whole p99. Frozen, it is never walked again (refcounting still frees it).
        gc.collect()
        gc.freeze()
        if not ARGS.version:
            self._watcher.start()

    def __is_ready__(self) -> bool:
        return self._live is not None

    # Both answer the JSON of `list[Prediction]` (the documented schema), serialized in the scoring thread;
    # handing BentoML the finished response spares it a JSON schema build and a re-validation per request.
    @bentoml.api
    async def predict(self, rows: RowList) -> list[Prediction]:  # type: ignore[valid-type]
        """Score rows; concurrent requests are scored together (`ctcd.serving.batcher`)."""
        return _json_response(await self._batcher.submit(rows))  # type: ignore[return-value]

    @bentoml.api
    def predict_batch(self, rows: BulkRowList) -> list[Prediction]:  # type: ignore[valid-type]
        """Score up to `serving.max_request_rows` rows in one call."""
        return _json_response(self._score([rows])[0])  # type: ignore[return-value]

    @bentoml.on_shutdown
    def close(self) -> None:
        """Stop following reloads, finish the batch being scored and write every buffered prediction."""
        self._stop.set()
        self._batcher.close()
        if self._shadow is not None:
            self._shadow.close()
        if self._log is not None:
            self._log.close()

    def describe(self) -> dict[str, Any]:
        """What this worker serves right now."""
        live, rollout = self._live, self._rollout
        return {
            "model": CFG.registered_model_name,
            "version": live.version if live else None,
            "rollout": rollout.describe() if rollout else None,
            "loaded_at": live.loaded_at.isoformat() if live else None,
            "pinned": ARGS.version is not None,
            "reload_error": self._reload_error,
            "worker_pid": os.getpid(),
        }

    def request_reload(self, version: str | None, rollout: ServedRollout | None = None) -> dict[str, Any]:
        """Switch every worker of this server to `version` (None: the champion now), with `rollout`'s
        candidate beside it (None: the champion alone); return the outcome."""
        if ARGS.version:
            raise CtcdError(f"this server is pinned to version {ARGS.version} and does not reload")
        target = version or registry.Registry(CFG, WS).require_champion().version
        previous = self._live.version if self._live else None
        served = rollout.model_dump() if rollout else None
        if self._channel is not None:
            request = {"version": target, "rollout": served, "requested_at": time.time()}
            write_json_atomic(self._channel, request, indent=None)
        self._apply(target, rollout)
        return {"version": target, "previous": previous, "rollout": served, "worker_pid": os.getpid()}

    def _apply(self, version: str | None, rollout: ServedRollout | None = None) -> None:
        with self._reload_lock:
            live = self._live
            if version is None or live is None or live.version != version:
                try:
                    live = self._load_checked(version)
                except Exception as exc:
                    self._reload_error = f"reload to version {version or 'champion'} failed: {exc}"
                    logger.error(self._reload_error)
                    raise CtcdError(self._reload_error) from exc
            try:
                active = self._load_rollout(live, rollout)
            except Exception as exc:
                self._reload_error = f"loading candidate version {rollout.candidate_version} failed: {exc}"  # type: ignore[union-attr]
                logger.error(self._reload_error)
                raise CtcdError(self._reload_error) from exc
            # The atomic swap (two references; any mix of old and new a batch may read is a valid answer):
            # batches in flight keep the models they started with.
            serving = (live.version, active and active.describe())
            changed = serving != (
                self._live and self._live.version,
                self._rollout and self._rollout.describe(),
            )
            self._rollout, self._live = active, live
            self._reload_error = None
            if changed:
                logger.info("now serving model version %s, rollout %s", *serving)

    def _load_rollout(self, champion: LiveModel, rollout: ServedRollout | None) -> ActiveRollout | None:
        """The candidate beside `champion`: the one loaded already when the version is the same."""
        loaded = [m for m in (self._rollout and self._rollout.candidate, champion) if m is not None]
        return active_rollout(rollout, loaded, self._load_checked)

    def _load_checked(self, version: str | None) -> LiveModel:
        model = load_live_model(CFG, WS, version)
        check_answers(model, _frame(self._probe))
        return model

    def _watch(self) -> None:
        last_try = time.monotonic()
        while not self._stop.wait(WATCH_SECONDS):
            try:
                stamp = self._channel_stamp()
                if stamp != self._seen:
                    self._seen = stamp
                    self._apply(*self._channel_request())
                elif self._live is None and time.monotonic() - last_try > CHAMPION_RETRY_SECONDS:
                    last_try = time.monotonic()
                    self._apply(None)
            except Exception as exc:
                logger.debug("reload attempt failed: %s", exc)

    def _channel_stamp(self) -> int | None:
        if self._channel is None:
            return None
        try:
            return self._channel.stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def _channel_request(self) -> tuple[str | None, ServedRollout | None]:
        if self._channel is None or not self._channel.exists():
            return None, None
        try:
            request = json.loads(self._channel.read_text(encoding="utf-8"))
            rollout = request.get("rollout")
            return str(request["version"]), ServedRollout.model_validate(rollout) if rollout else None
        except (OSError, ValueError, KeyError):
            return None, None

    def _score(self, requests: list[Sequence[Any]]) -> list[bytes]:
        """Score the rows of several requests at once; one JSON answer (bytes) per request, in order."""
        live, rollout = self._live, self._rollout
        if live is None:
            raise bentoml.exceptions.ServiceUnavailable(
                "no model is loaded yet: the registry has no champion"
            )
        rows = [row for request in requests for row in request]
        raw = rows_to_columns(rows, SCHEMA.features)
        if CFG.serving.unknown_category == "warn":
            _warn_unknown(raw)
        frame, columns = live.input_columns(raw)
        positive, labels = model_scores(live, frame)
        ids = [getattr(r, SCHEMA.id_column) for r in rows]
        request_ids = [uuid.uuid4().hex for _ in rows]
        id_column = SCHEMA.id_column
        positive, labels, versions, rollout_log, deferred = rollout_answers(
            live, rollout, raw, frame, (positive, labels), ids, request_ids
        )
        answers = [
            {
                "request_id": rid,
                "probability": p,
                "prediction": label,
                "model_version": version,
                id_column: row_id,
            }
            for rid, p, label, version, row_id in zip(
                request_ids, positive.tolist(), labels.tolist(), versions, ids, strict=True
            )
        ]
        self._probe = {name: values[:PROBE_ROWS] for name, values in raw.items()}
        self._batch_rows.observe(len(rows))
        if self._log is not None:
            # Plain columns only: the writer thread builds the DataFrame, off the request path.
            now = datetime.now(UTC)
            as_of = [getattr(r, AS_OF_FIELD) for r in rows]
            record: dict[str, Any] = {
                "request_id": request_ids,
                "served_at": [now] * len(rows)
                if all(d is None for d in as_of)
                else [_served_at(now, d) for d in as_of],
                id_column: ids,
            }
            # Each feature as the model took it: float64, or text for text categories.
            record |= columns
            record |= {"probability": positive, "prediction": labels, "model_version": versions}
            record |= rollout_log
            if deferred and self._shadow is not None:
                # The candidate scores the batch after it is answered, in the shadow scorer's thread.
                cand = rollout.candidate  # type: ignore[union-attr]
                self._shadow.submit(cand, lambda: candidate_frame(live, cand, raw, frame), record)
            else:
                self._log.append(record)
        out: list[bytes] = []
        start = 0
        for request in requests:
            out.append(to_json(answers[start : start + len(request)], inf_nan_mode="null"))
            start += len(request)
        return out


def _json_response(body: bytes) -> Any:
    from starlette.responses import Response

    return Response(content=body, media_type="application/json")


def _frame(values: Any) -> Any:
    """A frame of features as sent (the reload probe): from columns by name, or a frame already."""
    import pandas as pd

    return pd.DataFrame(values, columns=list(SCHEMA.features))


def _batch_rows_histogram() -> Any:
    # prometheus_client, imported here: BentoML sets up its multiprocess directory before the service starts.
    import prometheus_client

    buckets = [2**i for i in range(max(CFG.serving.max_batch_size, 1).bit_length() + 1)]
    return prometheus_client.Histogram(
        "ctcd_scoring_batch_rows",
        "rows per scoring call (the /predict requests merged by the batcher, or one /predict_batch request)",
        buckets=buckets,
    )


def _warn_unknown(raw: Any) -> None:
    found = unknown_categories(raw, RULES, CFG.dataset.categorical_features)
    if found:
        listed = "; ".join(
            f"{column}: {', '.join(map(repr, values[:5]))}" for column, values in found.items()
        )
        logger.warning(
            "served rows with categories outside the data contract (unseen by the model): %s", listed
        )


def _served_at(now: datetime, as_of: Any) -> datetime:
    # `as_of` (demo replay of simulated days) moves the date only; the server still stamps the time.
    return now if as_of is None else datetime.combine(as_of, now.timetz())


ChampionService.add_asgi_middleware(RequestGuard, api_key=API_KEY, max_bytes=CFG.serving.max_request_bytes)
