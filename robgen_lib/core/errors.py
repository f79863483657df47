"""The library's errors: what a user did (``ConfigError``) apart from what a run hit
(``TrainingFailed``)."""
from __future__ import annotations

__all__ = ["ConfigError", "TrainingFailed"]


class ConfigError(ValueError):
    """A parameter is unknown, out of range, or cannot be honoured here."""


class TrainingFailed(RuntimeError):
    """Training diverged or did not reach the accuracy it promised."""
