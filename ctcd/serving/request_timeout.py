"""BentoML's request timeout (`traffic.timeout`) without a timer left behind per request.

BentoML 1.4's `TimeoutMiddleware` arms `loop.call_later(timeout, ...)` for every request and never
cancels it: each answered request leaves a timer (holding its future, its context and its tracing span)
alive for the whole timeout. At 1,000 requests/s and ctcd's 60 s timeout that is ~60,000 live timers and
about a million objects, and every full collection of Python's cyclic GC walked them: 200-470 ms pauses
every few seconds, which were the server's p99. `RequestTimeout` keeps the behaviour (504 when no answer
has started within the timeout; an answer that has started is never cut) with `asyncio.timeout`, whose
timer goes away with the request. `install()` puts it in BentoML's place before the app is built.
"""

from __future__ import annotations

import asyncio
from typing import Any


class RequestTimeout:
    """ASGI middleware: answer 504 when the app has not started its answer within `timeout` seconds."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        started = False
        deadline = asyncio.timeout(self.timeout)

        async def started_send(message: dict[str, Any]) -> None:
            nonlocal started
            if not started:
                started = True
                deadline.reschedule(None)  # an answer that has begun runs to its end
            await send(message)

        try:
            async with deadline:
                await self.app(scope, receive, started_send)
        except TimeoutError:
            if started or not deadline.expired():
                raise
            from starlette.responses import JSONResponse

            message = {"error": f"Not able to process the request in {self.timeout} seconds"}
            await JSONResponse(message, status_code=504)(scope, receive, send)


def install() -> None:
    """Make BentoML build its apps with `RequestTimeout` instead of its own `TimeoutMiddleware`."""
    from bentoml._internal.server.http import traffic

    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc,assignment]
