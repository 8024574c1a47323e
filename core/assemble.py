"""The one loop, assembled: the daemon (:func:`run_daemon`) and its recorded-replay variant.

    run_daemon(settings, model_path=..., ...)
      artifact   load_model: the file at model_path (missing is fine at the default path only)
      source     core.sources.open_source (Prometheus, or the simulator) or open_replay (a CSV on a
                 simulated clock, as fast as it goes)
      write path core.sinks.open_write_path: the durable log, side files, InfluxDB forwarders
      telemetry  core.telemetry: /metrics, /healthz, /readyz and the system_report.json payload
      refits     core.refit.Refitter with RefitPolicy.from_settings, in a worker process (inline
                 when replaying)
      loop       build_monitor -> core.monitor.Monitor(log=write path)

      replay(series, store, settings, params, ...)
                 the evaluation's wiring: recorded series on a simulated clock, refits inline, the
                 records kept in memory (core.sinks.memory.Collector); evaluate mode and NAB use it

``build_monitor`` is the one constructor of the loop from settings; the benchmarks use it too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from loguru import logger

from core import __version__
from core.alerts import Alerting, open_alerting
from core.calibration import CalibrationParams, SeriesCalibrator
from core.clock import SimClock
from core.data import load_dataset
from core.detector import Detector, calibration_params
from core.errors import ConfigError, ModelError
from core.lifecycle import expect_restored, forget_everywhere, quality_outputs, quality_tracker
from core.model.artifact import ModelArtifact, load_artifact
from core.model.forecaster import Fitter
from core.model.parallel import DaskFitter
from core.model.store import ModelStore
from core.monitor import Monitor, MonitorStats
from core.protocols import QualityWatch, Sink, Source, TickObserver
from core.quality import QualityTracker
from core.records import ScoredRecord
from core.refit import InlineExecutor, ProcessFitter, RefitPolicy, Refitter, fit_here
from core.sinks import WritePath, open_write_path
from core.sinks.files import LogsLock, SystemReport, restore_last_seen
from core.sinks.memory import Collector
from core.sources import open_source
from core.sources.replay import ReplaySeries, ReplaySource, replay_series
from core.sources.shard import ShardedSource, parse_shard
from core.telemetry import Telemetry, TelemetryServer, status_payload
from core.units import SeriesPlans

if TYPE_CHECKING:
    from core.config import Settings
    from core.scoring import ScoreParams

__all__ = ["build_monitor", "load_model", "open_replay", "remove_stale_temp_files", "replay", "run_daemon"]

_STARTED = time.time()  # files older than this come from an earlier process


def remove_stale_temp_files(model_path: Path) -> None:
    """Remove temporary artifact files an interrupted earlier process left beside ``model_path``."""
    for tmp in model_path.parent.glob(f".{model_path.name}.*.tmp"):
        try:
            if tmp.stat().st_mtime < _STARTED:
                tmp.unlink()
                logger.info(f"removed {tmp}, left by an interrupted earlier run")
        except OSError:
            pass


def load_model(model_path: Path, explicit: bool) -> ModelArtifact | None:
    """Return the artifact at ``model_path``; None if it is missing at the default path (not explicit)."""
    if model_path.is_file():
        artifact = load_artifact(model_path)
        logger.info(f"model {artifact.model_version}: {len(artifact.models)} series from {model_path}")
        return artifact
    if explicit:
        raise ModelError(
            f"{model_path}: model file not found; run 'python main.py --mode train' or fix --model-path"
        )
    logger.warning(f"no model at {model_path}: each series gets its own model from the source's history")
    return None


def open_replay(settings: Settings, dataset: str) -> tuple[ReplaySource, SimClock, float, Settings]:
    """Return a replay of ``dataset`` on a simulated clock, its duration and the settings it runs with.

    The tick is the smallest median spacing of the series; refits follow the monitoring settings on
    the simulated clock, exactly as the NAB mode replays a file (``core.evaluation.nab.run.replay_file``).
    """
    recorded = replay_series(load_dataset(settings, dataset))
    step = min(float(np.median(np.diff(r.t))) for r in recorded)
    sim = SimClock(min(float(r.t[0]) for r in recorded) - step)
    source = ReplaySource(recorded, sim, start_at=sim())
    m = settings.monitoring.model_copy(update={"interval_seconds": step})
    logger.info(f"source: replay of {dataset} ({len(recorded)} series, step {step:g} s)")
    return source, sim, source.end - sim() + step, settings.model_copy(update={"monitoring": m})


def calibrated_detector(store: ModelStore, settings: Settings, source: Source) -> Detector:
    """Return the detector of the loop: calibrated online, new series primed from the source's history.

    Each series is decided on its metric's side and dead zone (``metrics:``).
    """
    calibration = calibration_params(settings)
    units = {mod.unit for mod in store.models().values()}
    return Detector(
        store,
        settings.scoring.params(),
        calibration,
        history=source.history,
        prime_seconds=calibration.prime_rows * settings.monitoring.interval_seconds,
        plans=SeriesPlans(settings, source=source.name, model_units=units),
    )


def build_monitor(
    source: Source,
    store: ModelStore,
    settings: Settings,
    *,
    log: Sink,
    detector: Detector | None = None,
    refitter: Refitter | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], object] | None = None,
    stop: threading.Event | None = None,
    observers: Sequence[TickObserver] = (),
    quality: QualityWatch | None = None,
) -> Monitor:
    """Return the loop over ``source`` scoring with ``store``, writing durably to ``log``."""
    return Monitor(
        source,
        detector or calibrated_detector(store, settings, source),
        log=log,
        interval=settings.monitoring.interval_seconds,
        refitter=refitter,
        clock=clock,
        sleep=sleep,
        stop=stop,
        last_seen=restore_last_seen(settings.monitoring.logs_dir),
        observers=observers,
        flush_timeout=max(5.0, settings.influxdb.timeout_seconds),
        quality=quality,
    )


def _serve_telemetry(settings: Settings, telemetry: Telemetry, path: WritePath) -> TelemetryServer | None:
    t = settings.telemetry
    if not t.enabled:
        return None
    try:
        server = TelemetryServer(telemetry, t.host, t.port).start()
    except OSError as exc:
        path.close()
        raise ConfigError(
            f"telemetry.port {t.port} on {t.host} is not available "
            f"({exc.strerror}); set TELEMETRY_PORT (0 = any free port) or telemetry.enabled: false"
        ) from exc
    logger.info(f"self-metrics on http://{t.host}:{server.port}/metrics (/healthz, /readyz)")
    return server


def _refitter(
    store: ModelStore, source: Source, settings: Settings, model_path: Path, clock: Callable[[], float]
) -> Refitter:
    # A fallback source's history is not the series': its refits never reach the artifact.
    units = {mod.unit for mod in store.models().values()}
    plans = SeriesPlans(settings, source=source.name, model_units=units)
    replaying = settings.monitoring.source == "replay"
    return Refitter(
        store,
        source,
        settings.model,
        RefitPolicy.from_settings(settings),
        artifact_path=model_path,
        plans=plans,
        clock=clock,
        executor=InlineExecutor() if replaying else None,
        fitter=fit_here if replaying else _fitter(settings),
        persist=getattr(source, "fallback_for", None) is None,
    )


def _fitter(settings: Settings) -> Fitter:
    """Return the daemon's refit fitter: the Dask cluster if configured, else worker processes here."""
    if settings.model.dask_scheduler is not None:
        return DaskFitter(settings.model.dask_scheduler)
    return ProcessFitter(processes=settings.model.n_jobs).start()


