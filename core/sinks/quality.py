"""Where ``data_quality`` rows go: ``logs/data_quality.jsonl`` and, with InfluxDB on, the database.

Quality rows are few (one per series per ``monitoring.quality.write_interval_seconds``, and one on
each stale/fresh change) and describe the moment they are written, so they do not go through the
write-ahead log of the scores: the file gets every row (append, rotated at ``max_bytes`` to ``.1``);
the :class:`QualityForwarder` sends them from a bounded in-memory queue on its own thread, retrying
with backoff while the database is down, and drops the oldest rows (counted) beyond ``max_rows``.
A restart loses what was queued: the next rows say the same thing about the present.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from core.errors import RetryableWriteError, WriteError
from core.protocols import Writer
from core.quality import QualityRow
from core.sinks.lineproto import encode_quality

__all__ = ["QualityFile", "QualityForwarder"]


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class QualityFile:
    """Append data_quality rows as JSON lines to ``<logs>/data_quality.jsonl`` (rotated at max_bytes)."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.path = Path(directory) / "data_quality.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.errors = 0

    def write_quality(self, rows: Sequence[QualityRow]) -> None:
        """Append the rows; a failed write is logged and counted, never raised into the loop."""
        if not rows:
            return
        text = "".join(
            json.dumps(
                {
                    "ts": r.ts,
                    "series": r.series,
                    "metric": r.metric,
                    "host": r.host,
                    "completeness": _num(r.completeness),
                    "staleness_seconds": _num(r.staleness_seconds),
                    "invalid_points": r.invalid_points,
                    "lateness_seconds": _num(r.lateness_seconds),
                    "stale": r.stale,
                },
                separators=(",", ":"),
            )
            + "\n"
            for r in rows
        )
        try:
            if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
            with self.path.open("a", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            self.errors += 1
            logger.error(f"{self.path}: could not append data quality rows: {exc}")


class QualityForwarder:
    """Send data_quality lines to InfluxDB from a bounded queue, on a thread (best effort, retried)."""

    name = "influxdb-quality"

    def __init__(
        self,
        writer: Writer,
        *,
        batch_size: int = 5000,
        max_rows: int = 200_000,
        max_backoff: float = 30.0,
    ) -> None:
        self.writer = writer
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self._queue: deque[str] = deque(maxlen=max_rows)
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="quality-forwarder", daemon=True)
        self.sent = 0
        self.batches = 0
        self.failures = 0
        self.dropped = 0
        self._head = 0  # lines ever removed from the queue's left end (sent or dropped)

    def start(self) -> QualityForwarder:
        """Start the sending thread."""
        self._thread.start()
        return self

    def write_quality(self, rows: Sequence[QualityRow]) -> None:
        """Queue the rows' lines (the oldest are dropped, counted, when the queue is full)."""
        if not rows:
            return
        lines = encode_quality(rows)
        with self._cond:
            room = (self._queue.maxlen or 0) - len(self._queue)
            overflow = max(0, len(lines) - room)
            self.dropped += overflow
            self._head += overflow  # the deque drops them from its left end
            self._queue.extend(lines)
            self._cond.notify()

    def stats(self) -> dict[str, float]:
        """Return the counters under the forwarders' names (telemetry shows them as one more sink)."""
        with self._cond:
            pending = len(self._queue)
        return {
            "batches_ok": self.batches,
            "points_written": self.sent,
            "failures": self.failures,
            "dropped_records": self.dropped,
            "lag_records": pending,
        }

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout``), then stop the thread and the writer."""
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)
        self.writer.close()

    def _run(self) -> None:
        backoff = 0.5
        while True:
            with self._cond:
                while not self._queue and not self._stop:
                    self._cond.wait(1.0)
                if not self._queue:
                    return
                batch = [self._queue[i] for i in range(min(self.batch_size, len(self._queue)))]
                start = self._head
            try:
                self.writer.write(batch)
            except RetryableWriteError as exc:
                self.failures += 1
                logger.warning(f"data quality rows to {self.writer.description}: {exc}; retrying")
                with self._cond:
                    if self._stop:
                        return
                    self._cond.wait(backoff)
                backoff = min(self.max_backoff, backoff * 2)
                continue
            except WriteError as exc:  # refused for good: never retried
                self.failures += 1
                logger.error(f"data quality rows refused by {self.writer.description}: {exc}; dropped")
            else:
                self.sent += len(batch)
                self.batches += 1
                backoff = 0.5
            with self._cond:
                # Only what is left of this batch: overflow may have dropped its first lines meanwhile.
                done = min(len(self._queue), max(0, start + len(batch) - self._head))
                for _ in range(done):
                    self._queue.popleft()
                self._head += done
