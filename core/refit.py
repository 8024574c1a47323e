"""Refit series models on a schedule, off the hot path, and swap the new band in atomically.

A series is due when it has no model of its own, when its model is older than the refit interval, or
when its band is about to run out. The fit runs on an executor: a worker thread in production, inline
in a replay (a simulated clock makes the refit instantaneous there, and causal: the source's history
ends at the simulated now). Failed or impossible fits are retried after a back-off, never in a loop.
With ``plans`` (``core.units.SeriesPlans``) each series is fitted with its metric's model settings and
clipped to its metric's physical range; without, every series gets ``model_settings`` and ``clip``.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from loguru import logger

from core.config import ModelSettings, Settings
from core.errors import AnomalyDetectorError
from core.fsutil import atomic_write_json
from core.model.artifact import ModelArtifact, SeriesModel, save_artifact
from core.model.forecaster import FittedModel, Fitter, choose_and_fit, fit_with_fallback
from core.model.store import ModelStore
from core.protocols import Source
from core.records import SeriesRef
from core.timegrid import DAY, from_epoch
from core.units import SeriesPlans

__all__ = ["DaemonExecutor", "InlineExecutor", "ProcessFitter", "RefitPolicy", "Refitter", "fit_here"]


class DaemonExecutor(Executor):
    """Daemon worker threads: a fit still running at shutdown is abandoned, never waited for.

    (``ThreadPoolExecutor`` joins its workers at interpreter exit, so a 20-second Prophet fit would
    hold up a clean stop; an unfinished refit loses nothing: the old model stays in the artifact.)
    """

    def __init__(self, name: str = "refit", workers: int = 1) -> None:
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None
        ]
        self._queue = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn`` for the worker."""
        if self._shutdown:
            raise RuntimeError("executor is shut down")
        future: Future[Any] = Future()
        self._queue.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; the worker ends after its current job (daemon: it never blocks exit)."""
        self._shutdown = True
        for _ in self._threads:
            self._queue.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered through the future
                future.set_exception(exc)


def fit_here(
    settings: ModelSettings, frame: pd.DataFrame, clip: tuple[float, float] | None, warm: str | None = None
) -> FittedModel:
    """Fit in this process (replays and tests)."""
    return fit_with_fallback(settings, frame, clip=clip, warm=warm)


def _fit_remote(
    settings: ModelSettings, frame: pd.DataFrame, clip: tuple[float, float] | None, warm: str | None = None
) -> FittedModel:
    fitted = fit_with_fallback(settings, frame, clip=clip, warm=warm)
    fitted.forecast = None  # only the band and the serialisation travel back
    return fitted


def _worker_init() -> None:
    """Leave Ctrl-C to the daemon: it reaches the whole process group, and the daemon stops the worker."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ProcessFitter:
    """Fit in a worker process, so the loop never waits for the GIL while Prophet runs.

    The workers (``processes``, ``model.n_jobs``) come from a forkserver (a clean single-threaded parent
    with Prophet preloaded) and each is replaced every 20 fits to bound its memory. ``close`` terminates
    them at once: a fit running at shutdown is abandoned (the old model stays in the artifact), never
    waited for. Results come back over a pipe from our own child process; no model file is ever unpickled.
    """

    def __init__(self, maxtasksperchild: int = 20, processes: int = 1) -> None:
        self._maxtasks = maxtasksperchild
        self._processes = processes
        self._pool: Any = None
        self._lock = threading.Lock()

    def start(self) -> ProcessFitter:
        """Start the forkserver now, from the main thread, with Ctrl-C ignored from its first instant.

        A forkserver's children restore the signal handlers the server started with, and a worker being
        forked cannot set its own before it has imported the fit code: Ctrl-C reaching the process
        group then would print a traceback from the half-started worker. Started with SIGINT ignored
        (kept across exec), the server and every worker ignore it from the start.
        """
        import multiprocessing
        import signal
        from multiprocessing import forkserver

        multiprocessing.get_context("forkserver").set_forkserver_preload(["core.refit", "core._preload"])
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                forkserver.ensure_running()
            finally:
                signal.signal(signal.SIGINT, previous)
        return self

    def __call__(
        self,
        settings: ModelSettings,
        frame: pd.DataFrame,
        clip: tuple[float, float] | None,
        warm: str | None = None,
    ) -> FittedModel:
        """Fit ``frame`` in the worker and return the result."""
        with self._lock:
            if self._pool is None:
                import multiprocessing

                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(["core.refit", "core._preload"])
                self._pool = ctx.Pool(
                    processes=self._processes, maxtasksperchild=self._maxtasks, initializer=_worker_init
                )
            pool = self._pool
        result: FittedModel = pool.apply(_fit_remote, (settings, frame, clip, warm))
        return result

    def close(self) -> None:
        """Stop the worker now."""
        with self._lock:
            if self._pool is not None:
                self._pool.terminate()
                self._pool = None


