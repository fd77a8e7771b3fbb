"""Guarantee 7: servers bind loopback by default, MLflow keeps its host-header check, no secret leaks.

- The prediction server (`start_server`), and the MLflow and Prefect servers as `ctcd up` starts them
  (`ctcd.app.stack`), accept connections on 127.0.0.1 only when the config does not say otherwise.
- MLflow refuses a request whose Host header names another machine (DNS rebinding protection).
- The API key lives only in the environment: no config field holds a key, and after authenticated (and
  wrongly authenticated) traffic the key appears nowhere in the workspace (logs, prediction log, runs).
- The repository holds no credential: a scan for private keys, cloud and platform tokens, passwords in
  URLs and literal `key = "..."` assignments outside tests.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from ctcd.config import CtcdConfig, OrchestrationConfig, ServingConfig, load_config
from ctcd.net import free_port
from ctcd.workspace import Workspace
from tests.conftest import REPO
from tests.integration.test_serving import json_rows, make_rows
from tests.live_stack import PrefectServer
from tests.reliability.conftest import (
    API_KEY,
    Served,
    listening_addresses,
    stack_mlflow,
    write_stack_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

LOOPBACK = {"127.0.0.1", "::1"}
SKIP_DIRS = {".git", ".venv", ".ctcd", "__pycache__", ".pytest_cache", ".ruff_cache", "node_modules", ".gpu"}
MAX_SCANNED_BYTES = 2_000_000

# High-confidence credential shapes: flagged anywhere, tests included.
TOKENS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "OpenAI/Anthropic key": re.compile(r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{32,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z]{34}\b"),
}
# Password in a URL, except documented placeholders.
URL_PASSWORD = re.compile(r"[a-z0-9+.-]+://[^/\s:@'\"]+:([^/\s@'\"]+)@")
# `${POSTGRES_PASSWORD:-ctcd}`: a committed fallback password (compose, shell).
SECRET_DEFAULT = re.compile(r"\$\{(\w*(?:PASSWORD|SECRET|TOKEN|KEY)\w*):?-([^}]+)\}")
PLACEHOLDERS = {
    "pw",
    "password",
    "pass",
    "secret",
    "changeme",
    "<password>",
    "PASSWORD",
    "${POSTGRES_PASSWORD}",
}
# A literal value assigned to a key-like name (outside tests, where fixtures use fake keys on purpose).
ASSIGNED_SECRET = re.compile(
    r"""(?i)\b[\w.-]*(?:api[_-]?key|secret|password|passwd|token)\b\s*[:=]\s*["']([^"'\s$\{]{8,})["']"""
)


def _text_files(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink() or path.stat().st_size > MAX_SCANNED_BYTES:
                continue
            data = path.read_bytes()
            if b"\0" in data[:4096]:
                continue  # binary
            yield path, data.decode("utf-8", errors="replace")


def find_leaks(root: Path, literal: str | None = None) -> list[str]:
    """`file:line: what` for every credential-like string under `root` (and every `literal` occurrence)."""
    leaks = []
    for path, text in _text_files(root):
        in_tests = "tests" in path.relative_to(root).parts
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{path.relative_to(root)}:{number}"
            leaks += [f"{where}: {what}" for what, rx in TOKENS.items() if rx.search(line)]
            leaks += [
                f"{where}: password in a URL"
                for m in URL_PASSWORD.finditer(line)
                if m.group(1) not in PLACEHOLDERS and not m.group(1).startswith("${")
            ]
            if not in_tests and ASSIGNED_SECRET.search(line):
                leaks.append(f"{where}: literal secret assigned")
            if literal and literal in line:
                leaks.append(f"{where}: the API key itself")
    return leaks


def test_the_scanner_finds_what_it_looks_for(tmp_path: Path):
    fake = "AKIA" + "ABCDEFGHIJKLMNOP"
    (tmp_path / "a.yaml").write_text(f"aws: {fake}\nurl: postgresql://app:" + "hunter22@db/x\n")
    (tmp_path / "b.py").write_text('API_KEY = "abcdef123456"\nok = "postgresql://user:pw@host/db"\n')
    (tmp_path / "c.log").write_text("request with Bearer the-live-key\n")
    (tmp_path / "d.yaml").write_text("pw: ${DB_PASSWORD:-hunter2}\nok: ${DB_PASSWORD:?set it}\n")
    assert secret_defaults(tmp_path) == ["d.yaml:1: DB_PASSWORD"]
    leaks = find_leaks(tmp_path, literal="the-live-key")
    assert sorted(leak.split(": ", 1)[1] for leak in leaks) == [
        "AWS access key",
        "literal secret assigned",
        "password in a URL",
        "the API key itself",
    ]


def secret_defaults(root: Path) -> list[str]:
    """`file:line: VAR` for every secret-named variable reference with a committed fallback value."""
    return [
        f"{path.relative_to(root)}:{number}: {m.group(1)}"
        for path, text in _text_files(root)
        if "tests" not in path.relative_to(root).parts
        for number, line in enumerate(text.splitlines(), 1)
        for m in SECRET_DEFAULT.finditer(line)
    ]


def test_the_repository_holds_no_credentials():
    assert find_leaks(REPO) == []


def test_no_password_has_a_committed_fallback():
    assert secret_defaults(REPO) == []


def test_config_defaults_bind_loopback_and_name_the_key_only_by_its_variable(default_config: CtcdConfig):
    assert ServingConfig().host == "127.0.0.1" and OrchestrationConfig().host == "127.0.0.1"
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        cfg = load_config(path)
        assert cfg.serving.host in LOOPBACK and cfg.orchestration.host in LOOPBACK, path
    key_fields = [name for name in ServingConfig.model_fields if "key" in name or "secret" in name]
    assert key_fields == ["api_key_env"], "a config field may hold a secret"
    assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", default_config.serving.api_key_env)


def test_the_prediction_server_listens_on_loopback_only(champion: Served):
    addresses = listening_addresses(champion.handle.pid)
    assert addresses and addresses <= LOOPBACK, addresses


def test_the_api_key_never_reaches_the_workspace(champion: Served):
    url, cfg = champion.handle.url, champion.cfg
    body = {"rows": json_rows(cfg, make_rows(cfg, 3, seed=5))}
    assert httpx.post(f"{url}/predict", json=body, headers=champion.headers).status_code == 200
    wrong = {"Authorization": f"Bearer {API_KEY}-but-wrong", "X-Api-Key": f"x{API_KEY}"}
    assert httpx.post(f"{url}/predict", json=body, headers=wrong).status_code == 401
    assert httpx.post(f"{url}/admin/reload", json={}, headers={"X-Api-Key": "nope"}).status_code == 401
    leaks = find_leaks(champion.ws.root, literal=API_KEY)
    assert leaks == [], leaks


def test_mlflow_and_prefect_as_ctcd_up_starts_them_bind_loopback(
    tmp_path: Path, workspace: Workspace, shared_prefect: PrefectServer
):
    """MLflow's server, and the session's Prefect server (tests/live_stack.py): both were started by
    `ctcd.app.stack` as `ctcd up` starts them, with the default config's host."""
    from ctcd.app import deployments

    config = write_stack_config(tmp_path, mlflow_port=free_port(), prefect_port=free_port())
    cfg = load_config(config)
    with stack_mlflow(cfg, workspace) as record:
        assert listening_addresses(record.pid) <= LOOPBACK
        assert listening_addresses(record.pid), "MLflow listens nowhere"
        url = deployments.mlflow_url(cfg)
        assert httpx.get(f"{url}/health").status_code == 200
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API.
        api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(api).status_code == 200
        refused = httpx.get(api, headers={"Host": f"evil.example:{cfg.orchestration.mlflow_port}"})
        assert refused.status_code in (400, 403), refused.status_code

    assert shared_prefect.cfg.orchestration.host == cfg.orchestration.host  # the default config's
    assert httpx.get(f"{shared_prefect.api}/health").status_code == 200
    addresses = listening_addresses(shared_prefect.pid)
    assert addresses and addresses <= LOOPBACK, addresses
