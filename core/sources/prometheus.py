"""Read live points from Prometheus' HTTP API: instant queries, range queries to catch up, history.

    poll(now, last_seen)    T = align_down(now, interval). Every known series needs at most the point T:
                            one instant query at T. Some series is further behind (downtime, restart):
                            a range query from its first missing grid point (at most ``max_catchup``
                            back) to T at step ``interval``, in chunks of at most 10,000 points.
    history(series, a, b)   range queries of the configured query, filtered to one label set, at step
                            ``interval``; a span of more than ``history_max_points`` points comes at
                            the smallest multiple of ``interval`` that fits (still epoch-aligned)
    check()                 one attempt of the configured query at startup: is anybody there?

Timestamps are snapped to the grid (they are the requested evaluation times), so a restarted monitor
asks for, and gets, exactly the same timestamps. NaN and +-Inf values are dropped and counted; stale
series never reach query results (Prometheus leaves the point out), so they are simply absent.

Errors, each one line naming the URL:

    SourceUnavailable   refused, reset, timed out, HTTP 5xx/429, answer cut off: retried ``retries``
                        times (backoff 0.2 s, 0.4 s, ...) within a budget of 2 x ``timeout_seconds``
    SourceError         bad PromQL (HTTP 400/422, Prometheus' message), auth (401/403), no API (404),
                        TLS certificate not trusted, malformed answer: never retried

The timeout bounds each connect and each read, not an answer that trickles in byte by byte. The
bearer token goes only into the Authorization header; user:password in the URL never reaches a message.
"""

from __future__ import annotations

import math
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
from loguru import logger

from core.errors import ConfigError, SourceError, SourceUnavailable
from core.records import PointBatch, SeriesRef
from core.timegrid import align_down

if TYPE_CHECKING:
    from core.config import MonitoringSettings, PrometheusSettings

__all__ = ["MAX_POINTS_PER_REQUEST", "PrometheusSource"]

# Prometheus refuses range queries of more than 11,000 points per series; keep a margin.
MAX_POINTS_PER_REQUEST = 10_000
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0
# A request with its retries gives up after this many timeouts' worth of time (never ~16 s).
_BUDGET_TIMEOUTS = 2.0
_RETRY_STATUSES = frozenset({429})


@dataclass
class _Series:
    """One series as fetched: grid indices ``k`` (t = k * interval), values ``y`` (may hold NaN)."""

    ref: SeriesRef
    k: np.ndarray
    y: np.ndarray


