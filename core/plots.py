"""Training plots: the forecast with its band, the model components, and an EDA overview."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core.band import Band  # noqa: E402

__all__ = ["plot_components", "plot_eda", "plot_forecast", "safe_name"]


def safe_name(series_id: str) -> str:
    """Return a file-name-safe version of a series id (``host=web-01`` -> ``host-web-01``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", series_id).strip("-") or "series"


def _dates(t: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(t, unit="s", utc=True)


def plot_forecast(
    path: Path, title: str, t: np.ndarray, y: np.ndarray, band: Band, split: float | None, flagged: np.ndarray
) -> Path:
    """Plot values, the band over their span, the train/holdout split and flagged points."""
    grid = np.arange(band.start, max(band.end, t[-1]) + band.step, band.step)
    values = band.lookup(grid)
    fig, ax = plt.subplots(figsize=(14, 5))
    ax.fill_between(_dates(grid), values.lower, values.upper, color="tab:blue", alpha=0.2, label="band")
    ax.plot(_dates(grid), values.yhat, color="tab:blue", lw=0.8, label="forecast")
    ax.plot(_dates(t), y, color="black", lw=0.5, label="actual")
    if flagged.any():
        ax.scatter(_dates(t[flagged]), y[flagged], color="red", s=8, zorder=3, label="outside band")
    if split is not None:
        ax.axvline(_dates(np.array([split]))[0], color="gray", ls="--", lw=1, label="train | holdout")
    ax.set_title(title)
    ax.set_ylabel("value")
    ax.legend(loc="upper left", fontsize=8, ncol=5)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_components(path: Path, title: str, forecast: pd.DataFrame) -> Path | None:
    """Plot Prophet's trend, daily and weekly components from a forecast frame."""
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
            ax.set_xlabel("time")
        elif part.startswith("daily"):
            hours = ds.hour + ds.minute / 60
            keep = forecast[part].to_numpy() != 0 if part != "daily" else np.ones(len(ds), dtype=bool)
            prof = pd.Series(forecast[part].to_numpy()[keep]).groupby(np.round(hours[keep] * 12) / 12).mean()
            ax.plot(prof.index, prof.to_numpy(), color="tab:blue")
            ax.set_xlabel("hour of day (seasonality time zone)")
        else:
            week = ds.day_of_week + (ds.hour + ds.minute / 60) / 24
            prof = pd.Series(forecast["weekly"].to_numpy()).groupby(np.round(week * 24) / 24).mean()
            ax.plot(prof.index, prof.to_numpy(), color="tab:blue")
            ax.set_xticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
        ax.set_ylabel(part)
        ax.grid(alpha=0.3)
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_eda(path: Path, title: str, t: np.ndarray, y: np.ndarray) -> Path:
    """Plot the distribution, the mean by hour of day and the mean by day of week."""
    ds = _dates(t)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
    axes[0].hist(y, bins=60, color="tab:blue")
    axes[0].set_title("distribution")
    hourly = pd.Series(y).groupby(ds.hour).agg(["mean", "std"])
    axes[1].errorbar(hourly.index, hourly["mean"], yerr=hourly["std"], fmt="-o", ms=3)
    axes[1].set_title("by hour of day (UTC)")
    daily = pd.Series(y).groupby(ds.day_of_week).mean()
    axes[2].bar(daily.index, daily.to_numpy())
    axes[2].set_xticks(range(7), ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"])
    axes[2].set_title("by day of week (UTC)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
