"""Fit many series at once: joblib worker processes here, or a Dask cluster when one is configured.

Every fit is isolated: a series whose fit raises (or whose Stan optimisation passes
``model.fit_timeout_seconds``) gets the robust profile model, and the failure is reported in its
:class:`FitOutcome`; the other series go on. Results come back in the order of the jobs, and a fit is
the same function of the same data wherever it runs, so the bands equal a serial run's bit for bit.
Progress goes to a callback (the CLI draws a bar; this library never touches the terminal).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.config import ModelSettings
from core.errors import ConfigError
from core.model.forecaster import FittedModel, ProfileForecaster, fit_with_fallback

__all__ = ["DaskFitter", "FitJob", "FitOutcome", "describe_failures", "fit_many"]


@dataclass(frozen=True)
class FitJob:
    """One series to fit: its id, its clean frame (``ds``, ``y``), the value range to clip to, and its
    own model settings (None = the run's)."""

    id: str
    frame: pd.DataFrame
    clip: tuple[float, float] | None = None
    settings: ModelSettings | None = None


@dataclass
class FitOutcome:
    """The fit of one job; ``error`` names what went wrong when the series got the fallback instead."""

    id: str
    fitted: FittedModel
    error: str = ""


def _fit_one(settings: ModelSettings, job: FitJob, keep_forecast: bool) -> FitOutcome:
    """Fit one job in a worker; with ``model.fallback`` any failure gets the profile model instead."""
    settings = job.settings or settings
    try:
        fitted = fit_with_fallback(settings, job.frame, clip=job.clip)
        error = fitted.note if fitted.kind != settings.kind else ""
    except Exception as exc:  # isolation: one series' failure, whatever it is, must not stop the rest
        if not settings.fallback:
            raise
        error = f"{type(exc).__name__}: {exc}"
        fitted = ProfileForecaster(settings).fit(job.frame, clip=job.clip)
        fitted.note = f"fallback to profile model: {error}"
    if not keep_forecast:
        fitted.forecast = None  # only the band and the serialisation travel back
    return FitOutcome(job.id, fitted, error)


CONNECT_TIMEOUT = 10.0  # seconds to reach the scheduler before the run is refused


def _client(address: str) -> Any:
    """Connect to the Dask scheduler at ``address``; raise ConfigError naming it and the fix."""
    try:
        from dask.distributed import Client
    except ImportError as exc:  # pragma: no cover - dask is pinned in requirements.txt
        raise ConfigError(
            "model.dask_scheduler is set but dask.distributed is not installed; "
            "pip install 'dask[distributed]' or unset model.dask_scheduler"
        ) from exc
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"model.dask_scheduler: cannot reach the Dask scheduler at {address} ({exc}); "
            f"start it (dask scheduler) or unset model.dask_scheduler to fit here"
        ) from exc
    return client


@contextmanager
def _dask_backend(address: str) -> Iterator[None]:
    """Route joblib's work to the Dask scheduler at ``address`` for the duration of the block."""
    import joblib

    client = _client(address)
    try:
        # The client is current inside the block: joblib's dask backend submits to it.
        with client.as_current(), joblib.parallel_config(backend="dask"):
            yield
    finally:
        client.close()


def fit_many(
    settings: ModelSettings,
    jobs: Sequence[FitJob],
    *,
    keep_forecast: bool = False,
    progress: Callable[[FitOutcome], None] | None = None,
) -> list[FitOutcome]:
    """Fit every job (``model.n_jobs`` processes, or ``model.dask_scheduler``); return outcomes in order.

    ``progress`` is called once per finished series, in the caller's process.
    """
    if not jobs:
        return []
    if settings.dask_scheduler is None and (settings.n_jobs == 1 or len(jobs) == 1):
        outcomes = []
        for job in jobs:
            outcomes.append(_fit_one(settings, job, keep_forecast))
            if progress is not None:
                progress(outcomes[-1])
        return outcomes
    from joblib import Parallel, delayed

    def run(parallel: Parallel) -> list[FitOutcome]:
        results: list[FitOutcome] = []
        for outcome in parallel(delayed(_fit_one)(settings, job, keep_forecast) for job in jobs):
            results.append(outcome)
            if progress is not None:
                progress(outcome)
        return results

    if settings.dask_scheduler is not None:
        with _dask_backend(settings.dask_scheduler):
            return run(Parallel(n_jobs=-1, return_as="generator"))
    return run(Parallel(n_jobs=min(settings.n_jobs, len(jobs)), backend="loky", return_as="generator"))


def describe_failures(outcomes: Sequence[FitOutcome]) -> list[str]:
    """Return one line per series that got the fallback because its fit failed or timed out."""
    return [f"series {o.id}: {o.error}" for o in outcomes if o.error]


def _fit_remote(
    settings: ModelSettings, frame: pd.DataFrame, clip: tuple[float, float] | None
) -> FittedModel:
    fitted = fit_with_fallback(settings, frame, clip=clip)
    fitted.forecast = None
    return fitted


class DaskFitter:
    """A refit fitter (``core.model.forecaster.Fitter``) that runs each fit on a Dask cluster."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._client: Any = None

    def __call__(
        self, settings: ModelSettings, frame: pd.DataFrame, clip: tuple[float, float] | None
    ) -> FittedModel:
        """Fit ``frame`` on a Dask worker and return the result."""
        if self._client is None:
            self._client = _client(self.address)
        result: FittedModel = self._client.submit(_fit_remote, settings, frame, clip, pure=False).result()
        return result

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        if self._client is not None:
            self._client.close()
            self._client = None
