"""Data quality per live series, measured in the loop: completeness, staleness, validity, timeliness.

    QualityTracker.observe(now, batches) -> [series ids whose TTL ran out]
      completeness       share of the grid points of the last ``window`` seconds that arrived (a
                         series seen for less than the window is judged over the time it was seen)
      staleness_seconds  now - the timestamp of the series' newest point
      stale              staleness above ``stale_after`` (1.5 intervals by default): the series has
                         stopped. Stale is not zero: nothing is scored or written for its silence
      invalid points     NaN, +-inf, and finite values outside the metric's physical range
                         (``MetricSettings.limits``; CPU 0-100)
      lateness_seconds   poll time - timestamp of the newest point that poll delivered (timeliness)

Everything is columnar: one slot per series in numpy arrays, one vectorised pass per tick over all
points of all series (the loop over batches is per series, as the detector's); the completeness
window is a ring of presence flags, one column per grid step (at most ``MAX_WINDOW_STEPS``).

Rows (:class:`QualityRow`, the ``data_quality`` measurement) are emitted to the outputs at most once
per ``write_every`` seconds per series, and at once when a series turns stale or fresh again. A series
stale for longer than ``ttl`` is dropped: its slot is freed and ``observe`` returns its id so that the
loop forgets its state (calibration, last point, alert state); a series that comes back later starts
as a new one.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.config import metric_of_labels
from core.records import PointBatch, SeriesRef

__all__ = [
    "MAX_WINDOW_STEPS",
    "QualityOutput",
    "QualityParams",
    "QualityRow",
    "QualitySnapshot",
    "QualityTracker",
    "metric_name",
]

MAX_WINDOW_STEPS = 1440  # columns of the completeness ring: memory is series x steps bytes
_INVALID_KINDS = ("nan", "inf", "range")


def metric_name(series: SeriesRef) -> str:
    """Return the metric a series belongs to: its ``metric`` label, else ``cpu`` (the seed schema)."""
    return metric_of_labels(series.labels)


@dataclass(frozen=True)
class QualityParams:
    """How quality is judged: the poll interval, the windows and the bounds."""

    interval: float
    window: float = 3600.0  # completeness window
    stale_after: float | None = None  # None = 1.5 intervals
    ttl: float = 86400.0  # a series stale this long is dropped
    write_every: float = 60.0  # data_quality rows per series at most this often (and on a change)

    @property
    def stale_seconds(self) -> float:
        """Return the staleness above which a series is stale."""
        return 1.5 * self.interval if self.stale_after is None else self.stale_after

    @property
    def steps(self) -> int:
        """Return the number of grid steps of the completeness window."""
        return max(1, min(MAX_WINDOW_STEPS, round(self.window / self.interval)))


@dataclass(frozen=True)
class QualityRow:
    """One ``data_quality`` point of one series."""

    ts: float
    series: str
    metric: str
    host: str
    completeness: float
    staleness_seconds: float
    invalid_points: int  # since the series' previous row
    lateness_seconds: float
    stale: bool


@dataclass(frozen=True)
class QualitySnapshot:
    """The current quality of every tracked series (columns in the order of ``series``)."""

    now: float
    series: tuple[str, ...]
    metrics: tuple[str, ...]
    hosts: tuple[str, ...]
    completeness: np.ndarray
    staleness: np.ndarray
    lateness: np.ndarray
    stale: np.ndarray
    invalid_total: Mapping[tuple[str, str], int]  # (metric, kind) -> points since start
    dropped_total: int

    def of(self, series: str) -> dict[str, float | bool] | None:
        """Return one series' quality as a dict, or None if it is not tracked."""
        try:
            i = self.series.index(series)
        except ValueError:
            return None
        return {
            "completeness": float(self.completeness[i]),
            "staleness_seconds": float(self.staleness[i]),
            "lateness_seconds": float(self.lateness[i]),
            "stale": bool(self.stale[i]),
        }


class QualityOutput(Protocol):
    """Where data_quality rows go (a local file, InfluxDB)."""

    def write_quality(self, rows: Sequence[QualityRow]) -> None:
        """Accept the rows (best effort; never raise into the loop)."""
        ...