STALE_REFIT_WAIT = 120.0  # longest the first tick waits for the refit of bands that already ended


def _refit_stale_first(refitter: Refitter, settings: Settings, stop: threading.Event) -> None:
    """Refit every series whose band ended before now, so the first tick scores against a fresh band.

    Waits (interruptibly) up to STALE_REFIT_WAIT; a longer fit goes on behind the loop. Nothing is
    lost meanwhile: the source's next poll catches the points up.
    """
    started = time.monotonic()
    host_label = settings.prometheus.host_label if refitter.source.name == "prometheus" else "host"
    stale = refitter.refit_stale(time.time(), host_label)
    if not stale:
        return
    while refitter.busy() and not stop.is_set() and time.monotonic() - started < STALE_REFIT_WAIT:
        stop.wait(0.1)
    refitter.collect()
    now = time.time()
    fresh = [sid for sid in stale if (m := refitter.store.own(sid)) is not None and m.band.end > now]
    left = [sid for sid in stale if sid not in fresh]
    took = time.monotonic() - started
    logger.info(f"{len(fresh)} of {len(stale)} stale band(s) refitted in {took:.1f} s; the loop starts")
    if left:
        why = "still fitting" if refitter.busy() else "no history in the source yet"
        logger.warning(f"still on an ended band ({why}): {', '.join(left)}")