class PrometheusSource:
    """The series a PromQL query returns, as points on the epoch-aligned grid of ``interval``."""

    name = "prometheus"

    def __init__(
        self,
        url: str,
        query: str,
        *,
        interval: float,
        max_catchup: float = 86400.0,
        host_label: str = "instance",
        timeout_seconds: float = 5.0,
        retries: int = 2,
        verify_tls: bool = True,
        ca_file: str | None = None,
        bearer_token_file: str | None = None,
        history_max_points: int = 50_000,
        session: requests.Session | None = None,
        sleep: Callable[[float], object] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not interval > 0 or not timeout_seconds > 0 or retries < 0 or max_catchup < 0:
            raise ValueError("need interval > 0, timeout_seconds > 0, retries >= 0 and max_catchup >= 0")
        if history_max_points < 1:
            raise ValueError("history_max_points must be at least 1")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"prometheus.url {url!r} is not an http(s) URL; use e.g. http://prometheus:9090"
            )
        if ca_file is not None and not Path(ca_file).is_file():
            raise ConfigError(
                f"prometheus.ca_file: {ca_file!r} not found; name a PEM file of CA certificates"
            )
        self.url = _redact(url.rstrip("/"))
        self.query = query
        self.interval = float(interval)
        self.max_catchup = float(max_catchup)
        self.host_label = host_label
        self.timeout = float(timeout_seconds)
        self.max_retries = int(retries)
        self.history_max_points = int(history_max_points)
        self._base = url.rstrip("/")
        self._verify: bool | str = (ca_file or True) if verify_tls else False
        self._headers = {"Accept": "application/json", "User-Agent": "anomaly-detector"}
        if bearer_token_file is not None:
            self._headers["Authorization"] = f"Bearer {_read_token(bearer_token_file)}"
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        # Counters for telemetry; poll (monitor loop) and history (refit thread) may run concurrently.
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent, retries included
        self.retries = 0  # requests that were retries of a failed one
        self.failures = 0  # calls (poll, history, check) that raised
        self.dropped_nan = 0  # NaN / +-Inf values left out
        self.points = 0  # points returned by poll

    @classmethod
    def from_settings(
        cls, prometheus: PrometheusSettings, monitoring: MonitoringSettings, **kwargs: Any
    ) -> PrometheusSource:
        """Build a source from the ``prometheus`` and ``monitoring`` settings sections."""
        if not prometheus.url:
            raise ConfigError("prometheus.url is not set; set it in the config file or PROMETHEUS_URL")
        return cls(
            prometheus.url,
            prometheus.query,
            interval=monitoring.interval_seconds,
            max_catchup=monitoring.max_catchup_hours * 3600.0,
            host_label=prometheus.host_label,
            timeout_seconds=prometheus.timeout_seconds,
            retries=prometheus.retries,
            verify_tls=prometheus.verify_tls,
            ca_file=prometheus.ca_file,
            bearer_token_file=prometheus.bearer_token_file,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"PrometheusSource({self.url!r}, query={self.query!r}, interval={self.interval:g})"

    # -- the Source protocol -----------------------------------------------------------------------

    def poll(self, now: float, last_seen: Mapping[str, float]) -> list[PointBatch]:
        """Return the new grid points of every series up to ``now`` (one batch per label set).

        A series in ``last_seen`` gets its points in ``(last_seen[id], T]``, at most ``max_catchup``
        seconds of them; a series not in it gets only the point at T (if it has one).
        """
        k_end = _index(align_down(now, self.interval), self.interval)
        # Grid points after k_floor are within max_catchup (always at least T itself).
        k_floor = k_end - max(1, math.floor(self.max_catchup / self.interval + 1e-9))
        after: dict[str, int] = {}
        for sid, seen in last_seen.items():
            if not math.isnan(seen):
                after[sid] = max(k_floor, _index_down(seen, self.interval))
        k_first = min([k_end, *(k + 1 for k in after.values())])
        fetched = self._guard(lambda: self._fetch(k_first, k_end, 1))
        batches = []
        for sid in sorted(fetched):
            series = fetched[sid]
            keep = series.k > after[sid] if sid in after else series.k == k_end
            batch = self._batch(series.ref, series.k[keep], series.y[keep])
            if len(batch.t):
                batches.append(batch)
                self._count(points=len(batch.t))
        return batches

    def history(
        self, series: SeriesRef, start: float, end: float, max_points: int | None = None
    ) -> PointBatch:
        """Return the series' grid points in ``[start, end]`` (never after now), for refits.

        At step ``interval`` while the span holds at most ``max_points`` (default ``history_max_points``)
        points, else at the smallest multiple of ``interval`` that keeps it under (a coarser grid, still
        epoch-aligned).
        """
        limit = self.history_max_points if max_points is None else max(1, int(max_points))
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"history needs finite start and end, got {start} and {end}")
        # Prometheus extrapolates the last sample into the future: never ask beyond now.
        end = min(end, self._clock())
        k_first = -math.floor(-start / self.interval + 1e-9)
        k_last = _index_down(end, self.interval)
        if k_last < k_first:
            return self._batch(series, np.empty(0, dtype=np.int64), np.empty(0))
        step = max(1, -((k_first - k_last - 1) // limit))
        k_first = -(-k_first // step) * step
        fetched = self._guard(lambda: self._fetch(k_first, k_last, step))
        found = fetched.get(series.id)
        if found is None:
            return self._batch(series, np.empty(0, dtype=np.int64), np.empty(0))
        return self._batch(series, found.k, found.y)

    def check(self) -> int:
        """Run the query once (one attempt, no retry); return how many series it returns now.

        Raise :class:`SourceUnavailable` at once when Prometheus cannot be reached, and
        :class:`SourceError` when it answers but rejects the query or is not a Prometheus API.
        """
        params = {"query": self.query, "timeout": repr(self.timeout)}
        data = self._guard(lambda: self._get("/api/v1/query", params, attempts=1))
        return len(self._guard(lambda: self._parse(data, "vector", None)))

    def close(self) -> None:
        """Close the HTTP session (an injected one too: the source owns it from then on)."""
        self._session.close()

    # -- fetching ----------------------------------------------------------------------------------

    def _fetch(self, k_first: int, k_last: int, step: int) -> dict[str, _Series]:
        """Return every series at grid indices ``k_first, k_first + step, ..., <= k_last``."""
        if k_first == k_last:
            params = {"query": self.query, "time": self._ts(k_last), "timeout": repr(self.timeout)}
            return self._parse(self._get("/api/v1/query", params), "vector", (k_last, k_last))
        merged: dict[str, list[_Series]] = {}
        a = k_first
        while a <= k_last:
            b = min(k_last, a + (MAX_POINTS_PER_REQUEST - 1) * step)
            params = {
                "query": self.query,
                "start": self._ts(a),
                "end": self._ts(b),
                "step": repr(step * self.interval),
                "timeout": repr(self.timeout),
            }
            for sid, part in self._parse(self._get("/api/v1/query_range", params), "matrix", (a, b)).items():
                merged.setdefault(sid, []).append(part)
            a = b + step
        out = {}
        for sid, parts in merged.items():
            k = np.concatenate([p.k for p in parts])
            y = np.concatenate([p.y for p in parts])
            k, first = np.unique(k, return_index=True)
            out[sid] = _Series(parts[0].ref, k, y[first])
        return out

    def _get(self, endpoint: str, params: dict[str, str], *, attempts: int | None = None) -> Any:
        """GET an API endpoint; retry transient failures within the budget; return the ``data`` field."""
        attempts = self.max_retries + 1 if attempts is None else attempts
        url = self._base + endpoint
        started = self._clock()
        deadline = started + _BUDGET_TIMEOUTS * self.timeout
        cause = "no attempt made"
        attempt = 0
        while attempt < attempts:
            attempt += 1
            timeout = max(0.05, min(self.timeout, deadline - self._clock()))
            self._count(requests=1, retries=int(attempt > 1))
            try:
                response = self._session.get(
                    url, params=params, headers=self._headers, timeout=timeout, verify=self._verify
                )
            except requests.exceptions.SSLError as exc:
                if _find(exc, ssl.SSLCertVerificationError) is None:
                    cause = f"TLS error ({_innermost(exc)})"
                else:
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
                cause = _cause(exc, self.timeout)
            except requests.RequestException as exc:  # redirects loop, undecodable gzip, ...
                raise SourceError(f"Prometheus at {self.url}: request failed: {_innermost(exc)}") from exc
            else:
                status = response.status_code
                if status < 500 and status not in _RETRY_STATUSES:
                    return self._decode(response, endpoint, params)
                cause = f"HTTP {status} {response.reason or ''}".rstrip() + f": {_error_text(response)}"
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** (attempt - 1))
            if attempt >= attempts or self._clock() + delay >= deadline:
                break
            logger.debug(
                f"Prometheus at {self.url}: {cause}; retry {attempt} of {attempts - 1} in {delay:g} s"
            )
            self._sleep(delay)
        elapsed = self._clock() - started
        tries = "1 attempt" if attempt == 1 else f"{attempt} attempts"
        raise SourceUnavailable(
            f"Prometheus at {self.url} is unreachable: {cause} ({tries} in {elapsed:.1f} s); "
            "check that it is running and that prometheus.url is right"
        )

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
                    f"({_snippet(response.text)!r}); is prometheus.url a Prometheus server?"
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

    def _parse(self, data: Any, expected: str, window: tuple[int, int] | None) -> dict[str, _Series]:
        """Turn ``data`` of a query answer into series; keep grid indices inside ``window``."""
        where = f"Prometheus at {self.url}: query {self.query!r}"
        if not isinstance(data, dict) or "result" not in data:
            raise SourceError(f"{where}: malformed answer (no data.result); is it a Prometheus API?")
        kind, result = data.get("resultType"), data["result"]
        if kind == "scalar" and expected == "vector":
            kind, result = "vector", [{"metric": {}, "value": result}]
        if kind != expected:
            hint = {
                "matrix": "; it selects a range (x[5m]): wrap it in rate() or avg_over_time()",
                "string": "; it must return numbers",
            }.get(str(kind), "")
            raise SourceError(
                f"{where}: Prometheus returned a {kind!r} result, expected a {expected!r}{hint}"
            )
        if not isinstance(result, list):
            raise SourceError(f"{where}: malformed answer (data.result is not a list)")
        out: dict[str, _Series] = {}
        for item in result:
            labels, samples = _item(item, "value" if expected == "vector" else "values", where)
            ref = SeriesRef.from_labels(labels, self.host_label)
            if ref.id in out:
                raise SourceError(
                    f"{where}: two series share the labels {ref.id!r} once the metric name is dropped; "
                    "aggregate them or tell them apart with label_replace()"
                )
            t = np.empty(len(samples))
            y = np.empty(len(samples))
            for i, pair in enumerate(samples):
                t[i], y[i] = _sample(pair, ref.id, where)
            k = np.round(t / self.interval).astype(np.int64)
            if window is not None:
                inside = (k >= window[0]) & (k <= window[1])
                k, y = k[inside], y[inside]
            out[ref.id] = _Series(ref, k, y)
        return out

    def _batch(self, ref: SeriesRef, k: np.ndarray, y: np.ndarray) -> PointBatch:
        finite = np.isfinite(y)
        self._count(dropped_nan=int(np.count_nonzero(~finite)))
        return PointBatch(ref, k[finite].astype(np.float64) * self.interval, y[finite], self.name)

    def _guard(self, call: Callable[[], Any]) -> Any:
        """Run ``call``, counting a raised SourceError as one failure."""
        try:
            return call()
        except SourceError:
            self._count(failures=1)
            raise

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for counter, delta in deltas.items():
                setattr(self, counter, getattr(self, counter) + delta)

    def _ts(self, k: int) -> str:
        return f"{k * self.interval:.3f}"


# -- helpers -----------------------------------------------------------------------------------------


def _index(t: float, interval: float) -> int:
    """Return the grid index of a grid time."""
    return round(t / interval)


def _index_down(t: float, interval: float) -> int:
    """Return the index of the last grid time at or before ``t`` (as ``align_down``)."""
    if math.isinf(t):
        return -(2**62) if t < 0 else 2**62
    return math.floor(t / interval + 1e-9)


def _item(item: Any, key: str, where: str) -> tuple[dict[str, str], list[Any]]:
    """Validate one result element; return its labels and its sample pairs."""
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise SourceError(f"{where}: malformed answer (a result without a metric): {_snippet(repr(item))}")
    labels = item["metric"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise SourceError(f"{where}: malformed answer (labels are not strings): {_snippet(repr(labels))}")
    if key not in item and ("histogram" in item or "histograms" in item):
        raise SourceError(f"{where}: returns native histograms; query a number, e.g. histogram_quantile()")
    if key not in item:
        raise SourceError(f"{where}: malformed answer (a result without {key!r}): {_snippet(repr(item))}")
    samples = [item[key]] if key == "value" else item[key]
    if not isinstance(samples, list):
        raise SourceError(f"{where}: malformed answer ({key!r} is not a list): {_snippet(repr(item))}")
    return labels, samples


def _sample(pair: Any, sid: str, where: str) -> tuple[float, float]:
    """Return (timestamp, value) of one ``[t, "v"]`` pair; NaN and Inf are valid values here."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise SourceError(
            f"{where}: malformed sample {_snippet(repr(pair))} of {sid}; expected [time, value]"
        )
    t, v = pair
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise SourceError(f"{where}: timestamp {_snippet(repr(t))} of {sid} is not a number")
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise SourceError(f"{where}: value {_snippet(repr(v))} of {sid} at {t} is not a number")
    try:
        return float(t), float(v)
    except ValueError:
        raise SourceError(f"{where}: value {_snippet(repr(v))} of {sid} at {t} is not a number") from None


def _read_token(path: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"prometheus.bearer_token_file: cannot read {path!r} ({reason})") from None
    if not token:
        raise ConfigError(f"prometheus.bearer_token_file: {path!r} is empty; put the token in it")
    return token


def _redact(url: str) -> str:
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
    return _snippet(response.text) or "empty answer"


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _snippet(text: str) -> str:
    return _one_line(text, 120)
