"""The `sql` source through SQLAlchemy: a table or query, one batch per value (or day, or month) of
`batch_column`; its labels from a table or query keyed by `dataset.id_column`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ctcd.config import CtcdConfig, SourceLabels, SqlSource
from ctcd.errors import ConfigError, WorkFailed
from ctcd.sources.batch import Batch, check_id
from ctcd.sources.files import value_id

SQL_CHUNK = 5000  # values per `IN (...)`: databases cap the number of bound parameters


@functools.lru_cache(maxsize=4)
def _engine(url: str) -> Any:
    """One SQLAlchemy engine (and connection pool) per URL for the life of the process."""
    import sqlalchemy as sa

    try:
        return sa.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise ConfigError(f"dataset.source.url: {str(exc).splitlines()[0]}") from exc


def _quote(engine: Any, name: str) -> str:
    prep = engine.dialect.identifier_preparer
    return ".".join(prep.quote(part) for part in name.split("."))


def _from(engine: Any, table: str | None, query: str | None) -> str:
    if table is not None:
        return _quote(engine, table)
    return f"({query.strip().rstrip(';')}) AS ctcd_source"  # type: ignore[union-attr]


@dataclass
class _Sql:
    engine: Any

    def read(self, statement: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import sqlalchemy as sa

        stmt = sa.text(statement)
        for name, value in (params or {}).items():
            if isinstance(value, list | tuple):
                stmt = stmt.bindparams(sa.bindparam(name, expanding=True))
        try:
            with self.engine.connect() as conn:
                return pd.read_sql(stmt, conn, params=params)
        except sa.exc.SQLAlchemyError as exc:
            raise WorkFailed(
                f"dataset.source: the database refused {statement[:120]!r}: {_sql_error(exc)}"
            ) from exc


def _sql_error(exc: Exception) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]


def sql_batches(src: SqlSource) -> list[Batch]:
    engine = _engine(src.url)
    col = _quote(engine, src.batch_column)
    values = _Sql(engine).read(f"SELECT DISTINCT {col} AS v FROM {_from(engine, src.table, src.query)}")["v"]
    groups: dict[str, list[Any]] = {}
    for value in values.dropna().tolist():
        if src.period == "value":
            batch_id = value_id(value)
        else:
            try:
                stamp = pd.Timestamp(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"dataset.source.batch_column: {value!r} is not a date, so period {src.period} cannot "
                    "apply"
                ) from exc
            batch_id = stamp.strftime("%Y-%m-%d" if src.period == "day" else "%Y-%m")
        groups.setdefault(check_id(batch_id, f"dataset.source.batch_column value {value!r}"), []).append(
            value
        )
    return [Batch(batch_id, values=tuple(vals)) for batch_id, vals in groups.items()]


def sql_rows(cfg: CtcdConfig, src: SqlSource, values: tuple[Any, ...]) -> pd.DataFrame:
    engine = _engine(src.url)
    column = _quote(engine, src.batch_column)
    statement = f"SELECT * FROM {_from(engine, src.table, src.query)} WHERE {column} IN :vals"
    sql = _Sql(engine)
    frame = pd.concat(
        [
            sql.read(statement, {"vals": list(values[i : i + SQL_CHUNK])})
            for i in range(0, len(values), SQL_CHUNK)
        ],
        ignore_index=True,
    )
    order = [c for c in (src.batch_column, cfg.dataset.id_column) if c in frame.columns]
    return frame.sort_values(order, kind="stable").reset_index(drop=True)


def sql_label_frames(url: str, labels: SourceLabels, id_column: str, ids: list[Any]) -> list[pd.DataFrame]:
    """The rows of the labels table or query whose `id_column` is one of `ids` (in chunks)."""
    engine = _engine(url)
    where = f"{_quote(engine, id_column)} IN :ids"
    sql = _Sql(engine)
    base = _from(engine, labels.table, labels.query)
    return [
        sql.read(f"SELECT * FROM {base} WHERE {where}", {"ids": ids[i : i + SQL_CHUNK]})
        for i in range(0, len(ids), SQL_CHUNK)
    ]
