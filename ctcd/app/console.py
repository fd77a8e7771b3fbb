"""One line per expected error on the console, also when it was raised inside a Prefect flow or task.

Prefect logs an exception that ends a task or flow run with its traceback (to the console and to the run's
logs in the API), then a closing "Finished in state Failed(... NoChampion: ...)" line; the CLI prints the
same error again as `error: ...`. `hide_expected_tracebacks` filters Prefect's *console* handler only: a
`CtcdError` (an error the user can act on) is not echoed there, while the run logs in the Prefect UI keep
the full record, and any other exception keeps its traceback. `--debug` (CTCD_DEBUG) shows everything.
"""

from __future__ import annotations

import logging
import re

from ctcd import settings
from ctcd.errors import CtcdError


def _error_names() -> list[str]:
    found, todo = [], [CtcdError]
    while todo:
        cls = todo.pop()
        found.append(cls.__name__)
        todo += cls.__subclasses__()
    return sorted(found)


class ExpectedErrorFilter(logging.Filter):
    """Drops console records about a CtcdError: its traceback, and the run's closing state line."""

    def __init__(self) -> None:
        super().__init__()
        self._closing = re.compile(r"\b(?:" + "|".join(map(re.escape, _error_names())) + r")\b[(:]")

    def filter(self, record: logging.LogRecord) -> bool:
        if settings.debug_enabled():
            return True
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, CtcdError):
            return False
        if record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            message = record.getMessage()
            if message.startswith(("Finished in state", "Encountered exception")) and self._closing.search(
                message
            ):
                return False
        return True


def hide_expected_tracebacks() -> None:
    """Put `ExpectedErrorFilter` on Prefect's console handlers (idempotent; imports Prefect)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    for handler in handlers:
        if not any(isinstance(f, ExpectedErrorFilter) for f in handler.filters):
            handler.addFilter(ExpectedErrorFilter())
