"""Forward the write-ahead log to a database, losing nothing.

A :class:`Forwarder` is a daemon thread that tails :class:`~core.sinks.wal.MetricsLog` from its own
durable cursor: read up to ``batch_size`` records, encode them as line protocol, write them in one
request with its :class:`~core.protocols.Writer`, and commit the cursor only after the database
acknowledged the request. Writes are never gated on a health check (VictoriaMetrics answers those
differently from InfluxDB): the write itself is the probe. What the writer raises decides what happens
(the ``WriteError`` family, drawn in ``core/errors.py``): a retryable error keeps the batch and retries
with exponential backoff and jitter (an auth error at the longest backoff, with one clear log line); a
rejected batch goes to ``<dir>/spool/<name>.rejected.jsonl`` and the cursor moves on.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from loguru import logger

from core.errors import RetryableWriteError, SinkError, WriteError, WriteRejectedError
from core.protocols import Writer
from core.records import ScoredRecord
from core.sinks.lineproto import encode_records
from core.sinks.wal import Cursor, MetricsLog, Position

__all__ = ["DEFAULT_FORWARDER_NAME", "Forwarder", "ForwarderEvent"]

DEFAULT_FORWARDER_NAME = "influxdb"


@dataclass(frozen=True)
class ForwarderEvent:
    """Something a forwarder did, for telemetry: ``written``, ``failed``, ``rejected`` or ``skipped``."""

    kind: str
    forwarder: str
    records: int = 0
    points: int = 0
    latency: float | None = None
    delay: float | None = None
    error: str | None = None
    lag_records: int = 0


@dataclass
class _Batch:
    records: list[ScoredRecord]
    lines: list[str]
    position: Position
    attempts: int = 0
    written: bool = False


class Forwarder:
    """A daemon thread that moves records from the log's cursor ``name`` to a database, losing none."""

    def __init__(
        self,
        log: MetricsLog,
        writer: Writer,
        name: str = DEFAULT_FORWARDER_NAME,
        *,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        max_backoff: float = 30.0,
        initial_backoff: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        on_event: Callable[[ForwarderEvent], object] | None = None,
        random_fraction: Callable[[], float] = random.random,
        dead_letter_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.log = log
        self.writer = writer
        self.name = name
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_backoff = max_backoff
        self.initial_backoff = min(initial_backoff, max_backoff)
        self.dead_letter_path = log.spool_dir / f"{name}.rejected.jsonl"
        self.dead_letter_max_bytes = dead_letter_max_bytes
        self.cursor = Cursor(log, name)
        self._clock = clock
        self._sleep = sleep
        self._on_event = on_event
        self._random = random_fraction
        # Telemetry (read from other threads; plain ints and floats are safe to read).
        self.records_written = 0
        self.points_written = 0
        self.batches_ok = 0
        self.failures = 0
        self.retries = 0
        self.dead_lettered = 0
        self.last_error: str | None = None
        self.last_success_at: float | None = None
        self.write_latency_last: float | None = None
        self.write_latency_sum = 0.0
        self.write_latency_count = 0
        self._batch: _Batch | None = None
        self._linger_since: float | None = None
        self._failing_since: float | None = None
        self._last_logged_error: str | None = None
        self._wake = threading.Event()
        self._interrupt = threading.Event()
        self._stop = threading.Event()
        self._flushing = 0
        self._closed = False
        self._progress = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"forwarder-{name}", daemon=True)

    # -- public -----------------------------------------------------------------------------------

    @property
    def lag_records(self) -> int:
        """Return the records logged but not yet acknowledged (the spool depth)."""
        return self.cursor.lag_records()

    @property
    def lag_bytes(self) -> int:
        """Return the bytes logged but not yet acknowledged."""
        return self.cursor.lag_bytes()

    @property
    def dropped_records(self) -> int:
        """Return the records deleted unsent because the spool exceeded its size limit."""
        return self.cursor.dropped_records

    def stats(self) -> dict[str, float]:
        """Return the counters for telemetry (read at scrape time; no lock needed)."""
        mean = self.write_latency_sum / self.write_latency_count if self.write_latency_count else 0.0
        return {
            "records_written": self.records_written,
            "points_written": self.points_written,
            "batches_ok": self.batches_ok,
            "failures": self.failures,
            "retries": self.retries,
            "dead_lettered": self.dead_lettered,
            "dropped_records": self.dropped_records,
            "lag_records": self.lag_records,
            "lag_bytes": self.lag_bytes,
            "write_latency_last_seconds": self.write_latency_last or 0.0,
            "write_latency_mean_seconds": mean,
        }

    @property
    def running(self) -> bool:
        """Return whether the thread is alive."""
        return self._thread.is_alive()

    def start(self) -> Forwarder:
        """Start the thread and listen for appends to the log."""
        self.log.add_listener(self.notify)
        self._thread.start()
        logger.info(
            f"{self.name}: forwarding {self.log.path} to {self.writer.description} "
            f"({self.lag_records} records waiting)"
        )
        return self

    def notify(self) -> None:
        """Wake the thread: records were appended."""
        self._wake.set()

    def flush(self, timeout: float, *, until_failure: bool = False) -> bool:
        """Wait until everything logged so far was acknowledged; return False on timeout.

        ``until_failure`` (at shutdown): also give up, at once, when a write fails meanwhile; the
        database is down, waiting out the timeout would only delay the stop (the spool keeps the rest).
        """
        deadline = time.monotonic() + timeout
        with self._progress:
            failures = self.failures
            self._flushing += 1
        try:
            self._interrupt.set()
            self._wake.set()
            with self._progress:
                while not self._drained():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    if until_failure and self.failures > failures:
                        return False
                    self._progress.wait(min(remaining, 0.1))
                return True
        finally:
            with self._progress:
                self._flushing -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Flush for at most ``timeout`` seconds, then stop the thread; return whether all was sent."""
        if self._closed:
            return self._drained()
        self._closed = True
        deadline = time.monotonic() + timeout
        alive = self._thread.is_alive()
        flushed = self.flush(timeout, until_failure=True) if alive else self._drained()
        self._stop.set()
        self._interrupt.set()
        self._wake.set()
        self.log.remove_listener(self.notify)
        if self._thread.ident is not None:
            self._thread.join(max(0.5, deadline - time.monotonic()))
        if self._thread.is_alive():
            logger.warning(f"{self.name}: still waiting for {self.writer.description}; left it running")
        else:
            self.writer.close()
        if not flushed:
            logger.warning(
                f"{self.name}: {self.lag_records} records not yet in the database; they stay in "
                f"{self.log.dir} and are sent on the next start"
            )
        return flushed

    # -- the thread -------------------------------------------------------------------------------

    def _drained(self) -> bool:
        return self._batch is None and self.cursor.lag_records() == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._batch is None and not self._next_batch():
                    continue
                self._send()
            except Exception as exc:  # a bug must not stop forwarding; the data is safe in the log
                logger.exception(f"{self.name}: unexpected error, retrying: {exc}")
                self.failures += 1
                self._wait_backoff(self.max_backoff)
            finally:
                with self._progress:
                    self._progress.notify_all()

    def _next_batch(self) -> bool:
        """Read the next batch, or wait (idle, or lingering for a fuller batch); True when one is ready."""
        pending = self.cursor.unread_records()
        if pending == 0:
            self._linger_since = None
            self._wait_wake(self.flush_interval)
            return False
        if pending < self.batch_size and not self._flushing and not self._stop.is_set():
            now = self._clock()
            if self._linger_since is None:
                self._linger_since = now
            remaining = self._linger_since + self.flush_interval - now
            if remaining > 0:
                self._wait_wake(remaining)
                return False
        self._linger_since = None
        before = self.cursor.read_position
        records, position = self.cursor.read(self.batch_size)
        if not records and position.key <= before.key:
            self._wait_wake(self.flush_interval)  # counted but not readable yet; do not spin
            return False
        lines = encode_records(records)
        if not lines:
            # Only unreadable lines, or records without any field: nothing to send.
            self.cursor.commit(position)
            if records:
                self._emit(ForwarderEvent("skipped", self.name, records=len(records)))
            return False
        self._batch = _Batch(records, lines, position)
        return True

    def _send(self) -> None:
        batch = self._batch
        assert batch is not None
        latency: float | None = None
        if not batch.written:
            if batch.attempts == 0:
                # The cursor file is ready before we send: after the acknowledgement, commit is a rename.
                try:
                    self.cursor.prepare(batch.position)
                except SinkError as exc:
                    logger.warning(f"{self.name}: {exc}; the commit will write it instead")
            started = self._clock()
            try:
                self.writer.write(batch.lines)
            except WriteRejectedError as exc:
                if not self._reject(batch, exc):
                    return
            except RetryableWriteError as exc:
                self._failed(batch, exc)
                return
            else:
                latency = self._clock() - started
            batch.written = True
        try:
            self.cursor.commit(batch.position)
        except SinkError as exc:
            # Sent but not recorded as sent: retry the commit only, never the write.
            logger.error(f"{self.name}: {exc}")
            self._wait_backoff(self.max_backoff)
            return
        self._batch = None
        if latency is not None:
            self._succeeded(batch, latency)
            self._emit(
                ForwarderEvent(
                    "written",
                    self.name,
                    records=len(batch.records),
                    points=len(batch.lines),
                    latency=latency,
                    lag_records=self.cursor.lag_records(),
                )
            )

    def _succeeded(self, batch: _Batch, latency: float) -> None:
        self.records_written += len(batch.records)
        self.points_written += len(batch.lines)
        self.batches_ok += 1
        self.last_success_at = self._clock()
        self.write_latency_last = latency
        self.write_latency_sum += latency
        self.write_latency_count += 1
        if self._failing_since is not None:
            logger.info(
                f"{self.name}: {self.writer.description} takes writes again after "
                f"{self.last_success_at - self._failing_since:.1f}s; catching up "
                f"{self.cursor.lag_records()} records"
            )
        self._failing_since = None
        self._last_logged_error = None

    def _failed(self, batch: _Batch, exc: RetryableWriteError) -> None:
        batch.attempts += 1
        self.failures += 1
        self.retries += 1
        self.last_error = str(exc)
        if self._failing_since is None:
            self._failing_since = self._clock()
        if exc.long_backoff:
            delay = self.max_backoff
        else:
            base = min(self.max_backoff, self.initial_backoff * 2 ** min(batch.attempts - 1, 30))
            delay = base * (0.5 + 0.5 * self._random())
        if exc.retry_after is not None:
            delay = max(delay, min(exc.retry_after, self.max_backoff))
        lag = self.cursor.lag_records()
        if str(exc) != self._last_logged_error:
            # One line per distinct error, not one per retry.
            self._last_logged_error = str(exc)
            log = logger.error if exc.long_backoff else logger.warning  # config problems are errors
            log(f"{self.name}: write failed: {exc}; {lag} records kept in the spool, retrying")
        event = ForwarderEvent(
            "failed", self.name, records=len(batch.records), delay=delay, error=str(exc), lag_records=lag
        )
        self._emit(event)
        self._wait_backoff(delay)

    def _reject(self, batch: _Batch, exc: WriteRejectedError) -> bool:
        """Save a refused batch to the dead-letter file; return False if it could not be saved."""
        self.failures += 1
        self.last_error = str(exc)
        try:
            self._dead_letter(batch, exc)
        except OSError as error:
            # Keep the batch rather than lose it: the cursor stays until the file can be written.
            logger.error(f"{self.dead_letter_path}: cannot save a rejected batch ({error.strerror})")
            self._wait_backoff(self.max_backoff)
            return False
        self.dead_lettered += len(batch.records)
        logger.error(
            f"{self.name}: {exc}; {len(batch.records)} records saved to {self.dead_letter_path} "
            "and skipped (after a partial write the valid points of the batch are stored)"
        )
        self._emit(ForwarderEvent("rejected", self.name, records=len(batch.records), error=str(exc)))
        return True

    def _dead_letter(self, batch: _Batch, exc: WriteError) -> None:
        path = self.dead_letter_path
        if path.exists() and path.stat().st_size > self.dead_letter_max_bytes:
            path.replace(path.with_name(path.name + ".1"))
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        meta = {"rejected_at": stamp, "forwarder": self.name, "status": exc.status, "error": str(exc)}
        head = json.dumps(meta)[:-1]  # the record's own JSON closes the object
        text = "".join(f'{head},"record":{r.to_json()}}}\n' for r in batch.records)
        _append_durably(path, text)

    def _wait_wake(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def _wait_backoff(self, delay: float) -> None:
        if self._sleep is not None:
            self._sleep(delay)
            return
        # flush() and close() cut a backoff short so that shutdown tries once more.
        self._interrupt.wait(delay)
        self._interrupt.clear()

    def _emit(self, event: ForwarderEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # telemetry must not stop forwarding
            logger.exception(f"{self.name}: on_event callback failed")

    def __repr__(self) -> str:
        return f"<Forwarder {self.name} -> {self.writer.description} lag={self.lag_records}>"


def _append_durably(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
