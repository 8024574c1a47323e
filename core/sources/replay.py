"""Replay recorded series through the monitor loop, causally: a poll at ``now`` sees rows up to ``now``.

The replay clock and this source together guarantee no look-ahead: ``history()`` is clipped to the
replay clock, so a refit at simulated time ``t`` can only learn from rows at or before ``t``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from core.data import Dataset
from core.records import PointBatch, SeriesRef
from core.timegrid import to_epoch

__all__ = ["ReplaySeries", "ReplaySource", "replay_series"]


class ReplaySeries:
    """One recorded series: epoch seconds ``t`` (non-decreasing) and values ``y``."""

    def __init__(self, ref: SeriesRef, t: np.ndarray, y: np.ndarray) -> None:
        t = np.asarray(t, dtype=np.float64)
        if len(t) > 1 and np.any(np.diff(t) < 0):
            raise ValueError(f"replay of {ref.id}: timestamps must not decrease")
        self.ref = ref
        self.t = t
        self.y = np.asarray(y, dtype=np.float64)


class ReplaySource:
    """A source over recorded series, driven by a (simulated) clock."""

    name = "replay"

    def __init__(
        self, series: Sequence[ReplaySeries], clock: Callable[[], float], *, start_at: float | None = None
    ) -> None:
        self.series = {s.ref.id: s for s in series}
        self.clock = clock
        # Rows at or before start_at are history: available to refits, never delivered as new points.
        self._cursor = {
            sid: 0 if start_at is None else int(np.searchsorted(s.t, start_at, side="right"))
            for sid, s in self.series.items()
        }

    @property
    def start(self) -> float:
        """Return the first timestamp of any series."""
        return min(float(s.t[0]) for s in self.series.values() if len(s.t))

    @property
    def end(self) -> float:
        """Return the last timestamp of any series."""
        return max(float(s.t[-1]) for s in self.series.values() if len(s.t))

    def poll(self, now: float, last_seen: Mapping[str, float]) -> list[PointBatch]:
        """Return each series' rows in ``(last polled, now]``; every row is delivered exactly once."""
        batches = []
        for sid, s in self.series.items():
            lo = self._cursor[sid]
            hi = int(np.searchsorted(s.t, now, side="right"))
            if hi > lo:
                self._cursor[sid] = hi
                batches.append(PointBatch(s.ref, s.t[lo:hi], s.y[lo:hi], self.name))
        return batches

    def history(
        self, series: SeriesRef, start: float, end: float, max_points: int | None = None
    ) -> PointBatch:
        """Return the rows in ``[start, min(end, now)]``: never a row from the replay's future.

        Recorded rows are returned as they are (``max_points`` is ignored: replays are short).
        """
        s = self.series.get(series.id)
        if s is None:
            return PointBatch(series, np.empty(0), np.empty(0), self.name)
        end = min(end, self.clock())
        lo = int(np.searchsorted(s.t, start, side="left"))
        hi = int(np.searchsorted(s.t, end, side="right"))
        return PointBatch(series, s.t[lo:hi], s.y[lo:hi], self.name)

    def close(self) -> None:
        """Nothing to release."""


def replay_series(dataset: Dataset, host_label: str = "host") -> list[ReplaySeries]:
    """Return the series of a loaded CSV as replay series (ids as in training)."""
    out = []
    for series in dataset.series:
        labels = dict(series.labels)
        ref = SeriesRef(labels=tuple(series.labels), host=labels.get(host_label, series.id))
        t = to_epoch(series.frame["ds"])
        out.append(ReplaySeries(ref, t, series.frame["y"].to_numpy(float)))
    return out
