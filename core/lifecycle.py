"""A series' life in the daemon: its data quality measured, and every part forgetting it after the TTL.

quality_tracker(settings, outputs)   core.quality.QualityTracker from ``monitoring.quality`` and
                                     the metrics' physical ranges
quality_outputs(settings)            logs/data_quality.jsonl, and InfluxDB when it is on
forget_everywhere(tracker, ...)      a dropped series leaves the detector's calibration, the model
                                     store and the refit schedule (the monitor and the alert
                                     rules forget their own parts)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from core.config import CPU_METRIC, METRIC_LABEL
from core.quality import QualityOutput, QualityParams, QualityTracker
from core.records import SeriesRef
from core.sinks.quality import QualityFile, QualityForwarder

if TYPE_CHECKING:
    from core.config import Settings
    from core.detector import Detector
    from core.model.store import ModelStore
    from core.refit import Refitter

__all__ = ["expect_restored", "forget_everywhere", "quality_outputs", "quality_tracker", "restored_ref"]


def quality_tracker(settings: Settings, outputs: Sequence[QualityOutput] = ()) -> QualityTracker:
    """Return the data-quality tracker the settings describe (``monitoring.quality``, metric limits)."""
    q, m = settings.monitoring.quality, settings.monitoring
    params = QualityParams(
        interval=m.interval_seconds,
        window=q.window_seconds,
        stale_after=q.stale_after_intervals * m.interval_seconds,
        ttl=q.series_ttl_hours * 3600.0,
        write_every=q.write_interval_seconds,
    )
    limits = {metric.name: metric.limits for metric in settings.metric_list()}
    return QualityTracker(params, limits=limits, outputs=outputs)


def quality_outputs(settings: Settings) -> tuple[list[QualityOutput], QualityForwarder | None]:
    """Return the data_quality outputs: the local file, and InfluxDB when it is configured."""
    outputs: list[QualityOutput] = [QualityFile(settings.monitoring.logs_dir)]
    forwarder = None
    if settings.influxdb.enabled:
        from core.sinks.influx import build_writer

        forwarder = QualityForwarder(
            build_writer(settings.influxdb), max_backoff=settings.influxdb.max_backoff_seconds
        ).start()
        outputs.append(forwarder)
    return outputs, forwarder


def forget_everywhere(
    tracker: QualityTracker, detector: Detector, store: ModelStore, refitter: Refitter
) -> None:
    """Drop a series' state in every part when the tracker drops it (stale past its TTL)."""

    def forget(series: str) -> None:
        detector.drop([series])  # its calibration slot is freed for another series
        store.drop(series)
        refitter.forget(series)

    tracker.on_drop.append(forget)


def restored_ref(series_id: str, host_label: str) -> SeriesRef | None:
    """Return the series of a canonical id (``k=v,...``) as its source names it, or None if unparsable.

    A metric's series carry ``metric=<name>`` first and their host from ``host_label``, exactly as
    ``core.sources.prometheus.MetricQuery.ref`` builds them.
    """
    pairs = [part.split("=", 1) for part in series_id.split(",")]
    if series_id == "default" or any(len(p) != 2 for p in pairs):
        return None
    labels = dict((k, v) for k, v in pairs)
    metric = labels.pop(METRIC_LABEL, None)
    plain = SeriesRef.from_labels(labels, host_label)
    if metric is None:
        return plain
    return SeriesRef(labels=((METRIC_LABEL, metric), *plain.labels), host=plain.host)


def expect_restored(
    tracker: QualityTracker, last_seen: Mapping[str, float], settings: Settings, source: str
) -> int:
    """Track the series a restarted daemon knew (``last_seen``); return how many were taken."""
    labels = {m.name: m.host_label for m in settings.metric_list()}
    taken = 0
    prefix = f"{METRIC_LABEL}="
    for sid, ts in last_seen.items():
        metric = sid[len(prefix) :].split(",", 1)[0] if sid.startswith(prefix) else CPU_METRIC
        host_label = labels.get(metric, settings.prometheus.host_label) if source == "prometheus" else "host"
        ref = restored_ref(sid, host_label)
        if ref is not None and ref.id == sid:
            tracker.expect(ref, ts)
            taken += 1
    return taken
