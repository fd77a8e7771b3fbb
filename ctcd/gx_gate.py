"""The Great Expectations seam: the only module that imports great_expectations (lazily: it costs 6-10 s).

GX state lives in a file context under `ws.gx_root`: the suite (loaded from its reviewed, id-free JSON on
every open), a pandas dataframe asset, a validation definition, and two checkpoints:

- `<suite>-gate` (BOOLEAN_ONLY) runs on every batch; its result is the decision of record.
- `<suite>-details` (BASIC: unexpected counts, percents, observed values, a few examples) runs only when
  the gate failed, so a clean batch never pays for the detail and a failing one gets a readable record.

Data Docs (`ws.gx_root/uncommitted/data_docs/local_site/`) are rendered by `publish_docs()` once per
ingest for all the results of the run, not by a checkpoint action per batch: rendering a page and the
index costs more than validating a daily batch, and GX compiles its templates again on every build.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ctcd.errors import ConfigError, WorkFailed
from ctcd.workspace import Workspace

DATASOURCE = "ctcd"
BATCH_DEFINITION = "whole-batch"
SITE = "local_site"


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

    def __init__(self, ws: Workspace, suite: dict[str, Any], keep_results: int = 50) -> None:
        gx = _gx()
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.ws = ws
        self.name = str(suite["name"])
        self.keep_results = keep_results
        self._unpublished: list[Any] = []
        ws.gx_root.mkdir(parents=True, exist_ok=True)
        self.context = gx.get_context(mode="file", context_root_dir=str(ws.gx_root))
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.context.variables.save()
        ctx = self.context

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
        self.gate = ctx.checkpoints.add(
            gx.Checkpoint(
                name=f"{self.name}-gate",
                validation_definitions=[definition],
                actions=[],
                result_format="BOOLEAN_ONLY",
            )
        )
        self.details = ctx.checkpoints.add(
            gx.Checkpoint(
                name=f"{self.name}-details",
                validation_definitions=[definition],
                actions=[],
                result_format="BASIC",
            )
        )

    def validate(self, frame: pd.DataFrame, batch_id: str) -> GateRun:
        """Run the gate checkpoint on a batch; on failure, rerun for details. Old results are pruned first.

        The Data Docs page named in the returned run exists once `publish_docs()` has been called.
        """
        from great_expectations.core.run_identifier import RunIdentifier

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
        identifier, result = next(iter(run.run_results.items()))
        self._unpublished.append(identifier)
        return GateRun(
            success=bool(run.success),
            result=result.to_json_dict(),
            data_docs=self._docs_url(identifier),
            detailed=detailed,
        )

    def publish_docs(self) -> str:
        """Render the Data Docs pages of every result since the last call, and the index; return its URL."""
        pending, self._unpublished = self._unpublished, []
        if pending:
            self.context.build_data_docs(site_names=[SITE], resource_identifiers=pending)
        return self.index_url()

    def _docs_url(self, identifier: Any) -> str | None:
        """The page a result will have once `publish_docs` has run."""
        try:
            sites = self.context.get_docs_sites_urls(
                resource_identifier=identifier, site_name=SITE, only_if_exists=False
            )
        except Exception:  # a missing page must not turn a decision into a crash
            return None
        return sites[0].get("site_url") if sites else None

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


def open_gate(ws: Workspace, suite_path: Path, keep_results: int = 50) -> DataGate:
    """Load the suite file and bind it to the workspace's GX context."""
    suite = load_suite(suite_path)
    try:
        return DataGate(ws, suite, keep_results=keep_results)
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
