"""The batch catalog: reading files robustly, filing them with sidecars, listing and releasing them."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from ctcd.batches import (
    BatchUnreadable,
    file_batch,
    find_batch,
    force_release,
    landed_batches,
    quarantined_batches,
    read_batch,
    sha256_of,
    validated_batches,
)
from ctcd.config import CtcdConfig
from ctcd.errors import UsageError, WorkFailed
from ctcd.records import ExpectationFailure, ValidationOutcome
from ctcd.workspace import Workspace


def _frame(n: int = 20) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "application_id": np.arange(n, dtype=np.int64),
            "applied_at": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC"),
            "salary": rng.uniform(20_000, 150_000, n),
            "elevel": rng.integers(0, 5, n),
        }
    )


def _outcome(batch_id: str, accepted: bool) -> ValidationOutcome:
    failure = ExpectationFailure(expectation="expect_column_values_to_not_be_null", column="salary")
    return ValidationOutcome(
        batch_id=batch_id,
        suite="agrawal-loans",
        accepted=accepted,
        gx_success=accepted,
        reason="accepted: every expectation passed" if accepted else "rejected: salary has nulls",
        rows=20,
        failures=[] if accepted else [failure],
    )


def test_csv_round_trip_parses_timestamps(tmp_path, default_config: CtcdConfig):
    frame = _frame()
    path = tmp_path / "b.csv"
    frame.to_csv(path, index=False)
    back = read_batch(path, default_config)
    assert list(back.columns) == list(frame.columns)
    assert isinstance(back["applied_at"].dtype, pd.DatetimeTZDtype)
    assert (back["applied_at"] == frame["applied_at"]).all()


def test_parquet_read_keeps_dtypes(tmp_path, default_config: CtcdConfig):
    frame = _frame()
    path = tmp_path / "b.parquet"
    frame.to_parquet(path, index=False)
    back = read_batch(path, default_config)
    assert back.dtypes.astype(str).tolist() == frame.dtypes.astype(str).tolist()


@pytest.mark.parametrize(
    ("name", "data", "phrase"),
    [
        ("a.parquet", b"", "the file is empty (0 bytes)"),
        ("a.csv", b"   \n\n", "only whitespace"),
        ("a.parquet", b"PAR1 not really", "not a readable Parquet file"),
        ("a.txt", b"x", "unsupported file type '.txt'"),
        ("a.csv", "a,b\n1,é\n".encode("latin-1"), "not utf-8 text (byte 0xe9"),
        ("a.csv", b"a,b,a\n1,2,3\n", "duplicated column names ['a']"),
        ("a.csv", b"a,b,c\n1,2,3\n4,5", "the last line has 2 of 3 fields"),
    ],
)
def test_unreadable_files_raise_one_line(tmp_path, default_config: CtcdConfig, name, data, phrase):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BatchUnreadable) as err:
        read_batch(path, default_config)
    assert phrase in str(err.value) and "\n" not in str(err.value)


def test_utf8_bom_is_accepted(tmp_path, default_config: CtcdConfig):
    path = tmp_path / "a.csv"
    path.write_bytes("\ufeffapplication_id,salary\n1,2.5\n".encode())
    assert list(read_batch(path, default_config).columns) == ["application_id", "salary"]


def test_landed_batches_skips_partial_files_and_filters_by_date(workspace: Workspace):
    for name in (
        "2026-01-02.parquet",
        "2026-01-01.csv",
        "2026-01-03.parquet",
        ".hidden.parquet",
        "x.parquet.tmp",
    ):
        (workspace.landing / name).write_bytes(b"x")
    assert [p.name for p in landed_batches(workspace)] == [
        "2026-01-01.csv",
        "2026-01-02.parquet",
        "2026-01-03.parquet",
    ]
    assert [p.name for p in landed_batches(workspace, through="2026-01-02")] == [
        "2026-01-01.csv",
        "2026-01-02.parquet",
    ]


def test_filing_moves_bytes_and_writes_sidecars(workspace: Workspace):
    good = workspace.landing / "2026-01-01.parquet"
    bad = workspace.landing / "2026-01-02.parquet"
    _frame().to_parquet(good, index=False)
    bad.write_bytes(b"corrupt bytes")
    good_sha, bad_sha = sha256_of(good), hashlib.sha256(b"corrupt bytes").hexdigest()

    ok = file_batch(
        workspace, good, _outcome("2026-01-01", True), sha256=good_sha, data_docs="file:///x.html"
    )
    ko = file_batch(workspace, bad, _outcome("2026-01-02", False), sha256=bad_sha, result={"success": False})

    assert not good.exists() and not bad.exists()
    assert sha256_of(workspace.validated / "2026-01-01.parquet") == good_sha
    assert (workspace.quarantine / "2026-01-02.parquet").read_bytes() == b"corrupt bytes"
    sidecar = json.loads((workspace.validated / "2026-01-01.json").read_text())
    assert (
        sidecar["sha256"] == good_sha and sidecar["validated_at"] and sidecar["data_docs"] == "file:///x.html"
    )
    assert sidecar["result"] is None
    quarantined = json.loads((workspace.quarantine / "2026-01-02.json").read_text())
    assert (
        quarantined["result"] == {"success": False} and quarantined["reason"] == "rejected: salary has nulls"
    )
    assert [r.batch_id for r in validated_batches(workspace)] == ["2026-01-01"]
    assert [r.batch_id for r in quarantined_batches(workspace)] == ["2026-01-02"]
    assert ok.path(workspace).is_file() and ko.path(workspace).is_file()


def test_a_second_rejected_batch_with_the_same_id_is_kept_too(workspace: Workspace):
    for content in (b"one", b"two"):
        path = workspace.landing / "2026-01-02.csv"
        path.write_bytes(content)
        file_batch(workspace, path, _outcome("2026-01-02", False), sha256=hashlib.sha256(content).hexdigest())
    assert (workspace.quarantine / "2026-01-02.csv").read_bytes() == b"one"
    assert (workspace.quarantine / "2026-01-02__2.csv").read_bytes() == b"two"


def test_force_release_records_the_reason_and_moves_the_batch(workspace: Workspace):
    path = workspace.landing / "2026-01-02.parquet"
    _frame().to_parquet(path, index=False)
    file_batch(workspace, path, _outcome("2026-01-02", False), sha256=sha256_of(path))
    with pytest.raises(UsageError, match="needs a reason"):
        force_release(workspace, "2026-01-02", " ")

    record = force_release(workspace, "2026-01-02", "nulls are expected on holidays")

    assert record.status == "validated" and record.release and record.release.forced
    assert record.release.quarantine_reason == "rejected: salary has nulls"
    assert record.warnings[0].column == "salary"  # the failures it was admitted with
    assert (workspace.validated / "2026-01-02.parquet").is_file()
    assert not (workspace.quarantine / "2026-01-02.parquet").exists()
    assert (workspace.quarantine / "2026-01-02.released.json").is_file()
    assert find_batch(workspace, "2026-01-02").status == "validated"
    assert quarantined_batches(workspace) == []
    with pytest.raises(UsageError, match="not in quarantine"):
        force_release(workspace, "2026-01-02", "again")


def test_unknown_batch_is_a_usage_error(workspace: Workspace):
    (workspace.landing / "2026-01-09.parquet").write_bytes(b"x")
    with pytest.raises(UsageError, match="still in landing"):
        find_batch(workspace, "2026-01-09")
    with pytest.raises(UsageError, match="no validated or quarantined batch"):
        find_batch(workspace, "nope")


def test_validated_id_collision_is_refused(workspace: Workspace):
    for _ in range(2):
        path = workspace.landing / "2026-01-01.csv"
        path.write_bytes(b"a\n1\n")
        if (workspace.validated / "2026-01-01.csv").exists():
            with pytest.raises(WorkFailed, match="already in"):
                file_batch(workspace, path, _outcome("2026-01-01", True), sha256="s")
        else:
            file_batch(workspace, path, _outcome("2026-01-01", True), sha256="s")
    assert (workspace.landing / "2026-01-01.csv").exists()
