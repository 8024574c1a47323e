"""The exception tree of the project; ``main.py`` turns each into one line on stderr and an exit code.

    AnomalyDetectorError            base: every error we raise on purpose
    ├── ConfigError                 config file, environment or flags are invalid      -> exit 2
    ├── DataError                   input data is unusable (file, line, value, fix)    -> exit 2
    ├── ModelError                  model artifact missing, corrupt or incompatible    -> exit 3
    ├── SourceError                 a metrics source cannot be read                    -> exit 4
    │   └── SourceUnavailable       the source cannot be reached at all                -> exit 4
    └── SinkError                   a results store rejected or could not take a write -> exit 5

Anything else that escapes is a bug: exit 1, the traceback goes to the log file, not to the terminal.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BUG",
    "EXIT_OK",
    "AnomalyDetectorError",
    "ConfigError",
    "DataError",
    "ModelError",
    "SinkError",
    "SourceError",
    "SourceUnavailable",
    "exit_code_for",
]

EXIT_OK = 0
EXIT_BUG = 1


class AnomalyDetectorError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = 1


class ConfigError(AnomalyDetectorError):
    """The configuration (file, environment or flags) is invalid."""

    exit_code = 2


class DataError(AnomalyDetectorError):
    """Input data cannot be used; the message names the file, the line and the fix."""

    exit_code = 2


class ModelError(AnomalyDetectorError):
    """The model artifact is missing, corrupt or was written by an incompatible version."""

    exit_code = 3


class SourceError(AnomalyDetectorError):
    """A metrics source answered with something we cannot use."""

    exit_code = 4


class SourceUnavailable(SourceError):
    """A metrics source cannot be reached."""


class SinkError(AnomalyDetectorError):
    """A results store rejected a write or cannot be configured."""

    exit_code = 5


def exit_code_for(exc: BaseException) -> int:
    """Return the documented process exit code for an exception (the one place that decides it)."""
    if isinstance(exc, AnomalyDetectorError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return EXIT_BUG