class InlineExecutor(Executor):
    """Run submitted work immediately in the caller (for replays with a simulated clock)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn`` now and return a completed future."""
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # delivered through the future, as a real executor would
            future.set_exception(exc)
        return future


@dataclass(frozen=True)
class RefitPolicy:
    """When and on what to refit."""

    interval: float  # seconds between refits of a series (0 = only series without a model)
    history: float  # seconds of history a refit uses
    min_rows: int  # fewest points a fit needs
    fallback_rows: int = 0  # a series without a model gets a provisional profile model from this many points
    retry_after: float = 3600.0  # wait after a failed or impossible fit
    prophet_min_span: float = 2 * DAY  # shorter histories get the robust profile model
    max_points: int = 5000  # sources thin longer histories (Prophet's cost grows with the rows)
    horizon_margin: float = DAY  # refit before the band runs out

    @classmethod
    def from_settings(cls, settings: Settings) -> RefitPolicy:
        """Return the policy the settings describe (``monitoring.refit_*``, ``data.min_rows``)."""
        m = settings.monitoring
        return cls(
            interval=m.refit_interval_hours * 3600.0,
            history=m.refit_history_days * DAY,
            min_rows=settings.data.min_rows,
            fallback_rows=m.fallback_min_rows,
        )

    def provisional(self, model: SeriesModel) -> bool:
        """Return whether a model was fitted on fewer than ``min_rows`` points (the robust stand-in)."""
        return self.fallback_rows > 0 and model.train_rows < self.min_rows


@dataclass
class RefitStats:
    """Counters for telemetry."""

    fits: int = 0
    failures: int = 0
    skipped_short: int = 0
    last_seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)


