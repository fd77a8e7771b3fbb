"""The Great Expectations seam: the only module that imports great_expectations (lazily: it costs 6-10 s).

GX state lives in a file context under `ws.gx_root`: the suite (loaded from its reviewed, id-free JSON on
every open), a pandas dataframe asset, a validation definition, and two checkpoints:

- `<suite>-gate` (BOOLEAN_ONLY) runs on every batch; its result is the decision of record.
- `<suite>-details` (BASIC: unexpected counts, percents, observed values, a few examples) runs only when
  the gate failed, so a clean batch never pays for the detail and a failing one gets a readable record.

Data Docs (`ws.gx_root/uncommitted/data_docs/local_site/`) are rendered by `publish_docs()` once per
ingest for all the results of the run, not by a checkpoint action per batch: rendering a page and the
index costs more than validating a daily batch, and GX compiles its templates again on every build.
GX's per-run overhead is cut by small patches of GX 1.24.1 internals installed by `_gx()`, each saying why;
`tests/ctcd/test_gx_gate.py` pins the version and checks the patched gate says what GX alone says.
"""

from __future__ import annotations

import json
import shutil
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ctcd.errors import ConfigError, WorkFailed
from ctcd.workspace import Workspace

DATASOURCE = "ctcd"
BATCH_DEFINITION = "whole-batch"
SITE = "local_site"
GX_VERSION = "1.24.1"  # the version the patches below were read against; see `_gx`

# The store files GX's freshness checks read back (checkpoints, validation definitions, suites, datasources).
_STORE_DIRS = ("checkpoints", "validation_definitions", "expectations")
_STORE_FILES = ("great_expectations.yml", "uncommitted/config_variables.yml")


@dataclass
class _Freshness:
    """A gate's proof of freshness: store contents when each of its own GX objects was last found fresh."""

    root: Path
    seen: dict[int, tuple[Any, bytes, Any]] = field(default_factory=dict)  # id -> (obj, contents, type)

    def contents(self) -> bytes:
        parts = [_read(self.root / name) for name in _STORE_FILES]
        for name in _STORE_DIRS:
            folder = self.root / name
            if folder.is_dir():
                parts += [f.name.encode() + b"\0" + _read(f) for f in sorted(folder.iterdir()) if f.is_file()]
        return b"\0\0".join(parts)


# Set for the duration of `DataGate.validate` only; the patches below are inert everywhere else.
_FRESH: ContextVar[_Freshness | None] = ContextVar("ctcd_gx_fresh", default=None)
_SERIALIZED: ContextVar[dict[int, Any] | None] = ContextVar("ctcd_gx_serialized", default=None)
_CONFIGURATIONS: ContextVar[dict[int, Any] | None] = ContextVar("ctcd_gx_configurations", default=None)


@dataclass(frozen=True)
class GateRun:
    """What one batch's GX run produced: the suite result as JSON, and its Data Docs page."""

    success: bool
    result: dict[str, Any]
    data_docs: str | None
    detailed: bool


def load_suite(path: Path) -> dict[str, Any]:
    """Read an id-free suite JSON file; ConfigError (one line) when it is missing or malformed."""
    if not path.is_file():
        raise ConfigError(
            f"expectation suite {path} not found: create it with `ctcd suite init --from BATCH`"
        )
    try:
        suite = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"expectation suite {path} is not valid JSON: {exc}") from exc
    if (
        not isinstance(suite, dict)
        or not suite.get("name")
        or not isinstance(suite.get("expectations"), list)
    ):
        raise ConfigError(f"expectation suite {path} needs a `name` and a list of `expectations`")
    return suite


def check_suite(suite: dict[str, Any], where: str = "suite") -> None:
    """Build the suite with GX to prove every expectation type and argument is valid; ConfigError if not."""
    gx = _gx()
    try:
        gx.ExpectationSuite(**_without_ids(suite))
    except Exception as exc:  # GX raises pydantic and its own errors for bad expectations
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{where} is not a valid GX suite: {first}") from exc