def _status_file(
    settings: Settings, monitor: Monitor, refitter: Refitter, path: WritePath, telemetry: Telemetry
) -> SystemReport:
    store, started = refitter.store, time.time()
    return SystemReport(
        Path(settings.monitoring.logs_dir) / "system_report.json",
        lambda: status_payload(
            version=__version__,
            started_at=started,
            source=monitor.source.name,
            model_version=refitter.model_version,  # the artifact's, after each refit rewrites it
            models=store.models(),
            monitor=monitor.stats,
            refits=refitter.stats,
            spool={"bytes": path.log.total_bytes(), "dropped_records": path.log.dropped_records},
            forwarders=telemetry.forwarder_stats(),
            settings=settings.redacted(),
        ),
    )


def run_daemon(
    settings: Settings,
    *,
    model_path: Path,
    explicit_model: bool = False,
    dataset: str = "dataset.csv",
    duration: float | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[], object] | None = None,
    lock: LogsLock | None = None,
) -> MonitorStats:
    """Assemble the daemon from ``settings`` and run it until ``duration`` passes or ``stop`` is set.

    ``on_start`` runs just before the first tick (the CLI installs its signal handlers there). ``lock``
    is the logs directory's lock if the caller took it already (the CLI does, before logging starts).
    """
    held = lock or LogsLock(settings.monitoring.logs_dir)
    try:
        return _run_daemon(
            settings,
            model_path=model_path,
            explicit_model=explicit_model,
            dataset=dataset,
            duration=duration,
            stop=stop,
            on_start=on_start,
        )
    finally:
        if lock is None:
            held.close()