class Refitter:
    """Decide which series are due, fit them on the executor, install the results."""

    def __init__(
        self,
        store: ModelStore,
        source: Source,
        model_settings: ModelSettings,
        policy: RefitPolicy,
        *,
        executor: Executor | None = None,
        artifact_path: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        clip: tuple[float, float] | None = None,
        fitter: Fitter = fit_here,
        persist: bool = True,
        plans: SeriesPlans | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.settings = model_settings
        self.policy = policy
        # As many refit threads as fits may run at once: each waits on its own worker process.
        self.executor = executor or DaemonExecutor(workers=model_settings.n_jobs)
        self.artifact_path = Path(artifact_path) if artifact_path else None
        self.clock = clock
        self.clip = clip
        self.plans = plans
        self.fitter = fitter
        self.stats = RefitStats()
        # The version the artifact on disk holds: the loaded one until a refit rewrites it.
        self.model_version: str | None = store.artifact.model_version if store.artifact else None
        self._pending: dict[str, Future[SeriesModel | None]] = {}
        self._next_try: dict[str, float] = {}
        self._save_lock = threading.Lock()
        self._dirty = False
        self._saved_at = time.monotonic()
        self.save_every = 300.0
        self.persist = persist  # False: refitted models stay in memory (the source is a fallback)
        self._closed = False
        self._said_memory = False
        self._unwritten = False  # a write was queued and has not run yet

    def due(self, series: SeriesRef, now: float) -> bool:
        """Return whether a series should be refitted now."""
        if series.id in self._pending or now < self._next_try.get(series.id, -np.inf):
            return False
        model = self.store.own(series.id)
        if model is None:
            return True
        if self.policy.provisional(model):
            # The stand-in is replaced as soon as the series can have min_rows points.
            step = (model.train_end - model.train_start) / max(model.train_rows - 1, 1)
            return now - model.train_start >= step * (self.policy.min_rows - 1)
        if self.policy.interval > 0 and now - model.train_end >= self.policy.interval:
            return True
        return now >= model.band.end - self.policy.horizon_margin

    def refit_stale(self, now: float, host_label: str = "host") -> list[str]:
        """Submit a fit now for every series whose band has already ended; return their ids.

        At start, after downtime or with a model trained months ago: the points would otherwise be
        scored against a band extrapolated past its end (``stale``) until the first tick's refit lands.
        """
        submitted = []
        for model in self.store.models().values():
            if model.band.end > now or model.id in self._pending:
                continue
            ref = SeriesRef.from_labels(model.labels, host_label)
            if ref.id != model.id:  # a model the source cannot name: the loop's own schedule handles it
                continue
            ended = datetime.fromtimestamp(model.band.end, UTC)
            days = (now - model.band.end) / DAY
            logger.info(
                f"refitting {model.id}: its band ended {ended:%Y-%m-%d}, {days:.0f} days ago "
                f"(fitting the source's last {self.policy.history / DAY:g} days)"
            )
            self._pending[ref.id] = self.executor.submit(self._fit, ref, now)
            submitted.append(ref.id)
        return submitted

    def forget(self, series_id: str) -> None:
        """Forget a dropped series' retry time (a fit still running is installed, then dropped again)."""
        self._next_try.pop(series_id, None)

    def busy(self) -> bool:
        """Return whether a fit is still running."""
        return any(not future.done() for future in self._pending.values())

    def schedule(self, series: Iterable[SeriesRef], now: float) -> int:
        """Submit a fit for every due series; return how many were submitted."""
        submitted = 0
        for ref in series:
            if self.due(ref, now):
                self._pending[ref.id] = self.executor.submit(self._fit, ref, now)
                submitted += 1
        self.collect()
        return submitted

    def collect(self) -> int:
        """Install finished fits; return how many models were replaced."""
        installed = 0
        for sid, future in list(self._pending.items()):
            if not future.done():
                continue
            del self._pending[sid]
            try:
                model = future.result()
            except AnomalyDetectorError as exc:
                self.stats.failures += 1
                self._next_try[sid] = self.clock() + self.policy.retry_after
                logger.warning(
                    f"refit of {sid} failed: {exc}; retrying in {self.policy.retry_after / 60:.0f} min"
                )
                continue
            if model is None:
                continue
            self.store.put(model)
            installed += 1
        if installed and not self.persist and not self._said_memory:
            self._said_memory = True
            logger.warning(
                f"refitted models stay in memory, {self.artifact_path or 'the artifact'} is left as it "
                "is: the source is the simulator fallback, not the series' real history"
            )
        self._dirty = self._dirty or installed > 0
        # Rewriting the artifact (all series) is heavy: once the queue of fits has drained, or at
        # most every save_every seconds while many are running (e.g. a fleet's first fits).
        if self._dirty and (not self._pending or time.monotonic() - self._saved_at >= self.save_every):
            self._save()
        return installed

    def wait(self, timeout: float | None = None) -> None:
        """Wait for pending fits (used at shutdown and in tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for future in list(self._pending.values()):
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                future.result(timeout=remaining)
            except Exception:  # reported by collect()
                pass
        self.collect()

    def close(self) -> None:
        """Stop accepting work (a fit still running is abandoned); save models not yet saved."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        with self._save_lock:  # a write in progress finishes first: no temporary file is left behind
            self._closed = True
        if self._dirty or self._unwritten:
            self._save(now=True)
        close = getattr(self.fitter, "close", None)
        if close is not None:
            close()

    def _fit(self, series: SeriesRef, now: float) -> SeriesModel | None:
        started = time.perf_counter()
        batch = self.source.history(series, now - self.policy.history, now, self.policy.max_points)
        mask = np.isfinite(batch.y) & (batch.t <= now)
        t, y = batch.t[mask], batch.y[mask]
        previous = self.store.own(series.id)
        # A series with no model of its own (or only the stand-in) may get the robust profile model
        # from fallback_rows points, so it is scored on its own values from its first minutes.
        stand_in = self.policy.fallback_rows > 0 and (previous is None or self.policy.provisional(previous))
        needed = self.policy.fallback_rows if stand_in else self.policy.min_rows
        if len(t) < needed:
            self.stats.skipped_short += 1
            wait = 60.0 if stand_in else min(self.policy.retry_after, max(self.policy.interval, 60.0))
            self._next_try[series.id] = now + wait
            logger.debug(f"refit of {series.id} postponed: {len(t)} points, {needed} needed")
            return None
        if previous is not None and t[-1] <= previous.train_end:
            # Nothing new since the last fit (the series is silent): the same data would give the same
            # model. Look again after an interval instead of refitting on every tick of the gap.
            self._next_try[series.id] = now + max(self.policy.interval, 60.0)
            return None
        short = len(t) < self.policy.min_rows  # only a stand-in can be fitted on these
        frame = pd.DataFrame({"ds": from_epoch(t), "y": y})
        settings, clip, unit = self.settings, self.clip, previous.unit if previous else "raw"
        if self.plans is not None:
            plan = self.plans.of(series.id, series.labels)
            settings, clip = plan.model, plan.clip
            unit = plan.unit if previous is None or self.plans.declared else unit
        if short:
            # The stand-in is replaced after min_rows steps: a band of twice that (at least an hour),
            # not the model's days of horizon on a grid of seconds; always the robust profile model.
            step = float(np.median(np.diff(t))) if len(t) > 1 else 60.0
            horizon = max(2 * self.policy.min_rows * step, 3600.0) / DAY
            settings = settings.model_copy(update={"horizon_days": min(horizon, settings.horizon_days)})
        fitted = choose_and_fit(
            settings,
            frame,
            clip=clip,
            span=float(t[-1] - t[0]),
            prophet_min_span=np.inf if short else self.policy.prophet_min_span,
            fitter=self.fitter,  # a short history's profile model is fitted here: milliseconds, no process
            warm=previous.prophet if previous is not None else None,
        )
        self.stats.fits += 1
        if short:  # a stand-in: look again in a minute, not on every tick
            self._next_try[series.id] = now + 60.0
        self.stats.by_kind[fitted.kind] = self.stats.by_kind.get(fitted.kind, 0) + 1
        self.stats.last_seconds = time.perf_counter() - started
        logger.info(
            f"refitted {series.id} ({fitted.kind}, {len(t)} points, {self.stats.last_seconds:.1f} s)"
            + ("" if previous else ": first own model")
        )
        return SeriesModel.from_fitted(
            fitted,
            series.id,
            dict(series.labels),
            unit=unit,
            scale=previous.scale if previous else 1.0,
        )

    def _save(self, *, now: bool = False) -> None:
        """Rewrite the artifact with every current model: on the refit thread, or ``now`` (at close)."""
        self._dirty = False
        self._saved_at = time.monotonic()
        if self.artifact_path is None:
            return
        if not self.persist:
            return
        base = self.store.artifact
        artifact = ModelArtifact(
            models=self.store.models(),
            config_hash=base.config_hash if base else "sha256:unknown",
            model_settings=base.model_settings if base else {"model": self.settings.model_dump(mode="json")},
        )
        if now:
            self._write(artifact, force=True)
        else:
            self._unwritten = True
            self.executor.submit(self._write, artifact)  # serialising many series takes a while

    def _write(self, artifact: ModelArtifact, *, force: bool = False) -> None:
        assert self.artifact_path is not None
        with self._save_lock:
            if self._closed and not force:  # queued before close(), which saves the latest models itself
                return
            self._unwritten = False
            try:
                size = save_artifact(artifact, self.artifact_path)
                self.model_version = artifact.model_version
                self._write_metadata(artifact, size)
            except OSError as exc:
                logger.error(
                    f"cannot update {self.artifact_path} after refit ({exc.strerror}); models kept in memory"
                )

    def _write_metadata(self, artifact: ModelArtifact, size: int) -> None:
        """Keep ``model_metadata.json`` beside the artifact on the version the artifact now holds."""
        assert self.artifact_path is not None
        path = self.artifact_path.parent / "model_metadata.json"
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            metadata = {}
        if not isinstance(metadata, dict):
            metadata = {}
        metadata.update(
            model_version=artifact.model_version,
            created_at=artifact.created_at,
            artifact=str(self.artifact_path),
            artifact_bytes=size,
            config_hash=artifact.config_hash,
            versions=artifact.versions,
            refitted={
                "at": artifact.created_at,
                "series": sorted(artifact.models),
                "source": self.source.name,
            },
        )
        atomic_write_json(path, metadata)