class DataGate:
    """One suite bound to a GX file context in the workspace; `validate` runs it on a DataFrame."""

    def __init__(self, ws: Workspace, suite: dict[str, Any], keep_results: int = 50, attach: bool = False):
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.ws = ws
        self.name = str(suite["name"])
        self.keep_results = keep_results
        self._unpublished: list[Any] = []
        self._fresh = _Freshness(ws.gx_root)
        self._site: Any = None  # the Data Docs site builder, built on first use
        ws.gx_root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", context_root_dir=str(ws.gx_root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        ctx = self.context
        if attach:  # a parallel worker's gate: the checkpoints another gate stored; the store is not written
            self.gate, self.details = (ctx.checkpoints.get(f"{self.name}-{k}") for k in ("gate", "details"))
            return
        self.context.variables.save()

        # The reviewed JSON is the source of truth: replace whatever the context holds under these names.
        for checkpoint in (f"{self.name}-gate", f"{self.name}-details"):
            _delete_if_present(ctx.checkpoints, checkpoint)
        _delete_if_present(ctx.validation_definitions, self.name)
        _delete_if_present(ctx.suites, self.name)
        try:
            gx_suite = ctx.suites.add(gx.ExpectationSuite(**_without_ids(suite)))
        except Exception as exc:
            raise ConfigError(f"expectation suite {self.name!r} is not a valid GX suite: {exc}") from exc

        try:
            source = ctx.data_sources.get(DATASOURCE)
        except (KeyError, ValueError):
            source = ctx.data_sources.add_pandas(DATASOURCE)
        try:
            asset = source.get_asset(self.name)
        except LookupError:
            asset = source.add_dataframe_asset(self.name)
        try:
            batch = asset.get_batch_definition(BATCH_DEFINITION)
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)

        definition = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=self.name, data=batch, suite=gx_suite)
        )
        # Two checkpoints on the same definition: a cheap pass/fail, and the details a rejection reports.
        self.gate, self.details = (
            ctx.checkpoints.add(
                gx.Checkpoint(
                    name=f"{self.name}-{kind}",
                    validation_definitions=[definition],
                    actions=[],
                    result_format=result_format,
                )
            )
            for kind, result_format in (("gate", "BOOLEAN_ONLY"), ("details", "BASIC"))
        )

    def validate(self, frame: pd.DataFrame, batch_id: str) -> GateRun:
        """Run the gate checkpoint on a batch; on failure, rerun for details. Old results are pruned first.

        The Data Docs page named in the returned run exists once `publish_docs()` has been called.
        """
        from great_expectations.core.run_identifier import RunIdentifier

        serialized: dict[int, Any] = {}
        tokens = (_FRESH.set(self._fresh), _SERIALIZED.set(serialized))
        try:
            # An explicit run time: GX would otherwise parse a date-like run name (2026-01-08) as the time.
            run_id = RunIdentifier(run_name=batch_id, run_time=datetime.now(UTC))
            self.prune(self.keep_results - 1)
            run = self.gate.run(batch_parameters={"dataframe": frame}, run_id=run_id)
            detailed = False
            if not run.success:
                self.prune(self.keep_results - 1)
                run_id = RunIdentifier(run_name=batch_id, run_time=datetime.now(UTC))
                run = self.details.run(batch_parameters={"dataframe": frame}, run_id=run_id)
                detailed = True
        finally:
            _FRESH.reset(tokens[0])
            _SERIALIZED.reset(tokens[1])
        identifier, result = next(iter(run.run_results.items()))
        self._unpublished.append(identifier)
        # The JSON dict GX's result store just wrote (see `_keep_stored_result`), else GX's own conversion.
        stored = serialized.get(id(result))
        as_json = stored[1] if stored is not None and stored[0] is result else result.to_json_dict()
        return GateRun(
            success=bool(run.success),
            result=as_json,
            data_docs=self._docs_url(identifier),
            detailed=detailed,
        )

    def publish_docs(self, every: bool = False) -> str:
        """Render the pages of the results since the last call (`every`: of all stored) and the index."""
        pending, self._unpublished = self._unpublished, []
        if every or pending:
            self.context.build_data_docs(site_names=[SITE], resource_identifiers=None if every else pending)
        return self.index_url()

    def _docs_url(self, identifier: Any) -> str | None:
        """The page a result will have once `publish_docs` has run.

        GX's `get_docs_sites_urls` builds the site builder from the project config on every call (ten YAML
        loads, ~0.01 s); the gate builds it once (GX 1.24's `_load_site_builder_from_site_config`, the
        method `get_docs_sites_urls` uses) and asks it for each page's URL.
        """
        try:
            if self._site is None:
                config = self.context.variables.data_docs_sites[SITE]
                self._site = self.context._load_site_builder_from_site_config(config)
            return self._site.get_resource_url(resource_identifier=identifier, only_if_exists=False)
        except Exception:  # a missing page must not turn a decision into a crash
            return None

    def index_url(self) -> str:
        """The Data Docs home page (a file:// URL)."""
        return (self.ws.gx_root / "uncommitted" / "data_docs" / SITE / "index.html").as_uri()

    def prune(self, keep: int) -> int:
        """Delete all but the newest `keep` stored validation results and their Data Docs pages."""
        uncommitted = self.ws.gx_root / "uncommitted"
        results_root = uncommitted / "validations"
        pages_root = uncommitted / "data_docs" / SITE / "validations"
        if not results_root.is_dir():
            return 0
        results = sorted(results_root.rglob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
        removed = 0
        for old in results[max(keep, 0) :]:
            page = pages_root / old.relative_to(results_root).with_suffix(".html")
            old.unlink(missing_ok=True)
            page.unlink(missing_ok=True)
            removed += 1
        for root in (results_root, pages_root):
            _remove_empty_dirs(root)
        return removed


def open_gate(ws: Workspace, suite_path: Path, keep_results: int = 50, attach: bool = False) -> DataGate:
    """Load the suite file and bind it to the workspace's GX context (`attach`: see `DataGate`)."""
    suite = load_suite(suite_path)
    try:
        return DataGate(ws, suite, keep_results=keep_results, attach=attach)
    except ConfigError:
        raise
    except Exception as exc:
        raise WorkFailed(f"could not open the GX context in {ws.gx_root}: {exc}") from exc


def _gx() -> Any:
    """Import great_expectations once, with the Decimal scan short-circuited (see `_fast_decimal_check`)."""
    import great_expectations as gx
    import great_expectations.util as gx_util

    if getattr(gx_util.does_ndarray_contain_decimal_dtype, "__name__", "") != "_fast_decimal_check":
        original = gx_util.does_ndarray_contain_decimal_dtype

        def _fast_decimal_check(data: Any) -> bool:
            # GX 1.24 scans every value in Python for decimal.Decimal before each mean, stdev and sum
            # (about 0.3 s per million values). Only object arrays can hold Decimals.
            dtype = getattr(data, "dtype", None)
            if dtype is not None and dtype.kind != "O":
                return False
            return bool(original(data))

        gx_util.does_ndarray_contain_decimal_dtype = _fast_decimal_check
    _project_column_domains()
    _memoize_configurations()
    _trust_unchanged_stores()
    _keep_stored_result()
    return gx


def _project_column_domains() -> None:
    """Give GX's column metrics a one-column frame, and skip its whole-frame fingerprint (once per process).

    GX 1.24's column map metrics filter the whole compute frame by the column's nulls
    (`df[df[col].notnull()]`: a copy of every column of the batch, for each of the suite's ~30 column
    expectations), although they then read that one column only; on a 1M-row batch those copies were the
    largest cost of the gate. Column-domain metrics only read `df[column]` (row conditions are applied
    before, and unexpected-index lookups read `get_domain_records`, not this frame), so the frame is
    projected to the column, index kept. GX also hashes the whole frame into a batch marker
    (`pandas_data_fingerprint`) on every run; ctcd records the file's sha256 instead.
    """
    from great_expectations.core.metric_domain_types import MetricDomainTypes
    from great_expectations.execution_engine import pandas_execution_engine as engine

    cls = engine.PandasExecutionEngine
    if getattr(cls.get_compute_domain, "__name__", "") == "_column_compute_domain":
        return
    original = cls.get_compute_domain

    def _column_compute_domain(self: Any, domain_kwargs: dict, domain_type: Any, accessor_keys: Any = None):
        data, compute, accessor = original(self, domain_kwargs, domain_type, accessor_keys)
        column = accessor.get("column")
        if MetricDomainTypes(domain_type) == MetricDomainTypes.COLUMN and column in data.columns:
            data = data[column].to_frame()  # a view of the column, not a copy
        return data, compute, accessor

    cls.get_compute_domain = _column_compute_domain
    engine.HASH_THRESHOLD = 0


def _memoize_configurations() -> None:
    """Build each expectation's configuration (and each configuration's expectation) once per GX validation.

    GX 1.24's `Expectation.configuration` is a property that serializes the pydantic model
    (`self.dict()`) into a new `ExpectationConfiguration` on every access, and the metric graph reads it
    for every domain and success key of every metric dependency (`_get_domain_kwargs`,
    `_get_success_kwargs`: ~65 builds per expectation per run); `get_metric_kwargs` rebuilds a validated
    pydantic expectation from the configuration for every metric (`to_domain_obj`). On a clean batch that
    was a third of the gate. Inside `Validator.graph_validate` these are GX's own fresh copies
    (`deepcopy`, then `to_domain_obj`) that nothing mutates afterwards, so the first build is reused
    there; everywhere else both are GX's.
    """
    from great_expectations.expectations.expectation import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.validator.validator import Validator

    if getattr(Validator.graph_validate, "__name__", "") == "_graph_validate_once":
        return
    build = Expectation.configuration.fget
    to_domain_obj = ExpectationConfiguration.to_domain_obj
    graph_validate = Validator.graph_validate

    def _graph_validate_once(self: Any, *args: Any, **kwargs: Any) -> Any:
        token = _CONFIGURATIONS.set({})
        try:
            return graph_validate(self, *args, **kwargs)
        finally:
            _CONFIGURATIONS.reset(token)

    _graph_validate_once.__wrapped__ = graph_validate  # GX's own, for the benchmark's A/B and the tests
    Expectation.configuration = property(_once_per_validation(build), doc=Expectation.configuration.__doc__)
    ExpectationConfiguration.to_domain_obj = _once_per_validation(to_domain_obj)
    Validator.graph_validate = _graph_validate_once


def _once_per_validation(build: Any) -> Any:
    def once(self: Any) -> Any:
        memo = _CONFIGURATIONS.get()
        if memo is None:
            return build(self)
        hit = memo.get(id(self))
        if hit is None or hit[0] is not self:  # the object is held in the memo: its id is not reused
            hit = memo[id(self)] = (self, build(self))
        return hit[1]

    return once


def _trust_unchanged_stores() -> None:
    """Skip GX's freshness checks of a gate's own checkpoints while the store files are byte-identical.

    GX 1.24 checks, on every `Checkpoint.run`, that the checkpoint, its validation definitions and their
    suite equal what the stores hold: it re-reads and deserializes each into pydantic objects and compares
    them (the suite four times per run), ~0.05 s of GX work per batch whatever its size. During
    `DataGate.validate` (only there), a gate's own objects, which ctcd never mutates after adding them,
    are checked by GX the first time and again whenever any byte of the store files changed (another
    process re-opened the gate, a suite was edited); otherwise GX's last success stands.
    """
    from great_expectations.checkpoint.checkpoint import Checkpoint
    from great_expectations.core.validation_definition import ValidationDefinition

    for cls in (Checkpoint, ValidationDefinition):
        if getattr(cls.is_fresh, "__name__", "") == "_is_fresh_unless_changed":
            continue
        cls.is_fresh = _fresh_unless_changed(cls.is_fresh)


def _fresh_unless_changed(is_fresh: Any) -> Any:
    def _is_fresh_unless_changed(self: Any) -> Any:
        fresh = _FRESH.get()
        if fresh is None:
            return is_fresh(self)
        contents = fresh.contents()  # read before GX checks, so a write during its check is seen next time
        seen = fresh.seen.get(id(self))
        if seen is not None and seen[0] is self and seen[1] == contents:
            return seen[2](errors=[])  # GX's own diagnostics type, without errors: what GX last said
        diagnostics = is_fresh(self)
        if diagnostics.success:
            fresh.seen[id(self)] = (self, contents, type(diagnostics))
        else:
            fresh.seen.pop(id(self), None)
        return diagnostics

    return _is_fresh_unless_changed


def _keep_stored_result() -> None:
    """Let `DataGate.validate` reuse the JSON dict GX's result store builds instead of building it again.

    GX 1.24's `ValidationResultsStore.serialize` is `schema.dumps(result.to_json_dict())`, and ctcd needs
    the same `to_json_dict()` (a deep copy and conversion of every result, ~0.02 s per run). During
    `DataGate.validate` the dict is kept, keyed by the result; the stored text is unchanged.
    """
    from great_expectations.data_context.store.validation_results_store import ValidationResultsStore

    if getattr(ValidationResultsStore.serialize, "__name__", "") == "_serialize_and_keep":
        return
    serialize = ValidationResultsStore.serialize

    def _serialize_and_keep(self: Any, value: Any) -> Any:
        kept = _SERIALIZED.get()
        if kept is None or self.cloud_mode:
            return serialize(self, value)
        as_json = value.to_json_dict()
        kept[id(value)] = (value, as_json)
        return self._expectationSuiteValidationResultSchema.dumps(as_json, indent=2, sort_keys=True)

    ValidationResultsStore.serialize = _serialize_and_keep


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b"-"


def _without_ids(suite: dict[str, Any]) -> dict[str, Any]:
    """A copy of a suite dict without GX ids, so the context assigns fresh ones."""
    out = {k: v for k, v in suite.items() if k != "id"}
    out["expectations"] = [{k: v for k, v in e.items() if k != "id"} for e in suite.get("expectations", [])]
    return out


def _delete_if_present(store: Any, name: str) -> None:
    try:
        store.delete(name)
    except Exception:  # GX raises different errors per store for "not there"; absence is what we want
        return


def _remove_empty_dirs(root: Path) -> None:
    if not root.is_dir():
        return
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            shutil.rmtree(d, ignore_errors=True)
