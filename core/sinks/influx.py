"""The InfluxDB writers (2.x through the v2 API, 1.x through ``/write``) and the forwarder factory.

A writer sends one batch of line-protocol lines in one request and raises the ``WriteError`` family
of ``core/errors.py`` (:func:`classify_status` maps an HTTP status to it). :func:`build_forwarder`
builds the :class:`~core.sinks.forwarder.Forwarder` that tails the write-ahead log with a writer for
``influxdb.api``.

Delivery is at least once: a kill between the database's acknowledgement and the cursor commit, or
a timeout on a write the server did apply, sends that batch again. InfluxDB overwrites a point with
the same series and timestamp; VictoriaMetrics keeps both samples unless ``-dedup.minScrapeInterval``
is set, so enable it there (1ms is enough) if such a duplicate matters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from loguru import logger

from core.config import InfluxSettings
from core.errors import (
    PLAIN_HTTP,
    RetryableWriteError,
    SinkError,
    WriteAuthError,
    WriteError,
    WriteRejectedError,
    speaks_plain_http,
)
from core.protocols import Writer
from core.sinks.forwarder import DEFAULT_FORWARDER_NAME, Forwarder, ForwarderEvent
from core.sinks.wal import MetricsLog

__all__ = [
    "InfluxV1Writer",
    "InfluxV2Writer",
    "build_forwarder",
    "build_writer",
    "classify_status",
]

_REJECTED = frozenset({400, 413, 422})
_AUTH = frozenset({401, 403})
_ERROR_TEXT = 300


def classify_status(status: int, what: str, detail: str, retry_after: float | None = None) -> WriteError:
    """Return the error for an HTTP status: rejected (400/413/422), auth (401/403) or retryable."""
    text = f"{what}: HTTP {status}" + (f" {detail}" if detail else "")
    if status in _REJECTED:
        return WriteRejectedError(text, status=status)
    if status in _AUTH:
        return WriteAuthError(text, status=status, long_backoff=True)
    # 5xx, 429 and 408 pass; another 4xx (wrong URL, missing bucket) waits for an operator.
    slow = 400 <= status < 500 and status not in (408, 429)
    return RetryableWriteError(text, status=status, retry_after=retry_after, long_backoff=slow)


def _retry_after(value: Any) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date; the backoff schedule covers it


def _plain_http(what: str) -> RetryableWriteError:
    """https:// to a plain-HTTP server: kept and retried slowly (an operator must fix the URL)."""
    return RetryableWriteError(f"{what}: {PLAIN_HTTP}", long_backoff=True)


