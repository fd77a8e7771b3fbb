"""Guarantee 4: the prediction endpoints never answer a 5xx, refuse every body their own OpenAPI document
rules out, answer every body it allows, and no worker crashes.

schemathesis drives the document a live `bentoml serve` publishes (`/docs.json`): its coverage phase (each
keyword's boundaries and the ways to break them, other methods, other media types) and its fuzzing phase
(bodies the schema allows and bodies it does not), with the `not_a_server_error` and
`negative_data_rejection` checks. Arbitrary bytes and hand-picked extremes (deep nesting, huge numbers)
follow. Runs are derandomized (same seed, same cases); `CTCD_FUZZ_EXAMPLES` sets the fuzzing phase's
examples per operation and the examples of each hypothesis property.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctcd.prediction_log import read_predictions
from ctcd.serving.schema import FIRST_AS_OF, LAST_AS_OF
from tests.reliability.conftest import API_KEY, Served

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EXAMPLES = int(os.environ.get("CTCD_FUZZ_EXAMPLES", "50"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENDPOINTS = ["/predict", "/predict_batch"]
CLIENT_ERRORS = {400, 401, 404, 405, 409, 413, 415, 422}
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


class Fuzzed:
    """The server under fuzzing, its OpenAPI document, and every answer it gave."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.client = httpx.Client(base_url=served.handle.url, headers=served.headers, timeout=60)
        self.doc = self.client.get("/docs.json").json()
        self.worker = self.client.get("/model").json()["worker_pid"]
        self.answered: list[str] = []
        self.statuses: dict[int, int] = {}

    def saw(self, path: str, status: int, content: bytes) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200 and path in ENDPOINTS:
            self.answered += [a["request_id"] for a in json.loads(content)]

    def post(self, path: str, body: Any = None, content: bytes | None = None) -> httpx.Response:
        if content is None:
            content = json.dumps(body).encode()
        r = self.client.post(path, content=content, headers={"content-type": "application/json"})
        self.saw(path, r.status_code, r.content)
        return r


@pytest.fixture(scope="module")
def fuzzed(champion: Served):
    target = Fuzzed(champion)
    yield target
    target.client.close()


def _no_server_error(r: httpx.Response, what: object) -> None:
    assert r.status_code < 500, f"{r.status_code} for {str(what)[:300]}: {r.text[:300]}"


def _valid_row(fuzzed: Fuzzed) -> dict[str, Any]:
    ds = fuzzed.served.cfg.dataset
    return {f: 1.0 for f in ds.numerical_features} | {f: 0 for f in ds.categorical_features}


def test_the_openapi_document_describes_both_prediction_endpoints(fuzzed: Fuzzed):
    for path in ENDPOINTS:
        body = fuzzed.doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        rows = body["properties"]["rows"]
        assert body["required"] == ["rows"] and rows["items"] == {"$ref": "#/components/schemas/Row"}
        assert rows["minItems"] == 1 and rows["maxItems"] >= 1


def _schemathesis_config() -> Any:
    import schemathesis

    return schemathesis.Config.from_dict(
        {
            "seed": 20261130,
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "workers": 1,
            "continue-on-failure": True,  # every failing case of an operation, not the first only
            "cache": {"enabled": False},
            "generation": {
                "mode": "all",  # bodies the schema allows and bodies it does not
                "max-examples": EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "negative_data_rejection": {"enabled": True},
            },
        }
    )


def _in_log_range(body: dict[str, Any]) -> bool:
    # `as_of`'s range is published as formatMinimum/formatMaximum, which JSON Schema generators ignore:
    # a day they draw outside it is refused, rightly (the prediction log cannot store it).
    days = [r.get("as_of") for r in body.get("rows") or [] if isinstance(r, dict)]
    return all(
        d is None or (isinstance(d, str) and FIRST_AS_OF <= date.fromisoformat(d) <= LAST_AS_OF) for d in days
    )


def test_schemathesis_finds_no_server_error_and_no_accepted_schema_violation(fuzzed: Fuzzed):
    """Both prediction endpoints through schemathesis' coverage and fuzzing phases: no 5xx, every body
    the schema rules out refused with a 4xx, and every body it allows (days in the log's range) answered."""
    import schemathesis
    from schemathesis import engine
    from schemathesis.engine import events

    schema = schemathesis.openapi.from_url(
        f"{fuzzed.served.handle.url}/docs.json", config=_schemathesis_config(), timeout=60
    ).include(path_regex="^/predict")
    failures: list[str] = []
    phases: dict[str, set[str]] = {}
    for event in engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError | events.FatalError):
            failures.append(f"schemathesis could not run: {event}")
        elif isinstance(event, events.ScenarioFinished):
            phases.setdefault(str(event.phase.value), set()).add(event.recorder.label)
            failures += _failures(fuzzed, event.recorder)
    assert not failures, "\n\n".join(failures)
    wanted = {f"POST {path}" for path in ENDPOINTS}
    assert phases.get("coverage") == wanted and phases.get("fuzzing") == wanted, phases
    assert fuzzed.statuses.get(200, 0) > 0 and fuzzed.statuses.get(400, 0) > 0, fuzzed.statuses


def _failures(fuzzed: Fuzzed, recorder: Any) -> list[str]:
    """What schemathesis' checks found in one scenario, and the valid bodies it was refused (each with
    a curl command to reproduce it); every answer is recorded in `fuzzed`."""
    from schemathesis import GenerationMode

    found = [
        f"{check.name}: {check.failure_info.code_sample}"
        for checks in recorder.checks.values()
        for check in checks
        if check.failure_info is not None
    ]
    for case_id, interaction in recorder.interactions.items():
        case, response = recorder.cases[case_id].value, interaction.response
        if response is None:
            found.append(f"no response to {case.as_curl_command()}")
            continue
        fuzzed.saw("/" + interaction.request.uri.rsplit("/", 1)[-1], response.status_code, response.content)
        valid = (
            case.meta is not None
            and case.meta.generation.mode == GenerationMode.POSITIVE
            and (case.method.upper(), case.media_type) == ("POST", "application/json")
            # BentoML publishes the request body as optional (OpenAPI's default): without one, 400.
            and isinstance(case.body, dict)
            and _in_log_range(case.body)
        )
        if valid and response.status_code != 200:
            found.append(
                f"a valid body refused, {response.status_code} {response.content[:300]!r}: "
                f"{case.as_curl_command()[:600]}"
            )
    return found


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "broken",
    [{"as_of": 0}, {"as_of": "0"}, {"as_of": "2026-01-08T00:00:00"}, {"id": False}, {"id": 1.0}],
    ids=["as_of-0", "as_of-text-0", "as_of-datetime", "id-false", "id-float"],
)
def test_lax_look_alikes_of_valid_values_are_refused(fuzzed: Fuzzed, path: str, broken: dict):
    """Regression: `"as_of": 0` was answered 200 on both endpoints (read as 1970-01-01 and logged there),
    found by schemathesis' coverage phase; an id `false` was read as 0 and `1.0` as 1."""
    id_column = fuzzed.served.cfg.dataset.id_column
    broken = {id_column if key == "id" else key: value for key, value in broken.items()}
    r = fuzzed.post(path, {"rows": [_valid_row(fuzzed) | broken]})
    assert r.status_code == 400, f"{r.status_code} for {broken}: {r.text[:300]}"


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
    row = _valid_row(fuzzed)
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
