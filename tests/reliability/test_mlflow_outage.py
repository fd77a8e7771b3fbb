"""Guarantee 2: the MLflow server stops during a run.

The server is the one `ctcd up` starts (`ctcd.app.stack.start_mlflow`), on a free port, and the config points
`tracking.tracking_uri` at it. A short outage (the server is restarted while a champion move waits) is
ridden out by the MLflow client's retries; a lasting one fails with one line naming the server, and the
registry never has an alias on a version whose model cannot be loaded.
`tracking.retry_seconds` bounds how long each MLflow call waits (default 120 s, which covers the short
outage); the lasting outage uses a 1 s window so that it fails fast.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from ctcd import audit, registry, tracking
from ctcd.config import CtcdConfig, load_config
from ctcd.errors import DependencyUnavailable
from ctcd.net import free_port
from ctcd.workspace import Workspace
from tests.integration.test_serving import make_rows, register_version
from tests.reliability.conftest import stack_mlflow, write_stack_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


class MlflowStack:
    """The MLflow server of a workspace, which the tests stop and start again."""

    def __init__(self, root: Path) -> None:
        port = free_port()
        self.config = write_stack_config(root, tracking_uri=f"http://127.0.0.1:{port}", mlflow_port=port)
        self.cfg = load_config(self.config)
        self.ws = Workspace.open(root / "home")
        self._server = None

    def start(self) -> None:
        self._server = stack_mlflow(self.cfg, self.ws)
        self._server.__enter__()

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.__exit__(None, None, None)


@pytest.fixture(scope="module")
def mlflow_stack(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("outage")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTCD_HOME", str(root / "home"))
        stack = MlflowStack(root)
        stack.start()
        try:
            first = register_version(stack.cfg, stack.ws, seed=1)
            registry.Registry(stack.cfg, stack.ws).promote(first, reason="first champion")
            yield stack
        finally:
            stack.stop()


def test_a_short_outage_is_ridden_out(mlflow_stack: MlflowStack):
    cfg, ws = mlflow_stack.cfg, mlflow_stack.ws
    second = register_version(cfg, ws, seed=2)
    mlflow_stack.stop()
    down_at = time.monotonic()
    restart = threading.Timer(3.0, mlflow_stack.start)
    restart.start()
    try:
        entry = registry.Registry(cfg, ws).promote(second, reason="promoted across an MLflow restart")
    finally:
        restart.join()
    assert time.monotonic() - down_at > 3.0, "the call did not wait for the server"
    assert entry["version"] == second.version
    assert registry.Registry(cfg, ws).require_champion().version == second.version


def small_candidate(cfg: CtcdConfig, seed: int) -> tracking.CandidateRun:
    """A real (tiny) candidate for `registry.log_candidate`: model, metrics, evaluation, reference."""
    from sklearn.linear_model import LogisticRegression

    x = make_rows(cfg, 200, seed)
    y = (x[cfg.dataset.numerical_features[0]] > x[cfg.dataset.numerical_features[0]].median()).astype(int)
    return tracking.CandidateRun(
        model=LogisticRegression(max_iter=1000).fit(x, y),
        params={"C": 1.0},
        metrics={"roc_auc": 0.9},
        evaluation={"metrics": {"roc_auc": 0.9}},
        reference=x.assign(**{cfg.dataset.target: y}),
        input_example=x.head(3),
        batches=[],
        config_yaml="written by the test\n",
        tags={"ctcd.reason": "outage test"},
    )


def test_a_lasting_outage_cuts_a_registration_and_fails_with_one_clear_line(
    mlflow_stack: MlflowStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    import yaml

    from ctcd.app.cli import main

    ws = mlflow_stack.ws
    before = registry.Registry(mlflow_stack.cfg, ws).require_champion()
    moves_before = audit.alias_history(ws, alias=None)
    raw = yaml.safe_load(mlflow_stack.config.read_text(encoding="utf-8"))
    raw["tracking"]["retry_seconds"] = 1
    impatient = mlflow_stack.config.with_name("impatient.yaml")
    impatient.write_text(yaml.safe_dump(raw), encoding="utf-8")
    cfg = load_config(impatient)
    outcome: list[object] = []

    def register() -> None:
        try:
            outcome.append(registry.Registry(cfg, ws).log_candidate(small_candidate(cfg, seed=4)))
        except Exception as exc:  # the outage may cut it anywhere
            outcome.append(exc)

    try:
        # The server goes away one second into a registration (log, register, tags, `challenger`).
        worker = threading.Thread(target=register)
        worker.start()
        time.sleep(1.0)
        mlflow_stack.stop()
        worker.join(timeout=300)
        assert outcome, "the registration neither finished nor failed"

        with pytest.raises(DependencyUnavailable) as caught:
            registry.Registry(cfg, ws).promote(before, reason="must not happen")
        message = str(caught.value)
        assert "\n" not in message and cfg.tracking.tracking_uri in message, message

        monkeypatch.setattr(sys, "argv", ["ctcd", "status", "-c", str(impatient)])
        capsys.readouterr()  # only the CLI's own output below: the registration may have printed before
        with pytest.raises(SystemExit) as exited:
            main()
        err = capsys.readouterr().err.strip()
        assert exited.value.code == 1
        assert len(err.splitlines()) == 1 and "did not answer" in err, err
    finally:
        mlflow_stack.start()

    cfg = mlflow_stack.cfg  # the default retry window again
    assert registry.Registry(cfg, ws).require_champion().version == before.version
    moves = audit.alias_history(ws, alias=None)[len(moves_before) :]
    assert [m["alias"] for m in moves] in ([], [registry.CHALLENGER]), moves
    # Nothing half-registered: each alias points at a version whose model (and evidence) is all there.
    for alias in (registry.CHAMPION, registry.CHALLENGER):
        ref = registry.Registry(cfg, ws).by_alias(alias)
        if ref is None:
            continue
        assert hasattr(registry.Registry(cfg, ws).load_model(ref), "predict_proba"), f"{alias}: no model"
        if alias == registry.CHALLENGER:
            assert len(registry.Registry(cfg, ws).load_reference(ref)) == 200, f"{alias}: no reference sample"
            assert ref.tags.get("ctcd.window") and ref.description, f"{alias}: tags were never written"
