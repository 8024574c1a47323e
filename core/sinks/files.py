"""Local files: the write-ahead log ``metrics.jsonl``, ``anomalies.jsonl`` and ``system_report.json``.

:class:`LocalFiles` is the file part of the loop's durable sink (``core.sinks.WritePath``). Its
``write`` returns only once the records are in ``metrics.jsonl`` (flushed, fsynced if configured): from
then on they count as scored, and the database forwarders, which tail that log from durable cursors,
deliver them even across a ``kill -9``. With InfluxDB disabled these files are the whole store.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from loguru import logger

from core.errors import SinkError
from core.fsutil import atomic_write_json
from core.records import ScoredRecord
from core.sinks.wal import MetricsLog

__all__ = ["LocalFiles", "LogsLock", "SystemReport", "restore_last_seen"]

TAIL_BYTES = 8 * 1024 * 1024


class LogsLock:
    """``logs/monitor.lock``: one monitor per logs directory, held (``flock``) for the daemon's life.

    The file holds the holder's PID. A second monitor raises :class:`SinkError` (exit 5) naming it,
    before it writes anything; the kernel releases the lock when the holder exits, even on ``kill -9``.
    ``close`` removes the file (still holding the lock); a monitor that locked a file removed meanwhile
    sees another inode at the path and tries again, so two monitors never hold two files.
    """

    NAME = "monitor.lock"

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / self.NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = self._lock()
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder removed it as we locked it: lock the file now at the path
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def _lock(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", errors="replace").strip() or "unknown"
            os.close(fd)
            raise SinkError(
                f"{self.path.parent} is in use by another monitor (PID {holder}, {self.path}); stop it "
                "first or give this one its own monitoring.logs_dir (LOGS_DIR)"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def close(self) -> None:
        """Remove the file and release the lock."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None


class LocalFiles:
    """The write-ahead log plus the anomaly log and the ``last_seen.json`` hint."""

    def __init__(self, log: MetricsLog, directory: str | Path) -> None:
        self.log = log
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._anomalies = open(self.dir / "anomalies.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        self._last_seen_path = self.dir / "last_seen.json"
        self._last_seen: dict[str, float] = {}

    def write(self, records: Sequence[ScoredRecord]) -> None:
        """Append the records to the write-ahead log (durably), then to the anomaly log."""
        self.log.append(records)  # the forwarders listen to the log: they wake up by themselves
        anomalous = [r.to_json() for r in records if r.is_anomaly]
        if anomalous:
            self._anomalies.write("\n".join(anomalous) + "\n")
            self._anomalies.flush()
        for r in records:
            if r.ts > self._last_seen.get(r.series, float("-inf")):
                self._last_seen[r.series] = r.ts
        try:
            # A hint only (the log's tail is the truth after a crash): no fsync on the hot path.
            atomic_write_json(self._last_seen_path, self._last_seen, indent=None, durable=False)
        except OSError as exc:  # a hint for restarts only; the log itself is the truth
            logger.debug(f"cannot write {self._last_seen_path}: {exc}")

    def flush(self, timeout: float) -> bool:
        """Nothing pending: every write is already in the files."""
        return True

    def close(self) -> None:
        """Close the files and the log."""
        self._anomalies.close()
        self.log.close()


def restore_last_seen(directory: str | Path) -> dict[str, float]:
    """Return series -> last scored timestamp, from ``last_seen.json`` and the tail of the log.

    The log tail wins: ``last_seen.json`` may lag by one tick after a ``kill -9``, the log cannot.
    """
    base = Path(directory)
    seen: dict[str, float] = {}
    try:
        loaded = json.loads((base / "last_seen.json").read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            seen.update({str(k): float(v) for k, v in loaded.items()})
    except (OSError, ValueError, TypeError):
        pass
    segments = sorted(base.glob("metrics.jsonl.*"), key=lambda p: p.name)
    for path in [*segments[-1:], base / "metrics.jsonl"]:
        for line in _tail_lines(path, TAIL_BYTES):
            try:
                d = json.loads(line)
                sid, ts = str(d["series"]), float(d["ts"])
            except (ValueError, KeyError, TypeError):
                continue
            if ts > seen.get(sid, float("-inf")):
                seen[sid] = ts
    return seen


def _tail_lines(path: Path, size: int) -> list[bytes]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            end = handle.tell()
            handle.seek(max(0, end - size))
            data = handle.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if end > size:
        lines = lines[1:]  # the first one is probably cut
    return [line for line in lines[:-1] if line]  # the last one is empty or torn


class SystemReport:
    """Write ``system_report.json`` (status and counters; never a secret) at most every ``every`` seconds."""

    def __init__(
        self,
        path: str | Path,
        collect: Callable[[], Mapping[str, Any]],
        *,
        every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.collect = collect
        self.every = every
        self.clock = clock
        self._last = float("-inf")
        self._lock = threading.Lock()

    def on_tick(self, now: float, seconds: float, records: Sequence[ScoredRecord]) -> None:
        """Write the report if the last one is old enough."""
        if self.clock() - self._last >= self.every:
            self.write()

    def on_missed(self, count: int) -> None:
        """Nothing to do: the counters carry it."""

    def on_error(self, kind: str, exc: BaseException) -> None:
        """Nothing to do: the counters carry it."""

    def write(self, status: str | None = None) -> None:
        """Write the report now."""
        with self._lock:
            report = dict(self.collect())
            if status is not None:
                report["status"] = status
            try:
                atomic_write_json(self.path, report)
            except (OSError, ValueError) as exc:
                logger.warning(f"cannot write {self.path}: {exc}")
            self._last = self.clock()
