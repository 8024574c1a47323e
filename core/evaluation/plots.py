"""Training plots: the forecast with its band, the model components, and an EDA overview."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from core.band import Band  # noqa: E402
from core.fsutil import StagedFiles  # noqa: E402
from core.model.forecaster import FittedModel  # noqa: E402
from core.scoring import ScoreParams, score  # noqa: E402
from core.timegrid import from_epoch  # noqa: E402

__all__ = [
    "components_figure",
    "date_axis",
    "eda_figure",
    "forecast_figure",
    "plot_components",
    "plot_eda",
    "plot_forecast",
    "safe_name",
    "training_plots",
]

PLOT_POINTS = 200_000  # a training plot draws every k-th point, at most this many
MAX_LINE_POINTS = 50_000  # a line of millions of points draws no more than this many (stride)


def safe_name(series_id: str) -> str:
    """Return a file-name-safe version of a series id (``host=web-01`` -> ``host-web-01``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", series_id).strip("-") or "series"


def _dates(t: np.ndarray) -> pd.DatetimeIndex:
    return from_epoch(t)


def date_axis(ax: plt.Axes, label: str = "time (UTC)") -> None:
    """Label a time axis and give it concise, non-overlapping date ticks."""
    locator = mdates.AutoDateLocator(minticks=3, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(label)


def _stride(n: int) -> slice:
    return slice(None, None, max(1, -(-n // MAX_LINE_POINTS)))


def plot_forecast(
    path: Path,
    title: str,
    t: np.ndarray,
    y: np.ndarray,
    band: Band,
    split: float | None,
    flagged: np.ndarray,
    *,
    ylabel: str = "value",
) -> Path:
    """Plot values, the band over their span, the train/holdout split and flagged points."""
    return _save(forecast_figure(title, t, y, band, split, flagged, ylabel=ylabel), path, dpi=90)


def forecast_figure(
    title: str,
    t: np.ndarray,
    y: np.ndarray,
    band: Band,
    split: float | None,
    flagged: np.ndarray,
    *,
    ylabel: str = "value",
) -> Figure:
    """Return the figure of :func:`plot_forecast`."""
    grid = np.arange(band.start, max(band.end, t[-1]) + band.step, band.step)
    values = band.lookup(grid)
    fig, ax = plt.subplots(figsize=(14, 5))
    ax.fill_between(_dates(grid), values.lower, values.upper, color="tab:blue", alpha=0.2, label="band")
    ax.plot(_dates(grid), values.yhat, color="tab:blue", lw=0.8, label="forecast")
    every = _stride(len(t))
    ax.plot(_dates(t[every]), y[every], color="black", lw=0.5, label="actual")
    if flagged.any():
        hits = np.flatnonzero(flagged)
        hits = hits[_stride(len(hits))]
        ax.scatter(_dates(t[hits]), y[hits], color="red", s=8, zorder=3, label="outside band")
    if split is not None:
        ax.axvline(_dates(np.array([split]))[0], color="gray", ls="--", lw=1, label="train | holdout")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    date_axis(ax)
    ax.legend(loc="upper left", fontsize=8, ncol=5)
    fig.tight_layout()
    return fig


def _save(fig: Figure, path: Path, *, dpi: int) -> Path:
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_components(path: Path, title: str, forecast: pd.DataFrame, *, ylabel: str = "value") -> Path | None:
    """Plot Prophet's trend, daily and weekly components from a forecast frame (effects in ``ylabel``)."""
    fig = components_figure(title, forecast, ylabel=ylabel)
    return None if fig is None else _save(fig, path, dpi=90)


def components_figure(title: str, forecast: pd.DataFrame, *, ylabel: str = "value") -> Figure | None:
    """Return the figure of :func:`plot_components` (None when the forecast has no component)."""
    parts = [
        c for c in ("trend", "daily", "daily_weekday", "daily_weekend", "weekly") if c in forecast.columns
    ]
    if not parts:
        return None
    fig, axes = plt.subplots(len(parts), 1, figsize=(10, 2.8 * len(parts)))
    axes = np.atleast_1d(axes)
    ds = pd.DatetimeIndex(forecast["ds"])
    for ax, part in zip(axes, parts, strict=True):
        if part == "trend":
            ax.plot(ds, forecast["trend"], color="tab:blue")
            date_axis(ax, "time (seasonality time zone)")
        elif part.startswith("daily"):
            hours = ds.hour + ds.minute / 60
            keep = forecast[part].to_numpy() != 0 if part != "daily" else np.ones(len(ds), dtype=bool)
            prof = pd.Series(forecast[part].to_numpy()[keep]).groupby(np.round(hours[keep] * 12) / 12).mean()
            ax.plot(prof.index, prof.to_numpy(), color="tab:blue")
            ax.set_xlabel("hour of day (seasonality time zone)")
            ax.set_xticks(range(0, 25, 3))
        else:
            week = ds.day_of_week + (ds.hour + ds.minute / 60) / 24
            prof = pd.Series(forecast["weekly"].to_numpy()).groupby(np.round(week * 24) / 24).mean()
            ax.plot(prof.index, prof.to_numpy(), color="tab:blue")
            ax.set_xticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
            ax.set_xlabel("day of week (seasonality time zone)")
        ax.set_ylabel(f"{part.replace('_', ' ')}\n{ylabel}")
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    fig.tight_layout()
    return fig


def plot_eda(path: Path, title: str, t: np.ndarray, y: np.ndarray, *, xlabel: str = "value") -> Path:
    """Plot the distribution, the mean by hour of day and the mean by day of week of ``xlabel``."""
    return _save(eda_figure(title, t, y, xlabel=xlabel), path, dpi=80)


def eda_figure(title: str, t: np.ndarray, y: np.ndarray, *, xlabel: str = "value") -> Figure:
    """Return the figure of :func:`plot_eda`."""
    ds = _dates(t)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    axes[0].hist(y, bins=60, color="tab:blue")
    axes[0].set_title("distribution")
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel("rows")
    hourly = pd.Series(y).groupby(ds.hour).agg(["mean", "std"])
    axes[1].errorbar(hourly.index, hourly["mean"], yerr=hourly["std"], fmt="-o", ms=3)
    axes[1].set_title("by hour of day (UTC)")
    axes[1].set_xlabel("hour of day (UTC)")
    axes[1].set_ylabel(f"mean ± sd, {xlabel}")
    daily = pd.Series(y).groupby(ds.day_of_week).mean()
    axes[2].bar(daily.index, daily.to_numpy())
    axes[2].set_xticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    axes[2].set_title("by day of week (UTC)")
    axes[2].set_xlabel("day of week (UTC)")
    axes[2].set_ylabel(f"mean, {xlabel}")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def training_plots(
    out: Path,
    sid: str,
    t: np.ndarray,
    y: np.ndarray,
    fitted: FittedModel,
    *,
    split: float | None,
    params: ScoreParams,
    eda: bool,
    staged: StagedFiles,
    ylabel: str,
) -> list[Path]:
    """Draw a trained series' forecast band, components and EDA into ``staged``; return the targets."""
    name = safe_name(sid)
    # A plot cannot show millions of points: draw every k-th (at most PLOT_POINTS), and spare the memory.
    every = slice(None, None, max(1, -(-len(t) // PLOT_POINTS)))
    t, y = t[every], y[every]
    values = fitted.band.lookup(t)
    flagged = score(y, values.yhat, values.lower, values.upper, params).is_anomaly
    files = [out / f"forecast_{name}.png"]
    plot_forecast(
        staged.path(files[-1]),
        f"{sid}: forecast band ({fitted.kind})",
        t,
        y,
        fitted.band,
        split,
        flagged,
        ylabel=ylabel,
    )
    if fitted.forecast is not None:
        target = out / f"components_{name}.png"
        drawn = plot_components(staged.path(target), f"{sid}: components", fitted.forecast, ylabel=ylabel)
        if drawn is not None:
            files.append(target)
    if eda:
        files.append(out / f"eda_{name}.png")
        plot_eda(staged.path(files[-1]), f"{sid}: exploratory view", t, y, xlabel=ylabel)
    return files
