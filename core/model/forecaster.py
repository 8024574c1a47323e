"""Fit one series and precompute its forecast band.

Two models share one interface (``fit(frame) -> FittedModel``):

* :class:`ProphetForecaster` -- Prophet with daily and weekly seasonality; the band is Prophet's
  uncertainty interval evaluated once on a regular grid over the training span plus a horizon.
* :class:`ProfileForecaster` -- a robust seasonal profile (median per time-of-week slot, band from the
  empirical residual quantiles). It needs no optimiser, so it is the fallback when Prophet fails.

Seasonality follows wall-clock time in ``seasonality_timezone``; timestamps stay UTC everywhere else.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from core.band import Band
from core.config import ModelSettings
from core.errors import FitError, ModelError
from core.timegrid import DAY, WEEK, to_epoch

__all__ = [
    "FittedModel",
    "Forecaster",
    "ProfileForecaster",
    "ProphetForecaster",
    "build_forecaster",
    "choose_and_fit",
    "choose_kind",
    "fit_with_fallback",
    "prophet_input",
    "quiet_stan",
]

MAX_GRID_POINTS = 40_000
PREDICT_CHUNK = 2016  # a week at 5 minutes


@dataclass
class FittedModel:
    """A fitted model: its band, its own serialisation (if any) and what it was fitted on."""

    kind: str
    band: Band
    params: str | None  # the model's own serialisation (Prophet's model_to_json), if it has one
    train_start: float
    train_end: float
    train_rows: int
    fit_seconds: float
    forecast: pd.DataFrame | None = field(default=None, repr=False)
    note: str = ""


class Forecaster(Protocol):
    """Fit a series (``ds`` UTC timestamps, ``y`` floats) and return a model with its band."""

    def fit(
        self, frame: pd.DataFrame, *, clip: tuple[float, float] | None = None, warm: str | None = None
    ) -> FittedModel:
        """Fit the series and precompute the band; ``warm`` is a previous fit's state to start from."""
        ...


def _validate(frame: pd.DataFrame) -> pd.DataFrame:
    if not {"ds", "y"} <= set(frame.columns):
        raise FitError("a series to fit needs columns 'ds' and 'y'")
    frame = frame.dropna(subset=["y"])
    if len(frame) < 2:
        raise FitError(f"a series needs at least 2 values to fit, got {len(frame)}")
    return frame


def _grid(t: np.ndarray, horizon: float, step: float | None) -> tuple[float, float, int]:
    """Return (start, step, n) of a regular grid covering the data and the horizon ahead."""
    if step is None:
        diffs = np.diff(t)
        step = float(np.median(diffs)) if diffs.size else 300.0
        step = max(step, 1.0)
    span = (t[-1] - t[0]) + horizon
    step = max(step, span / (MAX_GRID_POINTS - 1))
    start = float(np.floor(t[0] / step) * step)
    n = int(np.ceil((t[-1] + horizon - start) / step)) + 1
    return start, float(step), max(n, 2)


def _clip(band: Band, clip: tuple[float, float] | None) -> Band:
    if clip is None:
        return band
    lo, hi = clip
    return Band(
        start=band.start,
        step=band.step,
        yhat=np.clip(band.yhat, lo, hi),
        lower=np.clip(band.lower, lo, hi),
        upper=np.clip(band.upper, lo, hi),
        trained_until=band.trained_until,
    )


