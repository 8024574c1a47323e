"""Read live points from Prometheus' HTTP API: instant queries, range queries to catch up, history.

    poll(now, last_seen)    T = align_down(now, interval). Every known series needs at most the point T:
                            one instant query at T. Some series is further behind (downtime, restart):
                            a range query from its first missing grid point (at most ``max_catchup``
                            back) to T at step ``interval``, in chunks of at most 10,000 points.
    history(series, a, b)   range queries of the configured query, filtered to one label set, at step
                            ``interval``; a span of more than ``history_max_points`` points comes at
                            the smallest multiple of ``interval`` that fits (still epoch-aligned)
    history_all(a, b)       the same for every series of every metric (train --from-prometheus)
    check()                 one attempt of the configured query at startup: is anybody there?

Timestamps are snapped to the grid (they are the requested evaluation times), so a restarted monitor
asks for, and gets, exactly the same timestamps. NaN and +-Inf values are dropped and counted; stale
series never reach query results (Prometheus leaves the point out), so they are simply absent.

The HTTP layer (requests, the retry budget, decoding and the one-line errors naming the URL) is
``core/sources/prometheus_http.py``; this module is the grid logic on top of it. A malformed answer is
a SourceError naming the query and the offending item.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np
import requests

from core.config import CPU_METRIC, METRIC_LABEL, metric_of_labels
from core.errors import ConfigError, SourceError
from core.records import PointBatch, SeriesRef
from core.sources.prometheus_http import PrometheusHTTP, read_token, redact, snippet
from core.timegrid import align_down

if TYPE_CHECKING:
    from core.config import MetricSettings, MonitoringSettings, PrometheusSettings

__all__ = ["MAX_POINTS_PER_REQUEST", "MetricQuery", "PrometheusSource", "metric_of"]

# Prometheus refuses range queries of more than 11,000 points per series; keep a margin.
MAX_POINTS_PER_REQUEST = 10_000


@dataclass(frozen=True)
class MetricQuery:
    """One metric the source polls: its name, its PromQL query and the label naming the host.

    Series of the metric named ``cpu`` (the seed schema) keep the label set the query returns; every
    other metric's series carry a ``metric`` label first, so ids of different metrics never collide.
    """

    name: str
    query: str
    host_label: str = "instance"

    def ref(self, labels: Mapping[str, str]) -> SeriesRef:
        """Return the series of ``labels`` (as the query returned them) under this metric."""
        plain = SeriesRef.from_labels(labels, self.host_label)
        if self.name == CPU_METRIC:
            return plain
        pairs = ((METRIC_LABEL, self.name), *((k, v) for k, v in plain.labels if k != METRIC_LABEL))
        return SeriesRef(labels=pairs, host=plain.host)


def metric_of(series: SeriesRef) -> str:
    """Return the metric a series belongs to (its ``metric`` label, else ``cpu``)."""
    return metric_of_labels(series.labels)


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
        metrics: Sequence[MetricQuery] | None = None,
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
        self.url = redact(url.rstrip("/"))
        self.metrics = list(metrics) if metrics else [MetricQuery(CPU_METRIC, query, host_label)]
        self.query = self.metrics[0].query
        self.interval = float(interval)
        self.max_catchup = float(max_catchup)
        self.host_label = host_label
        self.timeout = float(timeout_seconds)
        self.max_retries = int(retries)
        self.history_max_points = int(history_max_points)
        self._clock = clock
        self._http = PrometheusHTTP(
            url,
            timeout=self.timeout,
            verify=(ca_file or True) if verify_tls else False,
            bearer_token=read_token(bearer_token_file) if bearer_token_file is not None else None,
            session=session,
            sleep=sleep,
            clock=clock,
            count=self._count,
        )
        self._session = self._http.session
        # Counters for telemetry; poll (monitor loop) and history (refit thread) may run concurrently.
        self._lock = threading.Lock()
        self.requests = 0  # HTTP requests sent, retries included
        self.retries = 0  # requests that were retries of a failed one
        self.failures = 0  # calls (poll, history, check) that raised
        self.dropped_nan = 0  # NaN / +-Inf values left out
        self.points = 0  # points returned by poll

    @classmethod
    def from_settings(
        cls,
        prometheus: PrometheusSettings,
        monitoring: MonitoringSettings,
        metrics: Sequence[MetricSettings] = (),
        **kwargs: Any,
    ) -> PrometheusSource:
        """Build a source from the ``prometheus`` and ``monitoring`` settings and the metrics to poll."""
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
            metrics=[MetricQuery(m.name, m.query, m.host_label) for m in metrics] if metrics else None,
            **kwargs,
        )

    def __repr__(self) -> str:
        names = ",".join(m.name for m in self.metrics)
        return f"PrometheusSource({self.url!r}, metrics={names}, interval={self.interval:g})"

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
        name = metric_of(series)
        wanted = [m for m in self.metrics if m.name == name]
        found = self._span(start, end, max_points, wanted).get(series.id)
        if found is None:
            return self._batch(series, np.empty(0, dtype=np.int64), np.empty(0))
        return self._batch(series, found.k, found.y)

    def history_all(self, start: float, end: float, max_points: int | None = None) -> list[PointBatch]:
        """Return every series of every metric in ``[start, end]``, as :meth:`history` (train mode)."""
        fetched = self._span(start, end, max_points, self.metrics)
        return [self._batch(f.ref, f.k, f.y) for _, f in sorted(fetched.items())]

    def _span(
        self, start: float, end: float, max_points: int | None, metrics: Sequence[MetricQuery]
    ) -> dict[str, _Series]:
        """Fetch ``[start, end]`` (never after now) on the grid, coarsened to at most ``max_points``."""
        limit = self.history_max_points if max_points is None else max(1, int(max_points))
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"history needs finite start and end, got {start} and {end}")
        # Prometheus extrapolates the last sample into the future: never ask beyond now.
        end = min(end, self._clock())
        k_first = -math.floor(-start / self.interval + 1e-9)
        k_last = _index_down(end, self.interval)
        if k_last < k_first:
            return {}
        step = max(1, -((k_first - k_last - 1) // limit))
        k_first = -(-k_first // step) * step
        fetched: dict[str, _Series] = self._guard(lambda: self._fetch(k_first, k_last, step, metrics))
        return fetched

    def check(self) -> int:
        """Run the query once (one attempt, no retry); return how many series it returns now.

        Raise :class:`SourceUnavailable` at once when Prometheus cannot be reached, and
        :class:`SourceError` when it answers but rejects the query or is not a Prometheus API.
        """
        found = 0
        for metric in self.metrics:
            found += self._guard(partial(self._check_one, metric))
        return found

    def _check_one(self, metric: MetricQuery) -> int:
        params = {"query": metric.query, "timeout": repr(self.timeout)}
        return len(self._parse(self._get("/api/v1/query", params, attempts=1), "vector", None, metric))

    def close(self) -> None:
        """Close the HTTP session (an injected one too: the source owns it from then on)."""
        self._session.close()

    # -- fetching ----------------------------------------------------------------------------------

    def _fetch(
        self, k_first: int, k_last: int, step: int, metrics: Sequence[MetricQuery] | None = None
    ) -> dict[str, _Series]:
        """Return every series of every metric at grid indices ``k_first, k_first + step, ..., <= k_last``."""
        out: dict[str, _Series] = {}
        for metric in self.metrics if metrics is None else metrics:
            out.update(self._fetch_one(metric, k_first, k_last, step))
        return out

    def _fetch_one(self, metric: MetricQuery, k_first: int, k_last: int, step: int) -> dict[str, _Series]:
        """Return every series of one metric at grid indices ``k_first, k_first + step, ..., <= k_last``."""
        if k_first == k_last:
            params = {"query": metric.query, "time": self._ts(k_last), "timeout": repr(self.timeout)}
            return self._parse(self._get("/api/v1/query", params), "vector", (k_last, k_last), metric)
        merged: dict[str, list[_Series]] = {}
        a = k_first
        while a <= k_last:
            b = min(k_last, a + (MAX_POINTS_PER_REQUEST - 1) * step)
            params = {
                "query": metric.query,
                "start": self._ts(a),
                "end": self._ts(b),
                "step": repr(step * self.interval),
                "timeout": repr(self.timeout),
            }
            answer = self._get("/api/v1/query_range", params)
            for sid, part in self._parse(answer, "matrix", (a, b), metric).items():
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
        """GET an API endpoint through the HTTP layer (retries within the budget); return ``data``."""
        return self._http.get(
            endpoint, params, attempts=self.max_retries + 1 if attempts is None else attempts
        )

    def _parse(
        self, data: Any, expected: str, window: tuple[int, int] | None, metric: MetricQuery
    ) -> dict[str, _Series]:
        """Turn ``data`` of a query answer into series of ``metric``; keep grid indices inside ``window``."""
        where = f"Prometheus at {self.url}: query {metric.query!r}"
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
            ref = metric.ref(labels)
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
        raise SourceError(f"{where}: malformed answer (a result without a metric): {snippet(repr(item))}")
    labels = item["metric"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise SourceError(f"{where}: malformed answer (labels are not strings): {snippet(repr(labels))}")
    if key not in item and ("histogram" in item or "histograms" in item):
        raise SourceError(f"{where}: returns native histograms; query a number, e.g. histogram_quantile()")
    if key not in item:
        raise SourceError(f"{where}: malformed answer (a result without {key!r}): {snippet(repr(item))}")
    samples = [item[key]] if key == "value" else item[key]
    if not isinstance(samples, list):
        raise SourceError(f"{where}: malformed answer ({key!r} is not a list): {snippet(repr(item))}")
    return labels, samples


def _sample(pair: Any, sid: str, where: str) -> tuple[float, float]:
    """Return (timestamp, value) of one ``[t, "v"]`` pair; NaN and Inf are valid values here."""
    if not isinstance(pair, list) or len(pair) != 2:
        raise SourceError(f"{where}: malformed sample {snippet(repr(pair))} of {sid}; expected [time, value]")
    t, v = pair
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise SourceError(f"{where}: timestamp {snippet(repr(t))} of {sid} is not a number")
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise SourceError(f"{where}: value {snippet(repr(v))} of {sid} at {t} is not a number")
    try:
        return float(t), float(v)
    except ValueError:
        raise SourceError(f"{where}: value {snippet(repr(v))} of {sid} at {t} is not a number") from None
