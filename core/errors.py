"""The one exception tree of the project; ``main.py`` turns each into one line on stderr and an exit code.

    AnomalyDetectorError                base: every error we raise on purpose
    ├── ConfigError                     config file, environment or flags are invalid      -> exit 2
    ├── DataError                       input data is unusable (file, line, value, fix)    -> exit 2
    ├── ModelError                      model artifact missing, corrupt or incompatible    -> exit 3
    │   └── FitError                    a series could not be fitted (Prophet failed)      -> exit 3
    ├── SourceError                     a metrics source cannot be read                    -> exit 4
    │   └── SourceUnavailable           the source cannot be reached at all                -> exit 4
    └── SinkError                       a results store rejected or could not take a write -> exit 5
        ├── WriteError                  one write request failed (``status``: HTTP status or None)
        │   ├── RetryableWriteError     connection refused/reset, timeout, 5xx, 429, unknown 4xx:
        │   │   │                       the forwarder keeps the batch and retries with backoff
        │   │   └── WriteAuthError      401/403: retried at the longest backoff, one clear log line
        │   └── WriteRejectedError      400/413/422, the data itself is refused: the batch is set
        │                               aside (``<name>.rejected.jsonl``) and the cursor moves on
        └── DeliveryError               an alert channel did not take a notification: the outbox
                                        keeps it and retries with backoff (``permanent``: drop it)

Anything else that escapes is a bug: exit 1, the traceback goes to the log file, not to the terminal.
``KeyboardInterrupt`` before a clean stop is 130. :data:`EXIT_CODES` is the table of every code (the
CLI's ``--help`` epilog is generated from it); :func:`exit_code_for` is the one place that maps an
exception to its code. ``FitError`` is a ``ModelError`` so that the fallback to the profile model and
the exit code stay what they were before it was split out.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BUG",
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "AnomalyDetectorError",
    "ConfigError",
    "DataError",
    "DeliveryError",
    "FitError",
    "ModelError",
    "RetryableWriteError",
    "SinkError",
    "SourceError",
    "SourceUnavailable",
    "WriteAuthError",
    "WriteError",
    "WriteRejectedError",
    "exit_code_for",
    "exit_codes_text",
    "speaks_plain_http",
]

# https:// to a server that speaks plain HTTP: OpenSSL reads its HTTP answer as a broken TLS record.
PLAIN_HTTP = "TLS handshake failed: the server speaks plain HTTP? use http://"
_PLAIN_HTTP_SIGNS = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure")

EXIT_OK = 0
EXIT_BUG = 1
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_BUG: "internal error",
    2: "bad input",
    3: "model problem",
    4: "source unavailable",
    5: "results store unusable",
    EXIT_INTERRUPTED: "interrupted",
}


def exit_codes_text() -> str:
    """Return the exit-code table as one sentence (the CLI's epilog)."""
    return "Exit codes: " + ", ".join(f"{code} {text}" for code, text in EXIT_CODES.items()) + "."


class AnomalyDetectorError(Exception):
    """Base of every error the project raises on purpose."""

    exit_code = EXIT_BUG


class ConfigError(AnomalyDetectorError):
    """The configuration (file, environment or flags) is invalid."""

    exit_code = 2


class DataError(AnomalyDetectorError):
    """Input data cannot be used; the message names the file, the line and the fix."""

    exit_code = 2


class ModelError(AnomalyDetectorError):
    """The model artifact is missing, corrupt or was written by an incompatible version."""

    exit_code = 3


class FitError(ModelError):
    """A series could not be fitted (Prophet failed, or too few values to fit)."""


class SourceError(AnomalyDetectorError):
    """A metrics source answered with something we cannot use."""

    exit_code = 4


class SourceUnavailable(SourceError):
    """A metrics source cannot be reached."""


class SinkError(AnomalyDetectorError):
    """A results store rejected a write or cannot be configured."""

    exit_code = 5


class WriteError(SinkError):
    """A write request failed; ``status`` is the HTTP status (None when there was no answer)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        long_backoff: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.long_backoff = long_backoff


class RetryableWriteError(WriteError):
    """The database did not take the batch but may later: keep it and retry."""


class WriteAuthError(RetryableWriteError):
    """The database refused the credentials (401/403): retry slowly until an operator fixes them."""


class WriteRejectedError(WriteError):
    """The database refused the data itself (400): retrying the same batch cannot succeed."""


class DeliveryError(SinkError):
    """An alert channel did not take a notification; ``permanent`` when retrying cannot help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def exit_code_for(exc: BaseException) -> int:
    """Return the documented process exit code for an exception (the one place that decides it)."""
    if isinstance(exc, AnomalyDetectorError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BUG


def speaks_plain_http(exc: BaseException) -> bool:
    """Return whether a request failed because https:// went to a plain-HTTP server (see PLAIN_HTTP).

    Looks through the whole chain (causes, contexts, urllib3's ``reason``, wrapped arguments).
    """
    stack, seen = [exc], set()
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if any(sign in f"{getattr(e, 'reason', '')} {e}" for sign in _PLAIN_HTTP_SIGNS):
            return True
        linked = (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
        stack += [x for x in linked if isinstance(x, BaseException)]
    return False
