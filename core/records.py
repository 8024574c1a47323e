"""The data that flows through the monitor loop: series, point batches, scored records.

    Source.poll(now, last_seen) -> [PointBatch]          (one batch per series, points on the interval grid)
    Detector.score_batch(batches) -> ScoredBatch         (all series of a tick in one vectorised pass)
    Detector.score_many(batches) -> [ScoredRecord]       (the same, as rows: ScoredBatch.records())
    Sink.write([ScoredRecord])                            (the write-ahead log first, then the rest)

A :class:`ScoredRecord` is exactly one line of ``logs/metrics.jsonl``; the database forwarders turn the
same records into line protocol, so what was logged as scored is what reaches the database.
"""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np

from core.data import series_id

__all__ = ["PointBatch", "ScoredBatch", "ScoredRecord", "SeriesRef"]


@dataclass(frozen=True)
class SeriesRef:
    """A series: its canonical id, its labels and the ``host`` tag it is written under."""

    labels: tuple[tuple[str, str], ...]
    host: str

    @cached_property
    def id(self) -> str:
        """Return the canonical id (``k=v,k2=v2`` or ``default``); computed once per ref."""
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


_FIELDS = tuple(f.name for f in fields(ScoredRecord))


@dataclass(frozen=True)
class ScoredBatch:
    """The scored points of one tick as columns; rows (records) are built only when asked for.

    Point ``i`` belongs to series ``series[owner[i]]``; the per-point columns are numpy arrays of equal
    length and ``severity`` indexes ``names``.
    """

    series: list[SeriesRef]
    sources: list[str]
    models: list[str]
    owner: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    yhat: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    score: np.ndarray
    is_anomaly: np.ndarray
    severity: np.ndarray
    confidence: np.ndarray
    stale: np.ndarray
    threshold: float
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def records(self) -> list[ScoredRecord]:
        """Return one :class:`ScoredRecord` per point, in order (built without dataclass overhead)."""
        refs = self.series
        ids = [r.id for r in refs]
        labels = [dict(r.labels) for r in refs]
        owner = self.owner.tolist()
        names = np.asarray(self.names, dtype=object)[self.severity].tolist()
        cols = zip(
            self.ts.tolist(),
            [ids[k] for k in owner],
            [labels[k] for k in owner],
            [refs[k].host for k in owner],
            [self.sources[k] for k in owner],
            self.value.tolist(),
            self.yhat.tolist(),
            self.lower.tolist(),
            self.upper.tolist(),
            self.score.tolist(),
            self.is_anomaly.tolist(),
            names,
            self.confidence.tolist(),
            [self.threshold] * len(owner),
            [self.models[k] for k in owner],
            self.stale.tolist(),
            strict=True,
        )
        new, names_ = object.__new__, _FIELDS
        out = []
        # Building many objects that form no cycles: a full garbage collection triggered halfway would
        # traverse every object of the process (measured: 20 ms for 10,000 records, 25-100 ms with it).
        collecting = gc.isenabled()
        gc.disable()
        try:
            for row in cols:
                rec = new(ScoredRecord)
                # The fields a frozen dataclass would set, with a fresh ``extra`` as its default factory.
                rec.__dict__.update(zip(names_, (*row, {}), strict=True))
                out.append(rec)
        finally:
            if collecting:
                gc.enable()
        return out


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _unnum(x: Any) -> float:
    return float("nan") if x is None else float(x)
