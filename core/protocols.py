"""The loop's contracts, on one page: what the monitor and the write path need from their parts.

    Source.poll(now, last_seen) -> [PointBatch]     Prometheus, the simulator, a CSV replay
    Sink.write([ScoredRecord])                      the write path (durable log first), in-memory sinks
    TickObserver.on_tick/on_missed/on_error         telemetry, the status file
    Refits.schedule(series, now)                    core.refit.Refitter
    QualityWatch.observe(now, batches)              core.quality.QualityTracker (data quality, TTL)
    Writer.write(lines)                             a database client the forwarder sends batches with
    Forwarding.flush/close                          a database forwarder tailing the durable log

The monitor depends on these protocols only, never on the concrete classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from core.records import PointBatch, ScoredRecord, SeriesRef

__all__ = ["Forwarding", "QualityWatch", "Refits", "Sink", "Source", "TickObserver", "Writer"]


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


class Refits(Protocol):
    """Schedules refits of due series (``core.refit.Refitter``)."""

    def schedule(self, series: Sequence[SeriesRef], now: float) -> int:
        """Submit fits for the due series."""
        ...

    def close(self) -> None:
        """Stop accepting work."""
        ...


class QualityWatch(Protocol):
    """Measures the data quality of each tick's points (``core.quality.QualityTracker``)."""

    def observe(self, now: float, batches: Sequence[PointBatch]) -> list[str]:
        """Measure the new points; return the ids of series to forget (stale past their TTL)."""
        ...


class TickObserver(Protocol):
    """Receives what each tick did (telemetry implements it)."""

    def on_tick(self, now: float, seconds: float, records: Sequence[ScoredRecord]) -> None:
        """Record one completed tick."""
        ...

    def on_missed(self, count: int) -> None:
        """Record grid times skipped because a tick overran."""
        ...

    def on_error(self, kind: str, exc: BaseException) -> None:
        """Record a failed poll or write."""
        ...


class Writer(Protocol):
    """Send line-protocol lines to a database in one request."""

    description: str

    def write(self, lines: Sequence[str]) -> None:
        """Write the lines (ms precision) or raise a :class:`~core.errors.WriteError`."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class Forwarding(Protocol):
    """A database forwarder tailing the write-ahead log (``core.sinks.forwarder.Forwarder``)."""

    name: str

    def stats(self) -> Mapping[str, float]:
        """Return its counters (for telemetry)."""
        ...

    def flush(self, timeout: float, *, until_failure: bool = False) -> bool:
        """Wait until everything in the log is in the database (``until_failure``: or a write fails)."""
        ...

    def close(self, timeout: float) -> object:
        """Flush what can be flushed, then stop."""
        ...
