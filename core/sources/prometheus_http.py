"""Prometheus' HTTP API, one GET at a time: the retry budget, decoding, and errors an operator can act on.

Errors, each one line naming the URL (user:password in it never reaches a message):

    SourceUnavailable   refused, reset, timed out, HTTP 5xx/429, answer cut off: retried ``retries``
                        times (backoff 0.2 s, 0.4 s, ...) within a budget of 2 x ``timeout_seconds``
    SourceError         bad PromQL (HTTP 400/422, Prometheus' message), auth (401/403), no API (404),
                        TLS certificate not trusted: never retried

The retry schedule is tenacity's (exponential wait, stop after the attempts or when the next wait
would pass the budget) with the injected ``sleep`` and ``clock``, so tests never sleep. The timeout
bounds each connect and each read, not an answer that trickles in byte by byte. The bearer token goes
only into the Authorization header.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from loguru import logger
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from core.errors import PLAIN_HTTP, ConfigError, SourceError, SourceUnavailable, speaks_plain_http

__all__ = ["PrometheusHTTP", "read_token", "redact", "snippet"]

_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0
# A request with its retries gives up after this many timeouts' worth of time (never ~16 s).
_BUDGET_TIMEOUTS = 2.0
_RETRY_STATUSES = frozenset({429})


class _Transient(Exception):
    """A failure worth retrying; ``cause`` says why in a few words."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class PrometheusHTTP:
    """GET Prometheus API endpoints and return their ``data``, retrying transient failures."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        verify: bool | str = True,
        bearer_token: str | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], object],
        clock: Callable[[], float],
        count: Callable[..., None] = lambda **_: None,
    ) -> None:
        self.url = redact(url.rstrip("/"))
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()
        self._base = url.rstrip("/")
        self._verify = verify
        self._headers = {"Accept": "application/json", "User-Agent": "anomaly-detector"}
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._sleep = sleep
        self._clock = clock
        self._count = count

    def _pause(self, seconds: float) -> None:
        self._sleep(seconds)

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def get(self, endpoint: str, params: dict[str, str], *, attempts: int) -> Any:
        """GET an API endpoint; retry transient failures within the budget; return the ``data`` field."""
        started = self._clock()
        deadline = started + _BUDGET_TIMEOUTS * self.timeout
        wait = wait_exponential(multiplier=_BACKOFF_FIRST, max=_BACKOFF_MAX)

        def out_of_budget(state: RetryCallState) -> bool:
            return state.attempt_number >= attempts or self._clock() + wait(state) >= deadline

        def before_sleep(state: RetryCallState) -> None:
            cause = state.outcome.exception() if state.outcome else None
            logger.debug(
                f"Prometheus at {self.url}: {cause}; retry {state.attempt_number} of {attempts - 1} "
                f"in {wait(state):g} s"
            )

        retrying = Retrying(
            stop=out_of_budget,
            wait=wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=before_sleep,
            sleep=self._pause,
            reraise=True,
        )
        tried = 0

        def attempt() -> Any:
            nonlocal tried
            tried += 1
            self._count(requests=1, retries=int(tried > 1))
            return self._once(
                endpoint, params, timeout=max(0.05, min(self.timeout, deadline - self._clock()))
            )

        try:
            return retrying(attempt)
        except _Transient as exc:
            elapsed = self._clock() - started
            tries = "1 attempt" if tried == 1 else f"{tried} attempts"
            raise SourceUnavailable(
                f"Prometheus at {self.url} is unreachable: {exc.cause} ({tries} in {elapsed:.1f} s); "
                "check that it is running and that prometheus.url is right"
            ) from None

    def _once(self, endpoint: str, params: dict[str, str], *, timeout: float) -> Any:
        """Send one GET; raise _Transient for what a retry may cure, SourceError for what it cannot."""
        try:
            response = self.session.get(
                self._base + endpoint,
                params=params,
                headers=self._headers,
                timeout=timeout,
                verify=self._verify,
            )
        except requests.exceptions.SSLError as exc:
            if speaks_plain_http(exc):  # not transient: the URL's scheme is wrong
                raise SourceError(f"Prometheus at {self.url}: {PLAIN_HTTP}") from exc
            if _find(exc, ssl.SSLCertVerificationError) is None:
                raise _Transient(f"TLS error ({_innermost(exc)})") from exc
            raise SourceError(
                f"Prometheus at {self.url}: TLS certificate not trusted ({_innermost(exc)}); "
                "set prometheus.ca_file to the CA that signed it (or verify_tls: false)"
            ) from exc
        except requests.exceptions.InvalidURL as exc:
            raise SourceError(f"prometheus.url {self.url!r} is not a valid URL ({exc})") from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _Transient(_cause(exc, self.timeout)) from exc
        except requests.RequestException as exc:  # redirects loop, undecodable gzip, ...
            raise SourceError(f"Prometheus at {self.url}: request failed: {_innermost(exc)}") from exc
        status = response.status_code
        if status < 500 and status not in _RETRY_STATUSES:
            return self._decode(response, endpoint, params)
        raise _Transient(f"HTTP {status} {response.reason or ''}".rstrip() + f": {_error_text(response)}")

    def _decode(self, response: requests.Response, endpoint: str, params: Mapping[str, str]) -> Any:
        """Return the ``data`` of a successful answer; raise SourceError naming what went wrong."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        where = f"Prometheus at {self.url}"
        if status == 200:
            if not isinstance(body, dict):
                raise SourceError(
                    f"{where}: the answer to {endpoint} is not a JSON object "
                    f"({snippet(response.text)!r}); is prometheus.url a Prometheus server?"
                )
            if body.get("status") != "success":
                error = _one_line(str(body.get("error") or "no error text"))
                raise SourceError(
                    f"{where}: query {params['query']!r} failed: status {body.get('status')!r}: {error}"
                )
            if "data" not in body:
                raise SourceError(
                    f"{where}: malformed answer to {endpoint} (no data); is it a Prometheus API?"
                )
            return body["data"]
        error = _error_text(response, body)
        if status in (400, 422):
            raise SourceError(
                f"{where} rejected query {params['query']!r} (HTTP {status}): {error}; fix prometheus.query"
            )
        if status in (401, 403):
            raise SourceError(
                f"{where} refused access (HTTP {status}): {error}; check prometheus.bearer_token_file"
            )
        if status == 404:
            raise SourceError(
                f"{where}: no query API there (HTTP 404); check prometheus.url "
                "(include any path prefix, e.g. http://host/prometheus)"
            )
        raise SourceError(f"{where}: unexpected HTTP {status} {response.reason or ''}: {error}")


