"""Guarantee 4: schema-driven fuzzing of the prediction endpoints finds no 5xx and crashes no worker.

Request bodies are drawn with hypothesis from the server's own OpenAPI document (`/docs.json`): valid ones
(every value the schema allows must be answered), mutated ones (one thing broken), arbitrary bytes, and
hand-picked extremes (deep nesting, huge numbers). `CTCD_FUZZ_EXAMPLES` sets the examples per property.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctcd.prediction_log import read_predictions
from tests.reliability.conftest import Served
from tests.reliability.openapi_strategies import ANY_JSON, from_schema, mutated, request_schema

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EXAMPLES = int(os.environ.get("CTCD_FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENDPOINTS = ["/predict", "/predict_batch"]
CLIENT_ERRORS = {400, 401, 404, 405, 409, 413, 415, 422}


class Fuzzed:
    """The server under fuzzing, its OpenAPI document, and every answer it gave."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.client = httpx.Client(base_url=served.handle.url, headers=served.headers, timeout=60)
        self.doc = self.client.get("/docs.json").json()
        self.worker = self.client.get("/model").json()["worker_pid"]
        self.answered: list[str] = []
        self.statuses: dict[int, int] = {}

    def post(self, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
        if content is None:
            content = json.dumps(body).encode()
        r = self.client.post(path, content=content, headers={"content-type": "application/json"})
        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
        if r.status_code == 200 and path in ENDPOINTS:
            self.answered += [a["request_id"] for a in r.json()]
        return r


@pytest.fixture(scope="module")
def fuzzed(champion: Served):
    target = Fuzzed(champion)
    yield target
    target.client.close()


def _no_server_error(r: httpx.Response, what: object) -> None:
    assert r.status_code < 500, f"{r.status_code} for {str(what)[:300]}: {r.text[:300]}"


def test_the_openapi_document_describes_both_prediction_endpoints(fuzzed: Fuzzed):
    for path in ENDPOINTS:
        rows = request_schema(fuzzed.doc, path)["properties"]["rows"]
        assert rows["minItems"] == 1 and rows["maxItems"] >= 1


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_body_the_schema_allows_is_answered(fuzzed: Fuzzed, path: str):
    schema = request_schema(fuzzed.doc, path)

    @FUZZ
    @given(body=from_schema(fuzzed.doc, schema))
    def check(body: dict) -> None:
        r = fuzzed.post(path, body)
        assert r.status_code == 200, f"{r.status_code} for a valid body {str(body)[:300]}: {r.text[:300]}"
        answers = r.json()
        assert len(answers) == len(body["rows"])
        assert all(0.0 <= a["probability"] <= 1.0 and a["model_version"] for a in answers)

    check()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_broken_bodies_are_refused_never_failed(fuzzed: Fuzzed, path: str):
    schema = request_schema(fuzzed.doc, path)

    @FUZZ
    @given(body=mutated(fuzzed.doc, schema))
    def check(body: Any) -> None:
        r = fuzzed.post(path, body)
        _no_server_error(r, body)
        assert r.status_code in CLIENT_ERRORS | {200}

    check()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_arbitrary_bytes_are_refused_never_failed(fuzzed: Fuzzed, path: str):
    @FUZZ
    @given(content=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
    def check(content: bytes) -> None:
        r = fuzzed.post(path, content=content)
        _no_server_error(r, content)
        assert r.status_code in CLIENT_ERRORS

    check()


def test_extreme_bodies_are_refused_never_failed(fuzzed: Fuzzed):
    limit = fuzzed.served.cfg.serving.max_request_bytes
    deep = 200_000
    cases = {
        "deeply nested arrays": b"[" * deep + b"]" * deep,
        "deeply nested rows": b'{"rows": ' + b"[" * deep + b"]" * deep + b"}",
        "deeply nested objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
        "a number with 100k digits": b'{"rows": [{"salary": ' + b"9" * 100_000 + b"}]}",
        "a body just over the limit": b'{"rows": ["' + b"x" * limit + b'"]}',
        "duplicate keys": b'{"rows": [], "rows": []}',
        "a lone surrogate": b'{"rows": ["\\ud800"]}',
        "invalid UTF-8": b'{"rows": ["\xff\xfe"]}',
        "null": b"null",
        "empty": b"",
    }
    for path in ENDPOINTS:
        for what, content in cases.items():
            r = fuzzed.post(path, content=content)
            _no_server_error(r, what)
            assert r.status_code in CLIENT_ERRORS, (what, r.status_code, r.text[:200])


def test_admin_reload_refuses_garbage_and_keeps_serving(fuzzed: Fuzzed):
    @FUZZ
    @given(
        body=ANY_JSON
        | st.fixed_dictionaries({"version": ANY_JSON})
        | st.fixed_dictionaries(
            {"version": st.sampled_from(["0", "-1", "999", "../../etc", "1 OR 1=1", "١"])}
        )
    )
    def check(body: Any) -> None:
        r = fuzzed.post("/admin/reload", body)
        _no_server_error(r, body)

    check()
    assert fuzzed.client.get("/model").json()["version"] == fuzzed.served.champion.version


def test_the_server_and_its_worker_survived(fuzzed: Fuzzed):
    print(f"\nfuzzing: {sum(fuzzed.statuses.values())} requests, statuses {sorted(fuzzed.statuses.items())}")
    assert fuzzed.served.handle.alive()
    assert fuzzed.client.get("/readyz").status_code == 200
    info = fuzzed.client.get("/model").json()
    assert info["worker_pid"] == fuzzed.worker, "the worker was restarted: it crashed during fuzzing"
    assert info["reload_error"] is None or "failed" in info["reload_error"]
    assert not [s for s in fuzzed.statuses if s >= 500], fuzzed.statuses
    assert fuzzed.statuses.get(200, 0) > 0 and sum(fuzzed.statuses.values()) > 5 * EXAMPLES


def test_every_answered_prediction_is_logged_exactly_once(fuzzed: Fuzzed):
    ds = fuzzed.served.cfg.dataset
    row = {f: 1.0 for f in ds.numerical_features} | {f: 0 for f in ds.categorical_features}
    # What the prediction log cannot store is refused at the edge: ids beyond int64, days outside pandas'.
    for extreme in (
        {ds.id_column: 2**64},
        {"as_of": "0001-01-01"},
        {ds.id_column: "late", "as_of": "9999-12-31"},
    ):
        r = fuzzed.post("/predict", {"rows": [row | extreme]})
        assert r.status_code in CLIENT_ERRORS, f"{r.status_code} for {extreme}: {r.text[:300]}"
    # The limits themselves are answered, and logged.
    for edge in (
        {ds.id_column: 2**63 - 1},
        {ds.id_column: -(2**63), "as_of": "1678-01-01"},
        {ds.id_column: "late", "as_of": "2262-04-10"},
    ):
        r = fuzzed.post("/predict", {"rows": [row | edge]})
        assert r.status_code == 200, f"{r.status_code} for {edge}: {r.text[:300]}"
    assert fuzzed.post("/predict", {"rows": [row | {ds.id_column: "after"}]}).status_code == 200
    wanted = set(fuzzed.answered)
    deadline = time.monotonic() + 30
    log = read_predictions(fuzzed.served.ws)
    while not wanted <= set(log["request_id"]) and time.monotonic() < deadline:
        time.sleep(0.5)
        log = read_predictions(fuzzed.served.ws)
    counts = log["request_id"].value_counts()
    missing = wanted - set(counts.index)
    assert not missing, f"{len(missing)} of {len(wanted)} answered predictions never reached the log"
    assert counts.max() == 1, "a prediction was logged twice"
