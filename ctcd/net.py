"""Local network helpers: client addresses, free and taken ports, and the one HTTP readiness check
(`http_ok`, with `wait_http` polling it) for the servers ctcd starts or finds."""

from __future__ import annotations

import socket
import time

import httpx

PROBE_TIMEOUT = 2.0


def client_host(host: str) -> str:
    """The address a client uses for a server bound to `host` (a wildcard bind answers on loopback)."""
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something accepts connections on host:port."""
    try:
        with socket.create_connection((client_host(host), port), timeout=0.5):
            return True
    except OSError:
        return False


def _not_ok(url: str, expect: str | None) -> str | None:
    """None when `url` answers 200 (with `expect` in its body, when given); else what it answered."""
    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT)
    except httpx.HTTPError as exc:
        return repr(exc)
    if response.status_code != 200:
        return f"status {response.status_code}"
    if expect is not None and expect not in response.text:
        return f"a body without {expect!r}"
    return None


def http_ok(url: str, expect: str | None = None) -> bool:
    """Whether `url` answers 200 (and its body contains `expect`, when given)."""
    return _not_ok(url, expect) is None


def wait_http(url: str, timeout: float = 90.0, expect: str | None = None) -> None:
    """Poll `url` until `http_ok(url, expect)` holds, or raise TimeoutError saying what it last answered."""
    deadline = time.monotonic() + timeout
    while True:
        last = _not_ok(url, expect)
        if last is None:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become ready in {timeout}s (last: {last})")
        time.sleep(0.3)
