"""The data that flows through the monitor loop: series, point batches, scored records; and the protocols.

    Source.poll(now, last_seen) -> [PointBatch]          (one batch per series, points on the interval grid)
    Detector.score_many(batches) -> [ScoredRecord]       (all series of a tick in one vectorised pass)
    Sink.write([ScoredRecord])                            (the write-ahead log first, then the rest)

A :class:`ScoredRecord` is exactly one line of ``logs/metrics.jsonl``; the database forwarders turn the
same records into line protocol, so what was logged as scored is what reaches the database.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from core.data import series_id

__all__ = [
    "PointBatch",
    "ScoredRecord",
    "SeriesRef",
    "Sink",
    "Source",
    "align_down",
    "grid_times",
]


@dataclass(frozen=True)
class SeriesRef:
    """A series: its canonical id, its labels and the ``host`` tag it is written under."""

    labels: tuple[tuple[str, str], ...]
    host: str

    @property
    def id(self) -> str:
        """Return the canonical id (``k=v,k2=v2`` or ``default``)."""
        return series_id(self.labels)

    @classmethod
    def from_labels(cls, labels: Mapping[str, str], host_label: str = "host") -> SeriesRef:
        """Build a ref from a label mapping; ``host`` is the host label's value, else the whole id."""
        pairs = tuple((str(k), str(v)) for k, v in labels.items() if k != "__name__")
        values = dict(pairs)
        only_host = len(pairs) == 1 and host_label in values
        host = values[host_label] if only_host else series_id(pairs)
        if host_label in values and not only_host:
            # Keep the host readable; the other labels keep distinct series distinct.
            rest = ",".join(f"{k}={v}" for k, v in pairs if k != host_label)
            host = f"{values[host_label]}/{rest}"
        return cls(labels=pairs, host=host)


@dataclass
class PointBatch:
    """New points of one series: epoch seconds ``t`` (UTC, increasing) and values ``y``."""

    series: SeriesRef
    t: np.ndarray
    y: np.ndarray
    source: str

    def __post_init__(self) -> None:
        self.t = np.asarray(self.t, dtype=np.float64)
        self.y = np.asarray(self.y, dtype=np.float64)
        if self.t.shape != self.y.shape:
            raise ValueError("a point batch needs as many timestamps as values")


@dataclass(frozen=True)
class ScoredRecord:
    """One scored point: the value, its band, the decision (one line of ``metrics.jsonl``)."""

    ts: float
    series: str
    labels: Mapping[str, str]
    host: str
    source: str
    value: float
    yhat: float
    lower: float
    upper: float
    score: float
    is_anomaly: bool
    severity: str
    confidence: float
    threshold: float
    model: str
    stale: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Return the record as one JSON line (no newline); NaN becomes null."""
        data = {
            "ts": self.ts,
            "time": datetime.fromtimestamp(self.ts, UTC).isoformat().replace("+00:00", "Z"),
            "series": self.series,
            "labels": dict(self.labels),
            "host": self.host,
            "source": self.source,
            "value": _num(self.value),
            "yhat": _num(self.yhat),
            "lower": _num(self.lower),
            "upper": _num(self.upper),
            "score": _num(self.score),
            "is_anomaly": self.is_anomaly,
            "severity": self.severity,
            "confidence": _num(self.confidence),
            "threshold": self.threshold,
            "model": self.model,
            "stale": self.stale,
        }
        if self.extra:
            data["extra"] = dict(self.extra)
        return json.dumps(data, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, line: str | bytes) -> ScoredRecord:
        """Parse one line written by :meth:`to_json`."""
        d = json.loads(line)
        return cls(
            ts=float(d["ts"]),
            series=d["series"],
            labels=d.get("labels", {}),
            host=d["host"],
            source=d["source"],
            value=_unnum(d["value"]),
            yhat=_unnum(d["yhat"]),
            lower=_unnum(d["lower"]),
            upper=_unnum(d["upper"]),
            score=_unnum(d["score"]),
            is_anomaly=bool(d["is_anomaly"]),
            severity=d["severity"],
            confidence=_unnum(d["confidence"]),
            threshold=float(d["threshold"]),
            model=d.get("model", ""),
            stale=bool(d.get("stale", False)),
            extra=d.get("extra", {}),
        )


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _unnum(x: Any) -> float:
    return float("nan") if x is None else float(x)


def align_down(t: float, interval: float) -> float:
    """Return the last grid time (a multiple of ``interval`` since the epoch) at or before ``t``."""
    return math.floor(t / interval + 1e-9) * interval


def grid_times(after: float, until: float, interval: float, limit: int | None = None) -> np.ndarray:
    """Return the grid times in ``(after, until]``, the most recent ``limit`` of them if given."""
    first = align_down(after, interval) + interval
    last = align_down(until, interval)
    if last < first:
        return np.empty(0)
    n = int(round((last - first) / interval)) + 1
    if limit is not None and n > limit:
        first += (n - limit) * interval
        n = limit
    return first + interval * np.arange(n, dtype=np.float64)


class Source(Protocol):
    """Where points come from (Prometheus, the simulator, a CSV replay)."""

    name: str

    def poll(self, now: float, last_seen: Mapping[str, float]) -> Sequence[PointBatch]:
        """Return the new grid points of every live series up to ``now``.

        A series in ``last_seen`` gets every grid point in ``(last_seen[id], now]`` (at most
        ``max_catchup`` of history); a series not in it gets only its latest grid point.
        """
        ...

    def history(
        self, series: SeriesRef, start: float, end: float, max_points: int | None = None
    ) -> PointBatch:
        """Return the series' points in ``[start, end]`` (used to refit models).

        A source may return a coarser, evenly spaced subset to stay within ``max_points``.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class Sink(Protocol):
    """Where scored records go (the write-ahead log and files; database forwarders read the log)."""

    def write(self, records: Sequence[ScoredRecord]) -> None:
        """Accept records durably (return only once they will not be lost)."""
        ...

    def flush(self, timeout: float) -> bool:
        """Push out anything pending; return whether everything went out in time."""
        ...

    def close(self) -> None:
        """Flush what can be flushed and release resources."""
        ...
