"""Where a dataset's batches and labels come from (`dataset.source`): stream, files, one file, SQL."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from ctcd.config.base import Strict


class SourceLabels(Strict):
    """Where a source's labels come from; they arrive `dataset.label_delay_batches` batches later.

    No `path`, `table` or `query`: the batch's own target column (stripped from the landed features).
    `path`: label files (Parquet or CSV, `dataset.id_column` + `dataset.target`): a file named
    `<batch_id>.parquet|csv` holds that batch's labels, other files are matched to batches by id.
    `table` or `query`: the same two columns from the `sql` source's database.
    """

    path: str | None = None
    table: str | None = None
    query: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> SourceLabels:
        if sum(v is not None for v in (self.path, self.table, self.query)) > 1:
            raise ValueError("give at most one of path, table or query")
        return self

    @property
    def from_batch(self) -> bool:
        """Whether the labels are the target column of the batches themselves."""
        return self.path is None and self.table is None and self.query is None


class _ReadOptions(Strict):
    sep: str = Field(default=",", min_length=1, description="CSV field separator")
    encoding: str = Field(default="utf-8", description="CSV text encoding")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options, e.g. {client_kwargs: {endpoint_url: ...}} for S3"
    )
    labels: SourceLabels | None = Field(
        default=None, description="null: labels are dropped into $CTCD_HOME/labels/ by hand"
    )


class StreamSource(Strict):
    """The built-in generated stream (the `stream` section): today's behaviour, landed by date."""

    kind: Literal["stream"]


class FilesSource(_ReadOptions):
    """Batch files `<batch_id>.parquet|csv` (id = file stem) in a directory or matching a glob; local
    paths or any fsspec URL (s3://, gs://, memory://, file://)."""

    kind: Literal["files"]
    path: str


class SplitConfig(Strict):
    """How one time-ordered file is cut into batches: `rows` per batch, or runs of a period `column`.

    `kind: month_name` (values like may, jun): each run of equal values is a batch whose id is the
    ISO month (YYYY-MM) with that name after the previous batch's, the first being `start`.
    `kind: value`: each run's value is its batch id (a value may not come back after another one).
    """

    rows: int | None = Field(default=None, ge=1)
    column: str | None = None
    kind: Literal["month_name", "value"] = "value"
    start: str | None = Field(default=None, pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM")

    @model_validator(mode="after")
    def _one_way(self) -> SplitConfig:
        if (self.rows is None) == (self.column is None):
            raise ValueError("give exactly one of rows or column")
        if self.column is not None and self.kind == "month_name" and self.start is None:
            raise ValueError("a month_name split needs start: the first batch's month, YYYY-MM")
        return self


class FileSource(_ReadOptions):
    """One time-ordered Parquet or CSV file (local or fsspec URL) cut into batches by `split`."""

    kind: Literal["file"]
    path: str
    split: SplitConfig
    id_from_row_number: bool = Field(
        default=False, description="generate dataset.id_column as the row's number in the file (0-based)"
    )


class SqlSource(Strict):
    """A table or query in any SQLAlchemy database; a batch is one value (or day/month) of batch_column."""

    kind: Literal["sql"]
    url: str = Field(
        description="SQLAlchemy URL, e.g. sqlite:///shop.db (next to this file) or postgresql+psycopg://..."
    )
    table: str | None = None
    query: str | None = None
    batch_column: str
    period: Literal["value", "day", "month"] = Field(
        default="value", description="value: each distinct value is a batch; day/month: its date or month"
    )
    labels: SourceLabels | None = None

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of table or query")
        if self.labels is not None and self.labels.path is not None:
            raise ValueError("labels of a sql source come from its batches, a table or a query, not a path")
        return self


Source = Annotated[StreamSource | FilesSource | FileSource | SqlSource, Field(discriminator="kind")]