def _run_daemon(
    settings: Settings,
    *,
    model_path: Path,
    explicit_model: bool,
    dataset: str,
    duration: float | None,
    stop: threading.Event | None,
    on_start: Callable[[], object] | None,
) -> MonitorStats:
    artifact = load_model(model_path, explicit_model)
    remove_stale_temp_files(model_path)
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], object] | None = None
    run_for = duration
    if settings.monitoring.source == "replay":
        source: Source
        source, sim, run_for, settings = open_replay(settings, dataset)
        clock, sleep = sim, sim.sleep
    else:
        source = open_source(settings)
    if settings.monitoring.shard is not None:
        index, count = parse_shard(settings.monitoring.shard)
        source = ShardedSource(source, index, count)
        logger.info(f"shard {index}/{count}: this instance monitors the series whose id hashes to {index}")
    store = ModelStore(artifact)
    telemetry = Telemetry(interval=settings.monitoring.interval_seconds)
    telemetry.set_source(source.name, getattr(source, "fallback_for", None))
    path = open_write_path(settings, settings.monitoring.logs_dir)
    for fwd in path.forwarders:
        telemetry.add_forwarder(fwd.name, fwd.stats)
    telemetry.watch_models(lambda: {sid: mod.train_end for sid, mod in store.models().items()})
    server = _serve_telemetry(settings, telemetry, path)
    refitter = _refitter(store, source, settings, model_path, clock)
    stop = stop or threading.Event()
    outputs, quality_forwarder = quality_outputs(settings)
    tracker = quality_tracker(settings, outputs)
    telemetry.watch_quality(tracker.snapshot, settings.monitoring.quality.series_metrics_cap)
    if quality_forwarder is not None:
        telemetry.add_forwarder(quality_forwarder.name, quality_forwarder.stats)
    monitor = build_monitor(
        source, store, settings, log=path, refitter=refitter, clock=clock, sleep=sleep, stop=stop,
        observers=[telemetry], quality=tracker,
    )  # fmt: skip
    forget_everywhere(tracker, monitor.detector, store, refitter)
    expect_restored(tracker, monitor.last_seen, settings, source.name)
    report = _status_file(settings, monitor, refitter, path, telemetry)
    monitor.observers.append(report)
    alerting = _alerting(settings, store, telemetry, tracker)
    if alerting is not None:
        monitor.observers.append(alerting)
        tracker.on_drop.append(alerting.engine.forget)
    if on_start is not None:
        on_start()
    if settings.monitoring.source != "replay":
        _refit_stale_first(refitter, settings, stop)
    every = settings.monitoring.interval_seconds
    logger.info(f"monitoring every {every:g} s" + (f" for {duration:g} s" if duration else ""))
    try:
        return monitor.run(duration=run_for)
    finally:
        if alerting is not None:
            alerting.close(clock())
        report.write(status="stopped")
        if quality_forwarder is not None:
            quality_forwarder.close(max(1.0, settings.influxdb.timeout_seconds))
        if server is not None:
            server.close()


def _alerting(
    settings: Settings, store: ModelStore, telemetry: Telemetry, tracker: QualityTracker
) -> Alerting | None:
    """Return the alerting observer (outbox thread started), wired to model ages and spool backlog."""

    def model_age(series: str, now: float) -> float | None:
        mod = store.models().get(series)
        return None if mod is None else max(0.0, now - mod.train_end)

    def backlog() -> float:
        return float(sum(s.get("lag_records", 0) for s in telemetry.forwarder_stats().values()))

    alerting = open_alerting(
        settings.alerts,
        settings.monitoring.logs_dir,
        model_age=model_age,
        backlog=backlog,
        quality=tracker.snapshot,
    )
    if alerting is not None:
        telemetry.watch_alerts(alerting.outbox.stats)
    return alerting


def replay(
    series: list[ReplaySeries],
    store: ModelStore,
    settings: Settings,
    params: ScoreParams,
    *,
    start_at: float,
    interval: float,
    policy: RefitPolicy | None,
    clip: tuple[float, float] | None = None,
    calibrator: Callable[[CalibrationParams], SeriesCalibrator] = SeriesCalibrator,
) -> dict[str, list[ScoredRecord]]:
    """Replay rows after ``start_at`` through the monitor loop on a simulated clock; return records."""
    clock = SimClock(start_at)
    source = ReplaySource(series, clock, start_at=start_at)
    collector = Collector()
    refitter = None
    if policy is not None:
        refitter = Refitter(
            store, source, settings.model, policy, executor=InlineExecutor(), clock=clock, clip=clip
        )
    detector = Detector(
        store,
        params,
        calibration_params(settings),
        history=source.history,
        prime_seconds=calibration_params(settings).prime_rows * interval,
        calibrator=calibrator,
    )
    monitor = Monitor(
        source,
        detector,
        [collector],
        interval=interval,
        refitter=refitter,
        clock=clock,
        sleep=clock.sleep,
    )
    monitor.run(duration=source.end - start_at + interval)
    out: dict[str, list[ScoredRecord]] = {s.ref.id: [] for s in series}
    for record in collector.records:
        out[record.series].append(record)
    return out