class ProphetForecaster:
    """Prophet per series; the band is computed once on a grid, never per point."""

    kind = "prophet"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings

    def _local(self, ds: pd.Series | pd.DatetimeIndex) -> pd.DatetimeIndex:
        index = pd.DatetimeIndex(ds)
        if index.tz is None:
            index = index.tz_localize("UTC")
        return index.tz_convert(self.settings.seasonality_timezone).tz_localize(None)

    def _seasonalities(self, span: float) -> tuple[bool, bool, bool]:
        """Return (daily, weekly, split weekday/weekend days) for a history of ``span`` seconds.

        Like Prophet's 'auto': a seasonality needs two whole periods of history to be learned.
        """
        s = self.settings
        daily = s.daily_seasonality and span >= 2 * DAY
        weekly = s.weekly_seasonality and span >= 2 * WEEK
        return daily, weekly, daily and weekly and s.weekend_daily_seasonality

    def _frame(self, ds: pd.Series | pd.DatetimeIndex) -> pd.DataFrame:
        """Return Prophet's input: local wall-clock ``ds`` and the weekday/weekend conditions."""
        return prophet_input(self._local(ds))

    def fit(
        self, frame: pd.DataFrame, *, clip: tuple[float, float] | None = None, warm: str | None = None
    ) -> FittedModel:
        """Fit Prophet on the series and precompute the band over the span plus the horizon.

        ``warm`` is the state (:attr:`FittedModel.params`) of an earlier fit of the series: with
        ``model.warm_start`` its parameters start the optimiser (Prophet's documented way of updating a
        fitted model), when they have the shape this fit needs; otherwise the fit starts cold.
        """
        frame = _validate(frame).tail(self.settings.max_train_rows)
        started = time.perf_counter()
        t = to_epoch(frame["ds"])
        model = self._new_model(float(t[-1] - t[0]))
        train = self._frame(frame["ds"]).assign(y=frame["y"].to_numpy(float))
        timeout = self.settings.fit_timeout_seconds
        try:
            # cmdstanpy stops an optimisation that runs past ``timeout`` (TimeoutError): the series
            # falls back instead of holding a worker.
            kwargs: dict[str, Any] = {"timeout": timeout} if timeout else {}
            init = warm_start_init(warm) if warm and self.settings.warm_start else None
            if init is not None:
                kwargs["init"] = init
            model.fit(train, **kwargs)
        except TimeoutError as exc:
            raise FitError(f"Prophet fit timed out after {timeout:g} s (model.fit_timeout_seconds)") from exc
        except Exception as exc:  # Prophet/Stan raise a variety of errors; the caller may fall back
            raise FitError(f"Prophet fit failed: {exc}") from exc
        start, step, n = _grid(t, self.settings.horizon_days * DAY, self.settings.band_step_seconds)
        grid = pd.to_datetime(start + step * np.arange(n), unit="s", utc=True)
        # In chunks: Prophet's uncertainty sampling holds rows x samples matrices; chunks bound the memory.
        inputs = self._frame(grid)
        # Prophet samples its intervals from NumPy's global generator: seed it for reproducible bands,
        # and give the caller's generator state back afterwards.
        state = np.random.get_state()
        np.random.seed(self.settings.random_seed)
        try:
            forecast = pd.concat(
                [
                    model.predict(inputs.iloc[i : i + PREDICT_CHUNK])
                    for i in range(0, len(inputs), PREDICT_CHUNK)
                ],
                ignore_index=True,
            )
        finally:
            np.random.set_state(state)
        yhat = forecast["yhat"].to_numpy(float)
        if self.settings.uncertainty_samples > 0:
            lower = forecast["yhat_lower"].to_numpy(float)
            upper = forecast["yhat_upper"].to_numpy(float)
        else:
            # No sampling: the starting band is yhat plus the quantiles of the in-sample residuals (the
            # detector recalibrates it online from out-of-sample residuals).
            fitted = np.interp(t, start + step * np.arange(n), yhat)
            alpha = (1 - self.settings.interval_width) / 2
            q_low, q_high = np.quantile(frame["y"].to_numpy(float) - fitted, [alpha, 1 - alpha])
            lower, upper = yhat + min(q_low, 0.0), yhat + max(q_high, 0.0)
        band = Band(start=start, step=step, yhat=yhat, lower=lower, upper=upper, trained_until=float(t[-1]))
        return FittedModel(
            kind=self.kind,
            band=_clip(band, clip),
            params=_state_json(model),
            train_start=float(t[0]),
            train_end=float(t[-1]),
            train_rows=len(frame),
            fit_seconds=time.perf_counter() - started,
            forecast=forecast.assign(ds_utc=grid),
        )

    def _new_model(self, span: float) -> Any:
        quiet_stan()
        from prophet import Prophet

        s = self.settings
        daily, weekly, split = self._seasonalities(span)
        model = Prophet(
            daily_seasonality=False,
            weekly_seasonality=weekly,
            yearly_seasonality=s.yearly_seasonality,
            seasonality_mode=s.seasonality_mode,
            changepoint_prior_scale=s.changepoint_prior_scale,
            seasonality_prior_scale=s.seasonality_prior_scale,
            interval_width=s.interval_width,
            uncertainty_samples=s.uncertainty_samples,
        )
        if split:
            # Servers follow a different day shape on weekends (Prophet's conditional seasonalities).
            for name in ("weekday", "weekend"):
                model.add_seasonality(
                    name=f"daily_{name}",
                    period=1,
                    fourier_order=s.daily_fourier_order,
                    condition_name=f"is_{name}",
                )
        elif daily:
            model.add_seasonality(name="daily", period=1, fourier_order=s.daily_fourier_order)
        return model