class QualityTracker:
    """Measure every series' quality each tick; emit rows at a bounded cadence; drop after the TTL."""

    def __init__(
        self,
        params: QualityParams,
        *,
        limits: Mapping[str, tuple[float | None, float | None]] | None = None,
        outputs: Sequence[QualityOutput] = (),
        on_drop: Sequence[Callable[[str], object]] = (),
    ) -> None:
        self.params = params
        self.limits = dict(limits or {})
        self.outputs = list(outputs)
        self.on_drop = list(on_drop)
        self._slots: dict[str, int] = {}
        self._refs: list[SeriesRef | None] = []
        self._metrics: list[str] = []
        self._free: list[int] = []
        self._k_now: int | None = None
        self._lock = threading.Lock()
        self.invalid_total: dict[tuple[str, str], int] = {}
        self.dropped_total = 0
        self._grow(64)

    # -- state -------------------------------------------------------------------------------------

    def _grow(self, capacity: int) -> None:
        old = len(self._refs)
        extra = capacity - old

        def more(a: np.ndarray | None, fill: float | bool | int, dtype: type) -> np.ndarray:
            tail = np.full((extra, *(() if a is None else a.shape[1:])), fill, dtype=dtype)
            return tail if a is None else np.concatenate([a, tail])

        g = getattr
        self._last_ts = more(g(self, "_last_ts", None), np.nan, np.float64)
        self._first_k = more(g(self, "_first_k", None), 0, np.int64)
        self._lateness = more(g(self, "_lateness", None), np.nan, np.float64)
        self._lo = more(g(self, "_lo", None), -np.inf, np.float64)
        self._hi = more(g(self, "_hi", None), np.inf, np.float64)
        self._invalid = more(g(self, "_invalid", None), 0, np.int64)
        self._stale = more(g(self, "_stale", None), False, np.bool_)
        self._active = more(g(self, "_active", None), False, np.bool_)
        self._written = more(g(self, "_written", None), -np.inf, np.float64)
        ring = g(self, "_ring", None)
        tail = np.zeros((extra, self.params.steps), dtype=np.bool_)
        self._ring = tail if ring is None else np.concatenate([ring, tail])
        self._refs += [None] * extra
        self._metrics += [""] * extra
        self._free += list(range(capacity - 1, old - 1, -1))

    def _slot(self, ref: SeriesRef, k_first: int) -> int:
        slot = self._slots.get(ref.id)
        if slot is not None:
            return slot
        if not self._free:
            self._grow(2 * len(self._refs))
        slot = self._free.pop()
        metric = metric_name(ref)
        lo, hi = self.limits.get(metric, (None, None))
        self._slots[ref.id] = slot
        self._refs[slot], self._metrics[slot] = ref, metric
        self._last_ts[slot], self._lateness[slot] = np.nan, np.nan
        self._first_k[slot] = k_first
        self._lo[slot] = -np.inf if lo is None else lo
        self._hi[slot] = np.inf if hi is None else hi
        self._invalid[slot], self._stale[slot], self._written[slot] = 0, False, -np.inf
        self._ring[slot] = False
        self._active[slot] = True
        return slot

    def _release(self, slot: int) -> str:
        ref = self._refs[slot]
        assert ref is not None
        del self._slots[ref.id]
        self._refs[slot], self._metrics[slot] = None, ""
        self._active[slot] = False
        self._free.append(slot)
        return ref.id

    def expect(self, ref: SeriesRef, last_ts: float) -> None:
        """Track a series known from before a restart (its last point at ``last_ts``, none since).

        A series that does not come back is then reported stale, and dropped after the TTL, instead of
        being forgotten silently.
        """
        with self._lock:
            if ref.id not in self._slots:
                slot = self._slot(ref, math.floor(last_ts / self.params.interval + 1e-9))
                self._last_ts[slot] = last_ts

    # -- the tick ----------------------------------------------------------------------------------

    def observe(self, now: float, batches: Sequence[PointBatch]) -> list[str]:
        """Measure this tick's points; emit the rows due; return the ids of series dropped (TTL)."""
        p = self.params
        k_now = math.floor(now / p.interval + 1e-9)
        with self._lock:
            self._advance(k_now)
            batches = [b for b in batches if len(b.t)]
            if batches:
                self._take(now, k_now, batches)
            rows, dropped = self._judge(now, k_now)
        for output in self.outputs:
            output.write_quality(rows)
        for sid in dropped:
            for forget in self.on_drop:
                forget(sid)
        return dropped

    def _advance(self, k_now: int) -> None:
        """Clear the ring columns of the grid steps that entered the window since the last tick."""
        steps = self.params.steps
        if self._k_now is not None and k_now > self._k_now:
            if k_now - self._k_now >= steps:
                self._ring[:] = False
            else:
                cols = np.arange(self._k_now + 1, k_now + 1) % steps
                self._ring[:, cols] = False
        if self._k_now is None or k_now > self._k_now:
            self._k_now = k_now

    def _take(self, now: float, k_now: int, batches: Sequence[PointBatch]) -> None:
        p = self.params
        lengths = np.fromiter((len(b.t) for b in batches), dtype=np.int64, count=len(batches))
        slots = np.fromiter(
            (self._slot(b.series, math.floor(b.t[0] / p.interval + 1e-9)) for b in batches),
            dtype=np.int64,
            count=len(batches),
        )
        t = np.concatenate([b.t for b in batches])
        y = np.concatenate([b.y for b in batches])
        at = np.repeat(slots, lengths)
        k = np.floor(t / p.interval + 1e-9).astype(np.int64)
        inside = (k > k_now - p.steps) & (k <= k_now)
        self._ring[at[inside], k[inside] % p.steps] = True
        newest = t[np.cumsum(lengths) - 1]  # batches are sorted by time
        self._last_ts[slots] = np.fmax(self._last_ts[slots], newest)
        self._lateness[slots] = now - newest
        nan, inf = np.isnan(y), np.isinf(y)
        out = ~nan & ~inf & ((y < self._lo[at]) | (y > self._hi[at]))
        bad = nan | inf | out
        if bad.any():
            self._invalid += np.bincount(at[bad], minlength=len(self._refs))
            for kind, mask in zip(_INVALID_KINDS, (nan, inf, out), strict=True):
                for slot, count in zip(*np.unique(at[mask], return_counts=True), strict=True):
                    key = (self._metrics[slot], kind)
                    self.invalid_total[key] = self.invalid_total.get(key, 0) + int(count)

    def _completeness(self, k_now: int) -> np.ndarray:
        present = np.count_nonzero(self._ring, axis=1)
        expected = np.clip(k_now - self._first_k + 1, 1, self.params.steps)
        return np.minimum(present / expected, 1.0)

    def _judge(self, now: float, k_now: int) -> tuple[list[QualityRow], list[str]]:
        p = self.params
        staleness = now - self._last_ts
        stale = self._active & (staleness > p.stale_seconds)
        changed = self._active & (stale != self._stale)
        self._stale = stale
        due = np.flatnonzero(self._active & (changed | (now - self._written >= p.write_every)))
        rows: list[QualityRow] = []
        if len(due):
            completeness = self._completeness(k_now)
            for slot in due.tolist():
                ref = self._refs[slot]
                assert ref is not None
                rows.append(
                    QualityRow(
                        ts=now,
                        series=ref.id,
                        metric=self._metrics[slot],
                        host=ref.host,
                        completeness=float(completeness[slot]),
                        staleness_seconds=float(staleness[slot]),
                        invalid_points=int(self._invalid[slot]),
                        lateness_seconds=float(self._lateness[slot]),
                        stale=bool(stale[slot]),
                    )
                )
            self._written[due] = now
            self._invalid[due] = 0
        expired = np.flatnonzero(self._active & (staleness > p.ttl))
        dropped = [self._release(slot) for slot in expired.tolist()]
        self.dropped_total += len(dropped)
        return rows, dropped

    # -- reading -----------------------------------------------------------------------------------

    def snapshot(self, now: float) -> QualitySnapshot:
        """Return every tracked series' current quality (staleness measured at ``now``)."""
        with self._lock:
            active = np.flatnonzero(self._active)
            k_now = self._k_now if self._k_now is not None else math.floor(now / self.params.interval)
            completeness = self._completeness(k_now)[active]
            refs = [self._refs[i] for i in active.tolist()]
            staleness = now - self._last_ts[active]
            return QualitySnapshot(
                now=now,
                series=tuple(r.id for r in refs if r is not None),
                metrics=tuple(self._metrics[i] for i in active.tolist()),
                hosts=tuple(r.host for r in refs if r is not None),
                completeness=completeness,
                staleness=staleness,
                lateness=self._lateness[active].copy(),
                stale=staleness > self.params.stale_seconds,
                invalid_total=dict(self.invalid_total),
                dropped_total=self.dropped_total,
            )

    def tracked(self) -> int:
        """Return how many series are tracked."""
        return len(self._slots)
