"""The ASGI layer around `ChampionService` (`ctcd.serving.service`): the request guard (API key, body size,
JSON only), the small app for `/model` and `/admin/reload`, and one-line logs of refused requests."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

import bentoml
from pydantic import ValidationError

from ctcd.errors import CtcdError

# The logger BentoML reports failed requests on (`bentoml._internal.server.http_app.log_exception`).
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"


class OneLineValidationErrors(logging.Filter):
    """Log a request refused for invalid input (400) as one warning line, not an error with a traceback.

    BentoML logs each such request with its traceback and every failing field: one day of malformed
    traffic in the demo (10 requests of 200 rows) added 1.4 MB to the server log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, ValidationError):
            return True
        found = exc.errors(include_context=False, include_input=False)
        first = found[0] if found else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        record.msg = f"{record.getMessage()}: 400, {len(found)} validation error(s), first {where}: "
        record.msg += str(first.get("msg", ""))
        record.args = ()
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


PREDICTION_PATHS = ("/predict", "/predict_batch")
GUARD_HEADERS = frozenset({b"authorization", b"x-api-key", b"content-type", b"content-length"})
ADMIN_PREFIX = "/admin/"


class RequestGuard:
    """ASGI middleware: API key on prediction and admin paths, body size limit, JSON bodies only."""

    def __init__(self, app: Any, api_key: str | None, max_bytes: int) -> None:
        self.app = app
        self.api_key = api_key
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path in PREDICTION_PATHS or path.startswith(ADMIN_PREFIX)):
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", [])
            if (name := k.lower()) in GUARD_HEADERS
        }
        if self.api_key is not None and not self._authorized(headers):
            await _answer(send, 401, "missing or wrong API key: send it as 'Authorization: Bearer <key>'")
            return
        media = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if media not in ("application/json", ""):
            await _answer(send, 415, f"send the body as application/json, not {media}")
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _answer(send, 413, f"request body is larger than {self.max_bytes} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_bytes:
                await _answer(send, 413, f"request body is larger than {self.max_bytes} bytes")
                return
            if not message.get("more_body", False):
                break
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one message (the usual): no copy
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        return bool(given) and hmac.compare_digest(given.encode(), self.api_key.encode())  # type: ignore[union-attr]


async def _answer(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def admin_app() -> Any:
    """The small Starlette app for `/model` and `/admin/reload` (with an optional rollout), mounted passively
    at the root."""
    import anyio.to_thread
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def model_info(_: Request) -> JSONResponse:
        svc = bentoml.get_current_service()
        return JSONResponse(svc.describe())

    async def reload_model(request: Request) -> JSONResponse:
        from ctcd.serving.rollout_scoring import ServedRollout

        try:
            payload = json.loads(await request.body() or b"{}")
            payload = payload if isinstance(payload, dict) else {}
            version = payload.get("version")
            rollout = payload.get("rollout")
            rollout = ServedRollout.model_validate(rollout) if rollout is not None else None
        except (json.JSONDecodeError, ValidationError):
            message = 'send {"version": "<n>"} or {} for the champion, with an optional "rollout": '
            message += '{"candidate_version": "<n>", "mode": "shadow" or "canary", "fraction": 0.05}'
            return JSONResponse({"error": message}, status_code=400)
        svc = bentoml.get_current_service()
        try:
            result = await anyio.to_thread.run_sync(
                svc.request_reload, None if version is None else str(version), rollout
            )
        except CtcdError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(result)

    return Starlette(
        routes=[
            Route("/model", model_info, methods=["GET"]),
            Route("/admin/reload", reload_model, methods=["POST"]),
        ]
    )
