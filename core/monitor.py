"""The monitor loop: poll, score, write, refit; by deadline, one isolated tick at a time.

The same loop runs in production (wall clock, Prometheus or the simulator, a refit thread) and in
evaluation (a simulated clock and a replay source): what is measured offline is what runs online.

Scheduling: ticks fall on the grid of multiples of ``interval`` (epoch-aligned). If a tick overruns,
the missed grid times are counted and skipped, not bunched: the next poll catches their points up
anyway. ``stop`` (an Event set by SIGTERM/SIGINT) ends the wait at once; the current tick finishes,
then every sink is flushed and closed.

Durability is explicit: ``log`` is the durable sink (the daemon's ``core.sinks.WritePath``). When it
refuses a write, the points are not scored and the tick fails loudly; every other sink in ``sinks`` is
best-effort (its failure is counted and logged, the loop goes on).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from loguru import logger

from core.detector import Detector
from core.errors import SinkError, SourceError, SourceUnavailable
from core.protocols import QualityWatch, Refits, Sink, Source, TickObserver
from core.records import PointBatch, ScoredRecord, SeriesRef
from core.timegrid import align_down

__all__ = ["Monitor", "MonitorStats"]


@dataclass
class MonitorStats:
    """What the loop has done so far (also the body of system_report.json)."""

    started_at: float = 0.0
    ticks: int = 0
    missed_ticks: int = 0
    points: int = 0
    anomalies: int = 0
    anomalies_by_severity: dict[str, int] = field(default_factory=dict)
    source_errors: int = 0
    sink_errors: int = 0
    last_tick_at: float | None = None
    last_tick_seconds: float = 0.0
    series: int = 0


class Monitor:
    """Poll the source, score, write to the durable log then the other sinks, refit when due."""

    def __init__(
        self,
        source: Source,
        detector: Detector,
        sinks: Sequence[Sink] = (),
        *,
        log: Sink | None = None,
        interval: float,
        refitter: Refits | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
        stop: threading.Event | None = None,
        last_seen: Mapping[str, float] | None = None,
        observers: Sequence[TickObserver] = (),
        flush_timeout: float = 30.0,
        quality: QualityWatch | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.source = source
        self.detector = detector
        self.log = log
        self.sinks = list(sinks)
        self.interval = interval
        self.refitter = refitter
        self.clock = clock
        self.stop = stop or threading.Event()
        self.sleep = sleep or self.stop.wait
        self.last_seen: dict[str, float] = dict(last_seen or {})
        self.series: dict[str, SeriesRef] = {}
        self.observers = list(observers)
        self.flush_timeout = flush_timeout
        self.quality = quality
        self.stats = MonitorStats()

    def run(self, duration: float | None = None) -> MonitorStats:
        """Tick until ``duration`` seconds have passed or ``stop`` is set; then flush and close sinks."""
        start = self.clock()
        self.stats.started_at = start
        deadline = start
        try:
            while not self.stop.is_set():
                now = self.clock()
                if duration is not None and now - start >= duration:
                    break
                self.tick(now)
                deadline = align_down(now, self.interval) + self.interval
                after = self.clock()
                if after >= deadline:
                    missed = math.floor((after - deadline) / self.interval) + 1
                    self.stats.missed_ticks += missed
                    for observer in self.observers:
                        observer.on_missed(missed)
                    deadline += missed * self.interval
                    logger.warning(
                        f"tick took {after - now:.2f} s; skipped {missed} tick(s) of {self.interval:g} s"
                    )
                wait = deadline - after
                if duration is not None:
                    wait = min(wait, start + duration - after)
                if wait > 0:
                    self.sleep(wait)
        finally:
            self.close()
        return self.stats

    def tick(self, now: float) -> list[ScoredRecord]:
        """Run one poll-score-write cycle at time ``now``; errors of one part never stop the loop."""
        started = time.perf_counter()
        try:
            batches = self.source.poll(now, self.last_seen)
        except SourceUnavailable as exc:
            self.stats.source_errors += 1
            self._error("source", exc)
            logger.warning(f"source unavailable: {exc}; will catch up on the next tick")
            batches = []
        except SourceError as exc:
            self.stats.source_errors += 1
            self._error("source", exc)
            logger.error(f"source error: {exc}")
            batches = []
        fresh = self._fresh(batches)
        if self.quality is not None:
            self._measure(now, fresh)
        records = self.detector.score_many(fresh)
        if records:
            self._write(records)
            for batch in batches:
                if len(batch.t):
                    self.last_seen[batch.series.id] = float(batch.t[-1])
        if self.refitter is not None:
            self.refitter.schedule(list(self.series.values()), now)
        seconds = time.perf_counter() - started
        self._account(now, seconds, records)
        return records

    def close(self) -> None:
        """Flush every sink (bounded by ``flush_timeout``) and close it: the durable log first."""
        for sink in [self.log, *self.sinks] if self.log is not None else self.sinks:
            try:
                if not sink.flush(self.flush_timeout):
                    logger.warning(
                        f"{type(sink).__name__}: not everything was sent before shutdown; kept in the spool"
                    )
            except SinkError as exc:
                logger.error(f"flushing {type(sink).__name__} failed: {exc}")
            try:
                sink.close()
            except SinkError as exc:
                logger.error(f"closing {type(sink).__name__} failed: {exc}")
        if self.refitter is not None:
            self.refitter.close()
        self.source.close()

    def _measure(self, now: float, fresh: Sequence[PointBatch]) -> None:
        """Measure data quality; forget the series the tracker dropped (stale past their TTL)."""
        assert self.quality is not None
        for sid in self.quality.observe(now, fresh):
            self.series.pop(sid, None)
            self.last_seen.pop(sid, None)
            logger.info(f"series {sid}: stale longer than its TTL; dropped with its state")

    def _fresh(self, batches: Sequence[PointBatch]) -> list[PointBatch]:
        fresh = []
        for batch in batches:
            self.series.setdefault(batch.series.id, batch.series)
            last = self.last_seen.get(batch.series.id)
            if last is not None and len(batch.t) and batch.t[0] <= last:
                keep = batch.t > last  # never score a timestamp twice
                batch = PointBatch(batch.series, batch.t[keep], batch.y[keep], batch.source)
            fresh.append(batch)
        return fresh

    def _write(self, records: list[ScoredRecord]) -> None:
        if self.log is not None:
            try:
                self.log.write(records)
            except SinkError as exc:
                # The durable log refused: these points are not scored; fail loudly.
                self._sink_failed(exc)
                raise
        for sink in self.sinks:
            try:
                sink.write(records)
            except SinkError as exc:
                self._sink_failed(exc)
                logger.error(f"{type(sink).__name__} failed: {exc}")

    def _sink_failed(self, exc: SinkError) -> None:
        self.stats.sink_errors += 1
        self._error("sink", exc)

    def _account(self, now: float, seconds: float, records: list[ScoredRecord]) -> None:
        s = self.stats
        s.ticks += 1
        s.points += len(records)
        s.last_tick_at = now
        s.last_tick_seconds = seconds
        s.series = len(self.series)
        for r in records:
            if r.is_anomaly:
                s.anomalies += 1
                s.anomalies_by_severity[r.severity] = s.anomalies_by_severity.get(r.severity, 0) + 1
        for observer in self.observers:
            observer.on_tick(now, seconds, records)

    def _error(self, kind: str, exc: BaseException) -> None:
        for observer in self.observers:
            observer.on_error(kind, exc)
