"""The write path: the durable log first, then the side files; database forwarders tail the log.

    WritePath.write(records)
      -> MetricsLog.append        logs/metrics.jsonl, the write-ahead log (fsynced): the records count
                                  as scored from here on                               (wal.py)
      -> LocalFiles               anomalies.jsonl and the last_seen.json restart hint   (files.py)
    Forwarder threads             tail the log from durable cursors and write InfluxDB (forwarder.py,
                                  influx.py for the writers, lineproto.py for the encoding)

:func:`open_write_path` builds it from the settings. The :class:`WritePath` is the one object the
monitor gets as its durable log (``Monitor(log=...)``): it owns the log, the side files and the
forwarders; closing it stops the forwarders first (what they could not send stays in the log), then
closes the side files and the log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from core.protocols import Forwarding
from core.records import ScoredRecord
from core.sinks.files import LocalFiles
from core.sinks.wal import MetricsLog

if TYPE_CHECKING:
    from core.config import Settings

__all__ = ["WritePath", "open_write_path"]


class WritePath:
    """The durable sink of the loop: the log and side files, and the forwarders that tail the log."""

    def __init__(self, files: LocalFiles, forwarders: Sequence[Forwarding] = ()) -> None:
        self.files = files
        self.log = files.log
        self.forwarders = list(forwarders)

    def write(self, records: Sequence[ScoredRecord]) -> None:
        """Append the records durably (the forwarders listen to the log), then to the side files."""
        self.files.write(records)

    def flush(self, timeout: float) -> bool:
        """Wait (up to ``timeout`` in all) until the forwarders have sent everything (the loop's last
        call: a forwarder whose database fails again meanwhile gives up at once, its records spooled)."""
        deadline = time.monotonic() + timeout
        ok = True
        for fwd in self.forwarders:
            ok = fwd.flush(max(0.0, deadline - time.monotonic()), until_failure=True) and ok
        return ok

    def close(self) -> None:
        """Stop the forwarders (what they could not send stays in the log), then close the files."""
        for fwd in self.forwarders:
            fwd.close(1.0)
        self.files.close()


def open_write_path(settings: Settings, logs_dir: str | Path) -> WritePath:
    """Open the log under ``logs_dir``, start the configured forwarders, open the side files."""
    logs = Path(logs_dir)
    log = MetricsLog(
        logs,
        segment_bytes=settings.spool.segment_bytes,
        max_bytes=settings.spool.max_bytes,
        fsync=settings.spool.fsync,
    )
    forwarders: list[Forwarding] = []
    if settings.influxdb.enabled:
        from core.sinks.influx import build_forwarder

        fwd = build_forwarder(settings.influxdb, log, name="influxdb")
        forwarders.append(fwd.start())
        logger.info(f"writing to InfluxDB {settings.influxdb.api} at {settings.influxdb.url}")
    else:
        logger.info(f"InfluxDB disabled (set INFLUXDB_URL to enable): results stay in {logs}/")
    return WritePath(LocalFiles(log, logs), forwarders)