def _short(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return " ".join(str(text).split())[:_ERROR_TEXT]


class InfluxV2Writer:
    """Write through InfluxDB's v2 API (``/api/v2/write``) with influxdb-client, synchronously."""

    def __init__(
        self,
        url: str,
        token: str,
        org: str,
        bucket: str,
        *,
        timeout: float = 10.0,
        verify_tls: bool = True,
    ) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url.rstrip("/")
        self.org = org
        self.bucket = bucket
        self.description = f"InfluxDB v2 API at {self.url} (org {org!r}, bucket {bucket!r})"
        # retries=False (the default): our forwarder retries, urllib3 must fail fast.
        self._client = InfluxDBClient(
            url=self.url, token=token, org=org, timeout=int(timeout * 1000), verify_ssl=verify_tls
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        """Write the lines in one request or raise a :class:`WriteError`."""
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._api.write(
                bucket=self.bucket,
                org=self.org,
                record=list(lines),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # a str constant in the stubs
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            if status == 0 and speaks_plain_http(exc):
                raise _plain_http(self.description) from exc
            detail = _short(getattr(exc, "message", None) or exc.body or exc.reason or "")
            error = classify_status(status, self.description, detail, _retry_after(exc.retry_after))
            if isinstance(error, WriteAuthError):
                error = WriteAuthError(
                    f"{error}: the token was refused; set INFLUXDB_TOKEN or influxdb.token_file to a token "
                    f"that can write to bucket {self.bucket!r}",
                    status=status,
                    long_backoff=True,
                )
            raise error from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            if speaks_plain_http(exc):
                raise _plain_http(self.description) from exc
            raise RetryableWriteError(f"{self.description}: {_short(exc)}") from exc

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()


class InfluxV1Writer:
    """Write through InfluxDB 1.x's ``POST /write`` with requests; create the database if missing."""

    def __init__(
        self,
        url: str,
        database: str,
        *,
        retention_policy: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        verify_tls: bool = True,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.database = database
        self.retention_policy = retention_policy
        self.timeout = timeout
        self.description = f"InfluxDB v1 API at {self.url} (database {database!r})"
        self._session = session or requests.Session()
        self._session.verify = verify_tls
        self._auth = (username, password or "") if username else None
        self._params = {"db": database, "precision": "ms"}
        if retention_policy:
            self._params["rp"] = retention_policy

    def write(self, lines: Sequence[str]) -> None:
        """Write the lines in one request or raise a :class:`WriteError`."""
        body = "\n".join(lines).encode("utf-8")
        response = self._post("/write", params=self._params, data=body)
        if response.status_code == 404 and "database not found" in response.text:
            self._create_database()
            response = self._post("/write", params=self._params, data=body)
        if 200 <= response.status_code < 300:
            return
        raise self._error(response)

    def _create_database(self) -> None:
        name = self.database.replace("\\", "\\\\").replace('"', '\\"')
        response = self._post("/query", data={"q": f'CREATE DATABASE "{name}"'})
        if response.status_code == 200 and "error" not in response.text:
            logger.info(f"{self.description}: created the database")
            return
        raise self._error(response, doing="creating the database")

    def _post(self, path: str, **kwargs: Any) -> requests.Response:
        try:
            return self._session.post(self.url + path, auth=self._auth, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            if speaks_plain_http(exc):
                raise _plain_http(self.description) from exc
            raise RetryableWriteError(f"{self.description}: {_short(exc)}") from exc

    def _error(self, response: requests.Response, doing: str = "") -> WriteError:
        try:
            detail = str(response.json().get("error", ""))
        except ValueError:
            detail = response.headers.get("X-Influxdb-Error", "") or response.text
        what = self.description + (f" ({doing})" if doing else "")
        error = classify_status(
            response.status_code, what, _short(detail), _retry_after(response.headers.get("Retry-After"))
        )
        if response.status_code == 200:  # /query reports statement errors with 200
            error = RetryableWriteError(f"{what}: {_short(detail)}", status=200, long_backoff=True)
        if "retention policy not found" in detail:  # HTTP 500, but only an operator can fix it
            error = RetryableWriteError(
                f"{error}; set influxdb.retention_policy to an existing policy (or null for the default)",
                status=response.status_code,
                long_backoff=True,
            )
        if isinstance(error, WriteAuthError):
            return WriteAuthError(
                f"{error}: check influxdb.username and INFLUXDB_PASSWORD (the user needs WRITE on "
                f"{self.database!r}, and ALL PRIVILEGES once to create it)",
                status=response.status_code,
                long_backoff=True,
            )
        return error

    def close(self) -> None:
        """Close the HTTP session."""
        self._session.close()


def build_writer(settings: InfluxSettings, *, session: requests.Session | None = None) -> Writer:
    """Return the writer for ``settings.api``; raise :class:`SinkError` if it cannot work."""
    if not settings.url:
        raise SinkError("influxdb.url is not set; set INFLUXDB_URL (e.g. http://localhost:8086)")
    parts = urlsplit(settings.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SinkError(
            f"influxdb.url {settings.url!r} is not an http(s) URL; expected e.g. http://localhost:8086"
        )
    writer: Writer
    if settings.api == "v2":
        token = settings.token.get_secret_value() if settings.token else ""
        if not token:
            # Stores that speak the v2 write API without auth (VictoriaMetrics, a proxy) need none;
            # InfluxDB 2.x answers 401, which is retried and logged naming INFLUXDB_TOKEN: nothing is lost.
            logger.warning(
                "influxdb.api is v2 but no token is set (INFLUXDB_TOKEN or influxdb.token_file): "
                "writing without authentication"
            )
        writer = InfluxV2Writer(
            settings.url,
            token,
            settings.org,
            settings.bucket,
            timeout=settings.timeout_seconds,
            verify_tls=settings.verify_tls,
        )
    else:
        password = settings.password.get_secret_value() if settings.password else None
        if settings.username and not password:
            raise SinkError(
                f"influxdb.username is {settings.username!r} but no password is set: set INFLUXDB_PASSWORD"
            )
        writer = InfluxV1Writer(
            settings.url,
            settings.database,
            retention_policy=settings.retention_policy,
            username=settings.username,
            password=password,
            timeout=settings.timeout_seconds,
            verify_tls=settings.verify_tls,
            session=session,
        )
    return writer


def build_forwarder(
    settings: InfluxSettings,
    log: MetricsLog,
    *,
    name: str = DEFAULT_FORWARDER_NAME,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] | None = None,
    on_event: Callable[[ForwarderEvent], object] | None = None,
    session: requests.Session | None = None,
) -> Forwarder:
    """Build (not start) the forwarder for ``settings.api``; raise :class:`SinkError` if it cannot work."""
    writer = build_writer(settings, session=session)
    return Forwarder(
        log,
        writer,
        name,
        batch_size=settings.batch_size,
        flush_interval=settings.flush_interval_seconds,
        max_backoff=settings.max_backoff_seconds,
        clock=clock,
        sleep=sleep,
        on_event=on_event,
    )