class ProfileForecaster:
    """Robust seasonal profile: median per time-of-week (or time-of-day) slot, empirical quantile band."""

    kind = "profile"

    def __init__(self, settings: ModelSettings) -> None:
        self.settings = settings

    def fit(
        self, frame: pd.DataFrame, *, clip: tuple[float, float] | None = None, warm: str | None = None
    ) -> FittedModel:
        """Fit the profile and precompute the band over the span plus the horizon (``warm`` unused)."""
        frame = _validate(frame).tail(self.settings.max_train_rows)
        started = time.perf_counter()
        t = to_epoch(frame["ds"])
        y = frame["y"].to_numpy(float)
        start, step, n = _grid(t, self.settings.horizon_days * DAY, self.settings.band_step_seconds)
        offset = _zone_offset(t, self.settings.seasonality_timezone)
        span = t[-1] - t[0]
        period: float | None = WEEK if span >= 2 * WEEK and self.settings.weekly_seasonality else DAY
        if not (self.settings.daily_seasonality or self.settings.weekly_seasonality) or span < 2 * DAY:
            # One period of history gives one value per slot: a profile that fits it exactly, with no
            # residuals to size the band from. Two periods at least, as for Prophet's seasonalities.
            period = None
        slot = max(step, 300.0)
        if period is not None:
            slots = int(round(period / slot))
            idx = (((t + offset) % period) // slot).astype(np.int64) % slots
            sums = pd.Series(y).groupby(idx).median()
            profile = np.full(slots, np.nan)
            profile[sums.index.to_numpy()] = sums.to_numpy()
            profile = _fill_circular(profile, fallback=float(np.median(y)))
            fitted = profile[idx]
        else:
            profile = None
            fitted = np.full_like(y, np.median(y))
        resid = y - fitted
        alpha = (1 - self.settings.interval_width) / 2
        q_low, q_high = np.quantile(resid, [alpha, 1 - alpha])
        level = float(np.median(resid))
        gt = start + step * np.arange(n)
        if profile is not None and period is not None:
            goff = _zone_offset(gt, self.settings.seasonality_timezone)
            gidx = (((gt + goff) % period) // slot).astype(np.int64) % len(profile)
            yhat = profile[gidx] + level
        else:
            yhat = np.full(n, float(np.median(y)))
        band = Band(
            start=start,
            step=step,
            yhat=yhat,
            lower=yhat + (q_low - level),
            upper=yhat + (q_high - level),
            trained_until=float(t[-1]),
        )
        return FittedModel(
            kind=self.kind,
            band=_clip(band, clip),
            params=None,
            train_start=float(t[0]),
            train_end=float(t[-1]),
            train_rows=len(frame),
            fit_seconds=time.perf_counter() - started,
        )


def _state_json(model: Any) -> str:
    """Return Prophet's ``model_to_json`` of a fitted model without its training history.

    The history (every training row, a megabyte a series) is cut to its last two rows: Prophet still
    rebuilds from it and forecasts any explicit dates, and refits read the source's history anyway.
    The fitted ``trend`` parameter (one value per training row, 90% of what is left) goes too: Prophet's
    ``predict`` rebuilds the trend from ``k``, ``m`` and ``delta``, and a warm start needs only those,
    ``sigma_obs`` and ``beta`` (tests/test_artifact.py predicts from the cut state).
    """
    from prophet.serialize import model_to_json

    history, dates, params = model.history, model.history_dates, model.params
    model.history, model.history_dates = history.tail(2), dates.iloc[[0, -1]]
    model.params = {k: v for k, v in params.items() if k != "trend"}
    try:
        return str(model_to_json(model))
    finally:
        model.history, model.history_dates, model.params = history, dates, params


def prophet_input(local: pd.DatetimeIndex | pd.Series) -> pd.DataFrame:
    """Return a Prophet input frame for local wall-clock times, with the conditions our models use."""
    ds = pd.DatetimeIndex(local)
    weekday = ds.day_of_week < 5
    return pd.DataFrame({"ds": ds, "is_weekday": weekday, "is_weekend": ~weekday})


def _fill_circular(profile: np.ndarray, fallback: float) -> np.ndarray:
    """Fill empty slots by circular linear interpolation from their neighbours."""
    ok = ~np.isnan(profile)
    if not ok.any():
        return np.full_like(profile, fallback)
    if ok.all():
        return profile
    n = len(profile)
    xs = np.flatnonzero(ok)
    xp = np.concatenate([xs - n, xs, xs + n])
    fp = np.tile(profile[ok], 3)
    return np.interp(np.arange(n), xp, fp)


def _zone_offset(t: np.ndarray, zone: str) -> np.ndarray:
    """Return the UTC offset in seconds of ``zone`` at each epoch second (0 for UTC)."""
    if zone == "UTC":
        return np.zeros_like(t)
    index = pd.to_datetime(t, unit="s", utc=True).tz_convert(zone)
    local = index.tz_localize(None).as_unit("ns").asi8 / 1e9
    return local - t


def quiet_stan() -> None:
    """Silence Prophet and Stan chatter (call before importing prophet; safe to call again).

    cmdstanpy attaches its own stderr handler unless its logger already has one, so give it a
    NullHandler first; prophet logs an error at import when plotly (optional) is absent.
    """
    for name in ("cmdstanpy", "prophet"):
        logger = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
            logger.addHandler(logging.NullHandler())
        logger.setLevel(logging.CRITICAL)
        logger.propagate = False


def build_forecaster(settings: ModelSettings) -> Forecaster:
    """Return the configured forecaster."""
    return ProphetForecaster(settings) if settings.kind == "prophet" else ProfileForecaster(settings)


def warm_start_init(state: str) -> dict[str, Any] | None:
    """Return Prophet's ``init`` from an earlier fit's state (None if the state is unreadable).

    The parameters Prophet's documentation warm-starts from: ``k``, ``m``, ``sigma_obs`` (scalars),
    ``delta`` (one per changepoint) and ``beta`` (one per seasonal feature). Prophet keeps its own
    starting values for an array of another shape (the seasonalities changed with the history's span).
    """
    try:
        params = json.loads(state)["params"]
        init: dict[str, Any] = {name: float(np.ravel(params[name])[0]) for name in ("k", "m", "sigma_obs")}
        for name in ("delta", "beta"):
            init[name] = np.ravel(params[name]).astype(float)
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return init


def fit_with_fallback(
    settings: ModelSettings,
    frame: pd.DataFrame,
    *,
    clip: tuple[float, float] | None = None,
    warm: str | None = None,
) -> FittedModel:
    """Fit the configured model; if Prophet fails and fallback is on, fit the robust profile instead."""
    try:
        return build_forecaster(settings).fit(frame, clip=clip, warm=warm)
    except ModelError as exc:
        if settings.kind != "prophet" or not settings.fallback:
            raise
        fitted = ProfileForecaster(settings).fit(frame, clip=clip)
        fitted.note = f"fallback to profile model: {exc}"
        return fitted


def choose_kind(settings: ModelSettings, span: float, *, prophet_min_span: float = 0.0) -> str:
    """Return the kind of model a series gets: THE rule that train, refit and evaluate share.

    The configured ``model.kind``, except that Prophet needs ``prophet_min_span`` seconds of history
    (refits pass ``RefitPolicy.prophet_min_span``, two days; train and evaluate pass 0: their series
    already have ``data.min_rows``); shorter histories get the robust profile model. A Prophet fit
    that fails falls back to the profile model when ``model.fallback`` (:func:`fit_with_fallback`).
    """
    return "profile" if settings.kind == "prophet" and span < prophet_min_span else settings.kind


# (settings, frame, clip, warm): ``warm`` is the previous fit's state (FittedModel.params) or None.
Fitter = Callable[[ModelSettings, pd.DataFrame, "tuple[float, float] | None", "str | None"], FittedModel]


def _fit_here(
    settings: ModelSettings, frame: pd.DataFrame, clip: tuple[float, float] | None, warm: str | None = None
) -> FittedModel:
    return fit_with_fallback(settings, frame, clip=clip, warm=warm)


def choose_and_fit(
    settings: ModelSettings,
    frame: pd.DataFrame,
    *,
    clip: tuple[float, float] | None = None,
    span: float | None = None,
    prophet_min_span: float = 0.0,
    fitter: Fitter = _fit_here,
    warm: str | None = None,
) -> FittedModel:
    """Fit ``frame`` with the model :func:`choose_kind` picks; ``fitter`` fits the configured kind.

    ``span`` is the history's length in seconds (computed from ``frame`` if not given). A profile
    model chosen for a short history is fitted here (milliseconds); the configured kind goes through
    ``fitter`` (a worker process in the daemon), with the Prophet-to-profile fallback.
    """
    if span is None:
        t = to_epoch(frame["ds"])
        span = float(t[-1] - t[0]) if len(t) else 0.0
    if choose_kind(settings, span, prophet_min_span=prophet_min_span) != settings.kind:
        return ProfileForecaster(settings).fit(frame, clip=clip)
    return fitter(settings, frame, clip, warm)
