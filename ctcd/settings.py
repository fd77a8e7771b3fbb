"""The only module that reads environment variables."""

from __future__ import annotations

import os
from pathlib import Path


def ctcd_home() -> Path:
    """The workspace root: `CTCD_HOME`, or `.ctcd/` in the working directory."""
    return Path(os.environ.get("CTCD_HOME") or ".ctcd").resolve()


def api_key(env_name: str) -> str | None:
    """The serving API key from the environment variable the config names (None: no key required)."""
    return os.environ.get(env_name) or None


def debug_enabled() -> bool:
    """Whether `--debug` or `CTCD_DEBUG` asks for full tracebacks."""
    return os.environ.get("CTCD_DEBUG", "") not in ("", "0", "false")


def enable_debug() -> None:
    """Turn on tracebacks for this process and the processes it starts."""
    os.environ["CTCD_DEBUG"] = "1"


def config_path() -> Path | None:
    """The config file named by `CTCD_CONFIG` (used by servers and workers that ctcd starts)."""
    value = os.environ.get("CTCD_CONFIG")
    return Path(value) if value else None


def server_environment(
    config: Path | None, home: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The environment for a server ctcd starts: this one plus CTCD_CONFIG, CTCD_HOME and `extra`."""
    env = dict(os.environ)
    if config is not None:
        env["CTCD_CONFIG"] = str(config)
    env["CTCD_HOME"] = str(home)
    env.update(extra or {})
    return env


def quiet_prefect_console() -> None:
    """Keep Prefect's per-run log lines off this process's console (they still reach the Prefect API)."""
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "ERROR")
