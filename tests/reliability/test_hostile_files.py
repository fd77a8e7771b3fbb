"""Guarantee 5: hostile batch files are quarantined with a clear reason; nothing outside the workspace is
read or written.

One ingest run (`tasks.ingest.ingest`, the code the flow and `ctcd validate` share) judges a clean batch
and every hostile file side by side: formula-like strings, a 5 MB cell, 100k columns (CSV) and 5k
columns (Parquet), deeply nested JSON, a deeply nested Parquet column, Parquet whose pandas metadata lies,
CSV bytes named .parquet, and symbolic links out of the landing area (to a valid batch, and dangling).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ctcd.batches import BatchRecord, find_batch, force_release, quarantined_batches, validated_batches
from ctcd.config import CtcdConfig
from ctcd.errors import UsageError
from ctcd.stream.scenario import generate_day
from ctcd.workspace import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FORMULAS = ['=HYPERLINK("http://evil.example/x","click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+1", "-2+3"]
MAX_REASON = 1000  # a reason is one readable line, whatever the file holds


def _snapshot(folder: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Path -> (size, mtime) of every entry under `folder` except `skip` (the workspace)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) != skip]
        for name in filenames:
            st = os.lstat(Path(dirpath, name))
            out[str(Path(dirpath, name))] = (st.st_size, st.st_mtime_ns)
    return out


def _nested_column(rows: int, depth: int) -> pa.Array:
    kind: pa.DataType = pa.int64()
    value: object = 1
    for _ in range(depth):
        kind, value = pa.list_(kind), [value]
    return pa.array([value] * rows, type=kind)


def land_hostile_files(cfg: CtcdConfig, ws: Workspace, outside: Path) -> dict[str, str]:
    """Write the clean batch and the hostile files into landing/; return batch id -> what it is."""
    good = generate_day(cfg, 1).features
    landing = ws.landing
    ds = cfg.dataset
    column = ds.numerical_features[0]
    what = {}

    good.to_parquet(landing / "2026-01-01.parquet", index=False)
    what["2026-01-01"] = "clean"

    formulas = good.copy()
    formulas[column] = formulas[column].astype(object)
    for i, formula in enumerate(FORMULAS):
        formulas.loc[i, column] = formula
    formulas[ds.id_column] = formulas[ds.id_column].astype(object)
    formulas.loc[len(FORMULAS), ds.id_column] = FORMULAS[0]
    formulas.to_csv(landing / "2026-02-01.csv", index=False)
    what["2026-02-01"] = "formulas"

    wide_row = good.copy()
    wide_row[column] = wide_row[column].astype(object)
    wide_row.loc[0, column] = "9" * 5_000_000
    wide_row.to_csv(landing / "2026-02-02.csv", index=False)
    what["2026-02-02"] = "5 MB cell"

    n = 100_000
    header = ",".join(f"c{i}" for i in range(n))
    (landing / "2026-02-03.csv").write_text(header + "\n" + ("," * (n - 1) + "0\n") * 3, encoding="utf-8")
    what["2026-02-03"] = "100k columns"

    columns = [pa.array(np.zeros(2))] * 5000
    pq.write_table(
        pa.Table.from_arrays(columns, names=[f"c{i}" for i in range(5000)]), landing / "2026-02-04.parquet"
    )
    what["2026-02-04"] = "5k Parquet columns"

    (landing / "2026-02-05.json").write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    what["2026-02-05.json"] = "nested JSON"

    nested = pa.Table.from_pandas(good, preserve_index=False)
    nested = nested.append_column("nested", _nested_column(len(good), 64))
    pq.write_table(nested, landing / "2026-02-06.parquet")
    what["2026-02-06"] = "nested Parquet column"

    lying = pa.Table.from_pandas(good, preserve_index=False)
    meta = json.loads(lying.schema.metadata[b"pandas"])
    meta["index_columns"] = ["no_such_column"]
    pq.write_table(
        lying.replace_schema_metadata({b"pandas": json.dumps(meta).encode()}), landing / "2026-02-07.parquet"
    )
    what["2026-02-07"] = "lying pandas metadata"

    (landing / "2026-02-08.parquet").write_bytes(good.head(50).to_csv(index=False).encode())
    what["2026-02-08"] = "CSV named .parquet"

    (landing / "2026-02-09.parquet").symlink_to(outside)
    what["2026-02-09"] = "symlink to a valid batch outside"
    (landing / "2026-02-10.csv").symlink_to(outside.parent / "does-not-exist.csv")
    what["2026-02-10"] = "dangling symlink"
    return what


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory, default_config: CtcdConfig):
    """One ingest run over the clean batch and every hostile file."""
    from tasks.ingest import ingest

    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        ws = Workspace.open(root / "home")
        # Outside the workspace: a valid batch a symlink points at (were it followed, it would pass).
        outside = root / "outside" / "secret.parquet"
        outside.parent.mkdir()
        generate_day(default_config, 2).features.to_parquet(outside, index=False)
        what = land_hostile_files(default_config, ws, outside)
        before = _snapshot(root, skip=ws.root)
        report = ingest(default_config, ws)
        after = _snapshot(root, skip=ws.root)
        yield ws, report, what, outside, before, after


def _record(ws: Workspace, batch_id: str) -> BatchRecord:
    return BatchRecord.model_validate_json((ws.quarantine / f"{batch_id}.json").read_text(encoding="utf-8"))


def test_only_the_clean_batch_passes_and_every_hostile_file_is_quarantined(ingested):
    ws, report, what, *_ = ingested
    decided = {d.batch_id: d for d in report.decisions}
    assert set(decided) == set(what), "a landed file was skipped or invented"
    assert [d.batch_id for d in report.accepted] == ["2026-01-01"]
    assert {r.batch_id for r in quarantined_batches(ws)} == set(what) - {"2026-01-01"}
    assert [r.batch_id for r in validated_batches(ws)] == ["2026-01-01"]
    assert list(ws.landing.iterdir()) == []
    for d in report.rejected:
        assert d.reason.startswith("rejected:") and "\n" not in d.reason, (what[d.batch_id], d.reason)
        assert len(d.reason) <= MAX_REASON, (what[d.batch_id], len(d.reason))


@pytest.mark.parametrize(
    ("batch_id", "phrases"),
    [
        ("2026-02-01", ["expect_column_values_to_be_in_type_list", "salary"]),
        ("2026-02-02", ["expect_column_values_to_be_in_type_list", "salary"]),
        ("2026-02-03", ["100000 columns", "refused unread"]),
        ("2026-02-04", ["5000 columns", "refused unread"]),
        ("2026-02-05.json", ["unsupported file type '.json'"]),
        ("2026-02-06", ["unexpected columns ['nested']"]),
        ("2026-02-07", ["Parquet columns cannot be converted"]),
        ("2026-02-08", ["not a readable Parquet file"]),
        ("2026-02-09", ["symbolic link", "not followed"]),
        ("2026-02-10", ["symbolic link", "not followed"]),
    ],
)
def test_each_rejection_names_its_cause(ingested, batch_id: str, phrases: list[str]):
    _, report, what, *_ = ingested
    reason = next(d.reason for d in report.decisions if d.batch_id == batch_id)
    for phrase in phrases:
        assert phrase in reason, f"{what[batch_id]}: {reason}"


def test_formula_strings_are_kept_as_inert_text_only_inside_the_workspace(ingested):
    ws, *_ = ingested
    record = _record(ws, "2026-02-01")
    kept = pd.read_csv(ws.quarantine / record.file, dtype=str)
    assert FORMULAS[0] in set(kept[kept.columns[0]]) | set(kept.stack())
    assert record.sha256 == hashlib.sha256((ws.quarantine / record.file).read_bytes()).hexdigest()


def test_symlinks_are_quarantined_as_links_without_reading_their_target(ingested):
    ws, _, _, outside, before, after = ingested
    record = _record(ws, "2026-02-09")
    moved = ws.quarantine / record.file
    assert moved.is_symlink() and Path(os.readlink(moved)) == outside
    # Had the target been read, the lineage hash would be the target's and `rows` its row count.
    assert record.sha256 != hashlib.sha256(outside.read_bytes()).hexdigest()
    assert record.rows is None and record.result is None
    dangling = _record(ws, "2026-02-10")
    assert (ws.quarantine / dangling.file).is_symlink()
    assert find_batch(ws, "2026-02-10").status == "quarantined"
    with pytest.raises(UsageError, match="symbolic link"):
        force_release(ws, "2026-02-09", reason="trying to admit a link")
    assert before == after, "a file outside the workspace was created, changed or removed"


def test_a_batch_id_cannot_point_outside_the_workspace(ingested):
    ws, *_ = ingested
    escape = ws.root.parent / "escape.json"
    escape.write_text(_record(ws, "2026-02-01").model_dump_json(), encoding="utf-8")
    for bad in ("../../escape", "../escape", "..", "a/b"):
        with pytest.raises(UsageError, match="not a batch id"):
            find_batch(ws, bad)
