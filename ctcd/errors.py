"""Exceptions a user can act on. The CLI turns each into one line and an exit code."""

from __future__ import annotations


class CtcdError(Exception):
    """Base of every error ctcd reports to a user; the message is one readable sentence."""

    exit_code = 1


class ConfigError(CtcdError):
    """The configuration file is missing, unreadable or invalid (exit code 2)."""

    exit_code = 2


class UsageError(CtcdError):
    """A command was called with arguments that cannot work (exit code 2)."""

    exit_code = 2


class WorkFailed(CtcdError):
    """The work ran but did not succeed, e.g. a batch was rejected (exit code 1)."""

    exit_code = 1


class BatchRejected(WorkFailed):
    """A landed batch failed its data contract and was quarantined."""


class NoChampion(WorkFailed):
    """The registry has no champion yet, so there is nothing to serve or compare against."""


class DependencyUnavailable(WorkFailed):
    """A server ctcd needs (MLflow, Prefect, BentoML) did not answer."""
