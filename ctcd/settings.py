"""The only module that reads environment variables."""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The project root: the folder holding `flows/` and `tasks/` (and `deployments/`, `configs/`).

    From a checkout it is the folder above the `ctcd` package; for an installed wheel (which ships only
    `ctcd`) it is the working directory, where deployments and servers are started from.
    """
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "flows").is_dir() and (checkout / "tasks").is_dir():
        return checkout
    return Path.cwd().resolve()


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
    config: Path | None,
    home: Path,
    extra: dict[str, str] | None = None,
    mlflow_retry_seconds: float | None = None,
) -> dict[str, str]:
    """The environment for a server ctcd starts: this one plus CTCD_CONFIG, CTCD_HOME and `extra`.

    `mlflow_retry_seconds` (`tracking.retry_seconds`) sets MLflow's HTTP retry window in that process.
    """
    env = dict(os.environ)
    if config is not None:
        env["CTCD_CONFIG"] = str(config)
    env["CTCD_HOME"] = str(home)
    if mlflow_retry_seconds is not None:
        env.update(mlflow_retry_environment(mlflow_retry_seconds))
    env.update(extra or {})
    return env


def quiet_console() -> None:
    """Keep Prefect's per-run log lines and MLflow's progress bars off this process's console.

    The run logs still reach the Prefect API (and its UI).
    """
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# MLflow's own limits (mlflow/environment_variables.py): it refuses more retries or a larger factor.
# urllib3 (2.x) waits 0 s before the first retry, then factor * 2**(n - 1) s, each wait capped at 120 s.
_MLFLOW_MAX_RETRIES = 10
_MLFLOW_MAX_BACKOFF_FACTOR = 120
_URLLIB3_MAX_WAIT = 120


def _retry_waits(retries: int, factor: int) -> int:
    return sum(min(_URLLIB3_MAX_WAIT, factor * 2 ** (n - 1)) for n in range(2, retries + 1))


def mlflow_retry_environment(retry_seconds: float) -> dict[str, str]:
    """MLflow's HTTP retry variables for a call that gives up after about `retry_seconds` of waiting.

    The fewest retries (then the smallest back-off factor) whose waits add up to at least `retry_seconds`;
    0 means no retry. MLflow's limits cap the window at about 18 minutes.
    """
    for factor in range(1, _MLFLOW_MAX_BACKOFF_FACTOR + 1):
        for retries in range(_MLFLOW_MAX_RETRIES + 1):
            if _retry_waits(retries, factor) >= retry_seconds:
                return {
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(factor),
                }
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(_MLFLOW_MAX_RETRIES),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(_MLFLOW_MAX_BACKOFF_FACTOR),
    }


def use_mlflow_retry_window(retry_seconds: float) -> None:
    """Set MLflow's HTTP retry variables for this process (and the processes it starts)."""
    os.environ.update(mlflow_retry_environment(retry_seconds))
