"""Real data nobody here wrote, as a new user meets it: UCI Bank Marketing through the whole loop by config.

`configs/examples/bank-marketing.yaml` reads one ';'-separated file of 41,188 calls as 26 monthly batches
(10 to 7,763 rows, ids 2008-05 .. 2010-11), text categories, a yes/no target whose labels arrive one batch
late. Every step is the command line a user types, in a fresh workspace: `data status` lists the batches,
`suite init` learns the contract from the first three months, `ctcd run` produces a champion by itself,
`ctcd serve` (a real BentoML server on 127.0.0.1) answers rows with text categories, and `ctcd monitor
--json` scores the served month on its arrived labels. Then every month is ingested: at most one genuine
batch may be quarantined.

The data lives beside the checkout (`../shared/data/bank-marketing/`, see its SOURCE.md); CI has it. A
checkout without it skips this test, except under CI, where a missing data set is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from ctcd.net import free_port
from tests.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]

EXAMPLE = REPO / "configs" / "examples" / "bank-marketing.yaml"
DATA = REPO.parent / "shared" / "data" / "bank-marketing" / "bank-additional-full.csv"
CTCD = str(Path(sys.executable).parent / "ctcd")

if not DATA.is_file():
    if os.environ.get("CI"):
        raise RuntimeError(f"{DATA} is missing: CI must provide ../shared/data/bank-marketing")
    pytest.skip(f"the bank-marketing data set is not beside this checkout ({DATA})", allow_module_level=True)


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The example config (its suite written to a fresh place) and the environment of a fresh workspace."""
    root = tmp_path_factory.mktemp("bank")
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    raw["dataset"]["source"]["path"] = str(DATA)
    raw["gates"]["data"]["suite"] = str(root / "bank-marketing.json")
    raw["serving"]["port"] = free_port()
    config = root / "bank-marketing.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = {
        **os.environ,
        "CTCD_HOME": str(root / "home"),
        "PREFECT_HOME": str(root / "home" / "prefect"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("CTCD_API_KEY", None)
    return config, env


def ctcd(bank: tuple[Path, dict[str, str]], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    config, env = bank
    return subprocess.run(
        [CTCD, *args, "--config", str(config)], env=env, capture_output=True, text=True, timeout=timeout
    )


def ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def statuses(bank: tuple[Path, dict[str, str]]) -> dict[str, str]:
    """Where each batch is, from `ctcd data status --json`."""
    listed = json.loads(ok(ctcd(bank, "data", "status", "--json")))
    return {b["batch_id"]: b["at"] for b in listed["batches"]}


def rows_of(path: Path, target: pd.Series | None = None) -> list[dict]:
    """A landed batch's rows as JSON a client copies them (its `other_columns`, and the target when given:
    both are accepted and ignored)."""
    frame = pd.read_parquet(path)
    if target is not None:
        frame = frame.assign(y=target.to_numpy())
    return json.loads(frame.to_json(orient="records"))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_bank_marketing_reaches_a_served_champion_and_monitoring_by_config_alone(bank):
    home = Path(bank[1]["CTCD_HOME"])

    # 1. The batches are listed before anything landed: 26 months, as the file holds them.
    at = statuses(bank)
    assert len(at) == 26 and min(at) == "2008-05" and max(at) == "2010-11" and "2008-09" not in at
    assert set(at.values()) == {"source"}

    # 2. A contract learned from the first three months.
    ok(ctcd(bank, "data", "land", "--through", "2008-07"))
    suite = ok(ctcd(bank, "suite", "init", "--from", str(home / "landing" / "*.parquet")))
    assert "3 batch(es)" in suite, suite

    # 3. One command: ingest through 2009, train, gate, and a champion with no hand-holding.
    ok(ctcd(bank, "run", "--through", "2009-12"))
    status = ok(ctcd(bank, "status"))
    assert "champion: version" in status, status

    # 4. The champion serves rows with text categories (and the target they were copied with).
    port = yaml.safe_load(bank[0].read_text(encoding="utf-8"))["serving"]["port"]
    server = subprocess.Popen(
        [CTCD, "serve", "--config", str(bank[0])],
        env=bank[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert server.poll() is None, "ctcd serve exited"
        ok(ctcd(bank, "data", "land", "--through", "2010-04"))  # March and April land; their labels lag
        labels = pd.read_parquet(home / "labels" / "2010-03.parquet")
        march = home / "landing" / "2010-03.parquet"
        one = {
            **rows_of(march, target=pd.read_parquet(march).merge(labels, on="row")["y"])[0],
            "as_of": "2010-03-01",
        }
        assert isinstance(one["job"], str) and one["y"] in ("yes", "no") and "duration" in one
        answer = httpx.post(f"{url}/predict", json={"rows": [one]}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert 0.0 <= answer.json()[0]["probability"] <= 1.0
        refused = httpx.post(f"{url}/predict", json={"rows": [{**one, "coupon": "x"}]}, timeout=60)
        assert refused.status_code == 400 and "coupon" in refused.text  # a field the dataset does not have
        for month in ("2010-03", "2010-04"):  # a month of traffic each, as of a day inside it
            rows = [{**r, "as_of": f"{month}-15"} for r in rows_of(home / "landing" / f"{month}.parquet")]
            served = httpx.post(f"{url}/predict_batch", json={"rows": rows}, timeout=300)
            assert served.status_code == 200, served.text
        server.terminate()  # SIGTERM to `ctcd serve` alone, as a supervisor stops it: it stops its server too
        assert server.wait(timeout=120) == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _group_alive(server.pid):
            time.sleep(0.5)
        assert not _group_alive(server.pid), "the BentoML server outlived `ctcd serve`"
    finally:
        if _group_alive(server.pid):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=120)

    # 5. Monitoring the latest month scores March's served predictions on March's arrived labels.
    verdict = json.loads(ok(ctcd(bank, "monitor", "--json")))
    assert verdict["batch"] == "2010-04"
    performance = verdict["signals"]["performance"]
    assert performance["evaluated"], performance
    assert performance["labelled_rows"] == 265 and 0.0 < performance["metrics"]["accuracy"] <= 1.0
    assert verdict["decision"]["action"] in ("none", "alert", "retrain")

    # 6. The whole history through the gate: at most one genuine month quarantined.
    ok(ctcd(bank, "run"))
    at = statuses(bank)
    assert set(at.values()) <= {"validated", "quarantine"} and len(at) == 26
    assert sum(v == "quarantine" for v in at.values()) <= 1, at