def read_token(path: str) -> str:
    """Return the bearer token in ``path``; a ConfigError names the file if it is unreadable or empty."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"prometheus.bearer_token_file: cannot read {path!r} ({reason})") from None
    if not token:
        raise ConfigError(f"prometheus.bearer_token_file: {path!r} is empty; put the token in it")
    return token


def redact(url: str) -> str:
    """Return ``url`` without any user:password part (it goes into messages and logs)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _chain(exc: BaseException) -> list[BaseException]:
    """Return ``exc`` and every exception it wraps (args, ``reason``, cause, context), outermost first."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        inner = [a for a in e.args if isinstance(a, BaseException)]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        inner += [x for x in (e.__cause__, e.__context__) if x is not None]
        todo.extend(inner)
    return seen


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _innermost(exc: BaseException) -> str:
    return _one_line(str(_chain(exc)[-1]))


def _cause(exc: BaseException, timeout: float) -> str:
    """Say in a few words why a request failed: 'connection refused', 'no answer within 5 s'."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"no connection within {timeout:g} s"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return f"the answer was cut off ({_innermost(exc)})"
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno is not None and e.strerror:
            text = e.strerror[0].lower() + e.strerror[1:]
            return f"cannot resolve the host ({text})" if e.errno < 0 else text
    return _innermost(exc)


def _error_text(response: requests.Response, body: Any = None) -> str:
    """Return Prometheus' ``error`` field of an answer, else the start of its body."""
    if body is None:
        try:
            body = response.json()
        except ValueError:
            body = None
    if isinstance(body, dict) and body.get("error"):
        return _one_line(str(body["error"]))
    return snippet(response.text) or "empty answer"


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def snippet(text: str) -> str:
    """Return the start of ``text`` on one line (for messages)."""
    return _one_line(text, 120)
